"""The client-side search index: a ``<script>`` data file (fetch is blocked under ``file://``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from unitscope.report.collect import Run
from unitscope.report.pages import Concept, UnitInfo, concept_path, unit_path


def search_rows(concepts: dict[str, Concept], units: list[tuple[Run, UnitInfo]]) -> dict[str, list[list]]:
    """The dissection's search rows. Concept rows: ``[display name, category, detector count, path]``; unit
    rows: ``[label, "model · layer", unit, IoU, path]``; paths are site-relative."""
    return {
        "concepts": [
            [c.display, c.category, c.detectors, concept_path(c)]
            for c in sorted(concepts.values(), key=lambda c: (c.display.lower(), c.slug))
        ],
        "units": [
            [info.display, run.title, info.unit, round(info.score, 4), unit_path(run, info.unit)]
            for run, info in units
        ],
    }


def search_script(rows: Mapping[str, list[list]]) -> str:
    """JavaScript that sets ``window.UNITSCOPE_SEARCH`` to ``{concepts: [...], units: [...], ...}``."""
    text = json.dumps(dict(rows), ensure_ascii=False, separators=(",", ":"))
    return "window.UNITSCOPE_SEARCH=" + text.replace("</", "<\\/") + ";\n"
