"""The effective-dimension section: a panel on each measured layer's pages (:mod:`unitscope.dimension`)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

from unitscope.report.collect import ReportInputError, layer_key, read_json
from unitscope.report.sections import Panel, Section, SiteInputs


class DimensionSection(Section):
    """Participation ratio and leading variance shares of a layer, shown on its layer page and beside its
    rotation series on the comparison page (a rotation leaves them unchanged)."""

    kind = "dimension"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.results: dict[tuple[str, str], dict] = {}
        for directory in self.directories:
            path = directory / "dimension.json"
            if not path.is_file():
                raise ReportInputError(f"{path} not found: {directory} is not the output of `unitscope dimension`")
            meta, result = read_json(directory / "meta.json"), read_json(path)
            self.results[layer_key(meta, self.results, directory, "effective dimension")] = result

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        result = self.results.get((model, layer))
        if result is None:
            return []
        ratio, units = float(result["participation_ratio"]), int(result["units"])
        shares = result["variance_shares"]
        leading = f"; its first 3 principal components carry {shares[2]:.0%} of the variance" if len(shares) > 2 else ""
        html = (f"<p>Participation ratio <strong>{ratio:.1f}</strong> of {units} units{escape(leading)}: the variance of "
                f"the layer's units over {int(result['samples']):,} image positions spreads over about {ratio:.0f} "
                "directions. A rotation of the basis leaves this unchanged; a layer far below its unit count can only "
                "re-mix those few directions when rotated.</p>")
        return [Panel("Effective dimension", html)]
