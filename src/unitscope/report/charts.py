"""Vega-Lite chart specifications (altair) for the report's pages.

Every function returns a plain ``dict`` (the compiled Vega-Lite spec) or ``None`` when there is
nothing to draw; pages embed it as JSON and ``site.js`` renders it with the shared Vega bundle.
Colours and the category order follow the paper (spec §6.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from unitscope.report.collect import CATEGORY_COLORS, ordered_categories

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


def _color(categories: Sequence[str]) -> alt.Scale:
    domain = ordered_categories(categories)
    return alt.Scale(domain=domain, range=[CATEGORY_COLORS.get(c, ("#666666",))[0] for c in domain])


def _finish(chart: alt.TopLevelMixin, description: str) -> dict:
    spec = chart.properties(description=description).configure(font=FONT).configure_view(stroke=None)
    spec = spec.configure_axis(labelColor="#333", titleColor="#222", gridColor="#e6e6e6")
    return spec.to_dict(validate=False)  # built from typed altair objects; schema validation costs ~0.3 s per chart


def layer_bar_chart(concepts: pd.DataFrame, title: str) -> dict | None:
    """Paper-style bar graph: one bar per concept (units whose top label it is), grouped by category.

    ``concepts`` has columns ``concept`` (display name), ``category``, ``units``, ``best_iou`` and is
    already in display order (category order, then units and best IoU descending).
    """
    if concepts.empty:
        return None
    data = concepts.reset_index(drop=True).assign(order=lambda d: range(len(d)))
    group_order = ordered_categories(data["category"])
    top = int(data["units"].max())
    ticks = sorted({1, -(-top // 2), top})
    bars = (
        alt.Chart(data)
        .mark_bar(width=12)
        .encode(
            x=alt.X("concept:N", sort=alt.EncodingSortField("order"), title=None,
                    axis=alt.Axis(labelAngle=-45, labelLimit=140, ticks=False)),
            y=alt.Y("units:Q", title="units", axis=alt.Axis(values=ticks, format="d"), scale=alt.Scale(domain=[0, top])),
            color=alt.Color("category:N", scale=_color(data["category"]),
                            legend=alt.Legend(orient="top", direction="horizontal", title=None)),
            tooltip=[alt.Tooltip("concept:N"), alt.Tooltip("category:N"), alt.Tooltip("units:Q"),
                     alt.Tooltip("best_iou:Q", title="best IoU", format=".3f")],
        )
        .properties(width=alt.Step(15), height=100)
    )
    chart = bars.facet(
        column=alt.Column("category:N", sort=group_order, title=None, header=alt.Header(labels=False)),
        spacing=8,
    ).resolve_scale(x="independent")
    return _finish(chart, f"Number of units per concept in {title}, grouped by category")


def interpretability_by_layer(rows: pd.DataFrame) -> dict | None:
    """Fraction of units that detect each category, per layer (the paper's layer figure).

    ``rows``: ``model``, ``layer``, ``order`` (layer position within its model), ``category``, ``fraction``.
    """
    if rows.empty:
        return None
    base = alt.Chart(rows).encode(
        x=alt.X("layer:N", sort=alt.EncodingSortField("order"), title="layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("fraction:Q", title="fraction of units that are detectors", axis=alt.Axis(format="%")),
        color=alt.Color("category:N", scale=_color(rows["category"]), title="category"),
        tooltip=["model:N", "layer:N", "category:N", alt.Tooltip("fraction:Q", format=".1%")],
    )
    layered = (base.mark_line() + base.mark_point(filled=True, size=40)).properties(width=220, height=180)
    return _finish(_panels(layered, "model:N"), "Fraction of detector units per category for every dissected layer")


def unique_detectors_bars(rows: pd.DataFrame, description: str) -> dict | None:
    """Stacked horizontal bars of unique detectors per category, one bar per network/layer.

    ``rows``: ``network``, ``category``, ``unique``; bars sorted by their total.
    """
    if rows.empty:
        return None
    totals = rows.groupby("network")["unique"].sum().sort_values(ascending=False, kind="stable")
    data = rows.assign(stack=rows["category"].map({c: i for i, c in enumerate(ordered_categories(rows["category"]))}))
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("network:N", sort=list(totals.index), title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("sum(unique):Q", title="unique detectors"),
            color=alt.Color("category:N", scale=_color(data["category"]), title="category"),
            order=alt.Order("stack:Q"),
            tooltip=["network:N", "category:N", alt.Tooltip("unique:Q", title="unique detectors")],
        )
        .properties(width=460, height=alt.Step(18))
    )
    return _finish(chart, description)


def _per_category_lines(rows: pd.DataFrame, x: alt.X, description: str) -> dict | None:
    if rows.empty:
        return None
    base = alt.Chart(rows).encode(
        x=x,
        y=alt.Y("unique:Q", title="unique detectors"),
        color=alt.Color("category:N", scale=_color(rows["category"]), title="category"),
        tooltip=["group:N", "category:N", alt.Tooltip("unique:Q", title="unique detectors"), x.shorthand],
    )
    layered = (base.mark_line() + base.mark_point(filled=True, size=40)).properties(width=260, height=180)
    return _finish(_panels(layered, "group:N"), description)


def rotation_chart(rows: pd.DataFrame) -> dict | None:
    """Unique detectors per category against the rotation power α (``group``, ``alpha``, ``category``, ``unique``)."""
    return _per_category_lines(
        rows,
        alt.X("alpha:Q", title="rotation power α", scale=alt.Scale(domain=[0, 1])),
        "Unique detectors per category as the basis is rotated from the original (α = 0) to a random one (α = 1)",
    )


def iteration_chart(rows: pd.DataFrame) -> dict | None:
    """Unique detectors per category over training iterations (``group``, ``iteration``, ``category``, ``unique``)."""
    return _per_category_lines(
        rows,
        alt.X("iteration:Q", title="training iteration",
              scale=alt.Scale(type="log" if (rows["iteration"] > 0).all() else "symlog")),
        "Unique detectors per category over training iterations",
    )


def weights_chart(rows: pd.DataFrame) -> dict | None:
    """Grouped bars: unique detectors per category for each weights tag (``group``, ``weights``, ``category``, ``unique``)."""
    if rows.empty:
        return None
    bars = (
        alt.Chart(rows)
        .mark_bar()
        .encode(
            x=alt.X("category:N", sort=ordered_categories(rows["category"]), title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("weights:N", sort=sorted(set(rows["weights"]), key=lambda w: w != "trained")),
            y=alt.Y("unique:Q", title="unique detectors"),
            color=alt.Color("weights:N", title="weights", scale=alt.Scale(range=["#34495e", "#b0b7bf", "#8e6c8a"])),
            tooltip=["group:N", "weights:N", "category:N", "unique:Q"],
        )
        .properties(width=320, height=180)
    )
    return _finish(_panels(bars, "group:N"), "Unique detectors per category of trained and untrained weights")


def _panels(chart: alt.Chart, field: str) -> alt.FacetChart:
    """One panel per value of ``field``, wrapped after three so that pages don't scroll sideways."""
    return chart.facet(facet=alt.Facet(field, title=None, header=alt.Header(labelFontWeight="bold")), columns=3)
