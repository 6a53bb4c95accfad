"""Published Network Dissection numbers shown next to ours (``unitscope report --reference DIR``).

``DIR`` holds NetDissect per-unit tally CSVs (summarised with :func:`unitscope.summary.summarize`) and,
optionally, ``semantics_cvpr_release.mat``: the data behind the CVPR 2017 cross-network chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope.report.collect import ReportInputError

#: Display names of the tables released with NetDissect (folder ``plot/`` of CSAILVision/NetDissect).
RELEASED_NAMES = {
    "caffe_reference_imagenet": "AlexNet-ImageNet conv5",
    "caffe_reference_places205": "AlexNet-Places205 conv5",
    "caffe_reference_places365": "AlexNet-Places365 conv5",
    "ResNet-152-model_imagenet": "ResNet152-ImageNet res5c",
    "ResNet-152-model_places365": "ResNet152-Places365 res5c",
}
FIGURE_DATA = "semantics_cvpr_release.mat"


@dataclass
class Reference:
    """Published numbers: summaries of released tally CSVs and the paper's figure data."""

    tables: list[tuple[str, str, dict]]  # (name, file name, summary.json-like dict)
    figure: pd.DataFrame  # network, layer, category ('all' included), unique, detectors


def _figure_data(path: Path) -> pd.DataFrame:
    from scipy.io import loadmat

    try:
        stat = loadmat(path)["stat"][0, 0]
        names = [str(np.ravel(n)[0]) for n in np.ravel(stat["networks_name"])]
        layers = [str(np.ravel(n)[0]) for n in np.ravel(stat["layers_name"])]
        concepts = [str(np.ravel(c)[0]) for c in np.ravel(stat["concepts"])]
        unique = np.asarray(stat["num_uniquedetectors"], dtype=int)
        detectors = np.asarray(stat["num_detectors"], dtype=int)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise ReportInputError(f"{path}: not the NetDissect release figure data ({exc})") from exc
    rows = [
        {"network": name, "layer": layer, "category": concept, "unique": int(unique[i, j]),
         "detectors": int(detectors[i, j])}
        for i, (name, layer) in enumerate(zip(names, layers))
        for j, concept in enumerate(concepts)
    ]
    return pd.DataFrame(rows, columns=["network", "layer", "category", "unique", "detectors"])


def load_reference(directory: str | Path) -> Reference:
    """Summarise every tally CSV in ``directory`` at IoU > 0.04 and read the figure data if present."""
    from unitscope.summary import read_tally, summarize

    directory = Path(directory)
    if not directory.is_dir():
        raise ReportInputError(f"--reference {directory}: not a directory")
    tables = []
    for path in sorted(directory.glob("*.csv")):
        header = path.open(encoding="utf-8").readline()
        if not header.startswith("unit,"):
            continue
        summary = summarize(read_tally(path))
        tables.append((RELEASED_NAMES.get(path.stem, path.stem), path.name, summary))
    figure_path = directory / FIGURE_DATA
    figure = _figure_data(figure_path) if figure_path.is_file() else pd.DataFrame(
        columns=["network", "layer", "category", "unique", "detectors"])
    if not tables and figure.empty:
        raise ReportInputError(f"--reference {directory}: no NetDissect tally CSV or {FIGURE_DATA} in it")
    return Reference(tables=tables, figure=figure)
