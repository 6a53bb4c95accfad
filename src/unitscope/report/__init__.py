"""The static report site: ``build_site`` renders dissection results into offline HTML pages."""

from __future__ import annotations

from unitscope.report.collect import ReportInputError, collect
from unitscope.report.site import build_site

__all__ = ["ReportInputError", "build_site", "collect"]
