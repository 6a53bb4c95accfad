# unitscope: Network Dissection as a Snakemake workflow (docs/workflow.md).
#   snakemake --cores 8                                   embedded default config (offline, CPU)
#   snakemake --cores 8 --configfile config/paper.yaml    the paper's networks on Broden (GPU, internet)
from snakemake.utils import min_version

min_version("8.0")


# The embedded default; config files given with --configfile replace it rather than extend it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



include: "workflow/rules/common.smk"  # validates the config against workflow/schemas/config.schema.yaml
include: "workflow/rules/dataset.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/dissect.smk"
include: "workflow/rules/dimension.smk"
include: "workflow/rules/saliency.smk"
include: "workflow/rules/visualize.smk"
include: "workflow/rules/compositional.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/net2vec.smk"
include: "workflow/rules/report.smk"


# Run by the Snakemake process itself, also on a cluster: compute nodes often cannot reach the internet.
localrules:
    all,
    download_broden,


rule all:
    input:
        "reports/site",
    default_target: True
