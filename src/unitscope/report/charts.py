"""Vega-Lite chart specifications (altair) for the report's pages.

Every function returns a plain ``dict`` (the compiled Vega-Lite spec) or ``None`` when there is
nothing to draw; pages embed it as JSON and ``site.js`` renders it with the shared Vega bundle.
Colours and the category order follow the paper (spec §6.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from unitscope.report.collect import CATEGORY_COLORS, natural_key, ordered_categories

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
        x=alt.X("layer:N", sort=alt.EncodingSortField("order"), title="layer", axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("fraction:Q", title="fraction of units that are detectors", axis=alt.Axis(format="%")),
        color=alt.Color("category:N", scale=_color(rows["category"]), title="category"),
        tooltip=["model:N", "layer:N", "category:N", alt.Tooltip("fraction:Q", format=".1%")],
    )
    layered = (base.mark_line() + base.mark_point(filled=True, size=40)).properties(width=220, height=180)
    return _finish(_panels(layered, "model:N").resolve_scale(x="independent"),
                   "Fraction of detector units per category for every dissected layer")


def unique_by_layer(rows: pd.DataFrame) -> dict | None:
    """Stacked bars of unique detectors per category, one bar per layer in depth order, one panel per model.

    ``rows``: ``model``, ``layer``, ``order`` (layer position within its model), ``category``, ``unique``.
    """
    if rows.empty:
        return None
    data = rows.assign(stack=rows["category"].map({c: i for i, c in enumerate(ordered_categories(rows["category"]))}))
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("layer:N", sort=alt.EncodingSortField("order"), title="layer", axis=alt.Axis(labelAngle=-30)),
            y=alt.Y("sum(unique):Q", title="unique detectors"),
            color=alt.Color("category:N", scale=_color(data["category"]), title="category"),
            order=alt.Order("stack:Q"),
            tooltip=["model:N", "layer:N", "category:N", alt.Tooltip("unique:Q", title="unique detectors")],
        )
        .properties(width=220, height=180)
    )
    return _finish(_panels(bars, "model:N").resolve_scale(x="independent"),
                   "Unique detectors per layer, stacked by category, one panel per model")


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


def _comparison_color(categories: Sequence[str]) -> alt.Scale:
    """Categories in the paper's colours, and the total ("all") in black."""
    domain = ordered_categories(c for c in categories if c != "all")
    colors = [CATEGORY_COLORS.get(c, ("#666666",))[0] for c in domain]
    return alt.Scale(domain=["all", *domain], range=["#111111", *colors])


def _comparison_panels(chart: alt.TopLevelMixin, stats: pd.DataFrame) -> alt.FacetChart:
    """One row of panels per group, one column per measure present (significant first), each with its own y axis."""
    measures = [m for m in ("significant", "raw") if m in set(stats["measure"])]
    return chart.facet(
        row=alt.Row("group:N", title=None, header=alt.Header(labelFontWeight="bold", labelAngle=0, labelAlign="left",
                                                             labelOrient="top", labelAnchor="start")),
        column=alt.Column("measure:N", sort=measures, title=None,
                          header=alt.Header(labelExpr="datum.value + ' unique detectors'", labelFontSize=12)),
        spacing={"row": 24, "column": 16},
    ).resolve_scale(y="independent")


def comparison_lines(stats: pd.DataFrame, x: alt.X, description: str, own_x: bool = False) -> dict | None:
    """Unique detectors against ``x``: a line per category and one for their total, the mean over seeds with
    ± sd bars where there are several (``stats``: group, x, measure, category, mean, sd, n, lo, hi); ``own_x``
    gives each row of panels its own x axis (groups with different values of x)."""
    if stats.empty:
        return None
    color = alt.Color("category:N", scale=_comparison_color(stats["category"]), title="category",
                      legend=alt.Legend(orient="top", direction="horizontal"))
    base = alt.Chart(stats).encode(
        x=x, color=color,
        tooltip=["group:N", "measure:N", "category:N", alt.Tooltip(x.shorthand),
                 alt.Tooltip("mean:Q", title="unique (mean)", format=".1f"), alt.Tooltip("sd:Q", format=".1f"),
                 alt.Tooltip("n:Q", title="runs")],
    )
    y = alt.Y("mean:Q", title="unique detectors")
    width = alt.condition(alt.datum.category == "all", alt.value(3), alt.value(1.5))
    lines = base.mark_line().encode(y=y, strokeWidth=width)
    points = base.mark_point(filled=True, size=36).encode(y=y)
    spread = base.mark_rule().encode(y="lo:Q", y2="hi:Q").transform_filter(alt.datum.n > 1)
    layered = alt.layer(spread, lines, points).properties(width=320, height=200)
    panels = _comparison_panels(layered, stats)
    return _finish(panels.resolve_scale(x="independent") if own_x else panels, description)


def layer_lines(stats: pd.DataFrame, x: alt.X, description: str) -> dict | None:
    """Unique detectors against ``x``, one line per layer (in depth order), one row of panels per model and one
    column per measure (``stats``: group, x, measure, layer, mean, ...): where the lines cross, the ordering of
    the layers moves."""
    if stats.empty:
        return None
    field = x.shorthand.split(":")[0]
    layers = sorted(set(stats["layer"]), key=natural_key)
    base = alt.Chart(stats).encode(
        x=x, color=alt.Color("layer:N", sort=layers, title="layer", legend=alt.Legend(orient="top", direction="horizontal")),
        y=alt.Y("mean:Q", title="unique detectors (all categories)"),
        tooltip=["group:N", "measure:N", "layer:N", alt.Tooltip(f"{field}:Q"), alt.Tooltip("mean:Q", title="unique")],
    )
    layered = alt.layer(base.mark_line(), base.mark_point(filled=True, size=36)).properties(width=320, height=200)
    return _finish(_comparison_panels(layered, stats), description)


def quantile_chart(stats: pd.DataFrame) -> dict | None:
    """Unique detectors of each layer against the activation quantile τ (logarithmic axis)."""
    return layer_lines(stats, alt.X("quantile:Q", title="activation quantile τ", scale=alt.Scale(type="log")),
                       "Unique detectors of each layer as the activation quantile of the threshold changes")


def iou_chart(stats: pd.DataFrame) -> dict | None:
    """Unique detectors of each layer against the IoU threshold."""
    return layer_lines(stats, alt.X("iou:Q", title="IoU threshold", scale=alt.Scale(zero=False)),
                       "Unique detectors of each layer as the IoU threshold of a detector changes")


def rotation_chart(stats: pd.DataFrame) -> dict | None:
    """Unique detectors against the rotation power α, mean ± sd over rotation seeds."""
    return comparison_lines(
        stats, alt.X("alpha:Q", title="rotation power α", scale=alt.Scale(domain=[0, 1])),
        "Unique detectors as the basis is rotated from the original (α = 0) to a random one (α = 1)",
    )


def condition_chart(stats: pd.DataFrame) -> dict | None:
    """Unique detectors under each training condition, one row of panels per condition, mean ± sd over seeds."""
    order = list(dict.fromkeys(stats["condition"])) if not stats.empty else []
    return comparison_lines(stats, alt.X("condition:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
                            "Unique detectors of the same network trained under different conditions", own_x=True)


def iteration_chart(stats: pd.DataFrame) -> dict | None:
    """Unique detectors over training iterations (logarithmic axis; symmetric-log with iteration 0)."""
    if stats.empty:
        return None
    return comparison_lines(
        stats, alt.X("iteration:Q", title="training iteration",
                     scale=alt.Scale(type="log" if (stats["iteration"] > 0).all() else "symlog")),
        "Unique detectors over training iterations",
    )


def weights_chart(stats: pd.DataFrame) -> dict | None:
    """Grouped bars: unique detectors per category and in all for each weights tag."""
    if stats.empty:
        return None
    categories = ["all", *ordered_categories(c for c in set(stats["category"]) if c != "all")]
    bars = (
        alt.Chart(stats)
        .mark_bar()
        .encode(
            x=alt.X("category:N", sort=categories, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("weights:N", sort=sorted(set(stats["weights"]), key=lambda w: w != "trained")),
            y=alt.Y("mean:Q", title="unique detectors"),
            color=alt.Color("weights:N", title="weights", scale=alt.Scale(range=["#34495e", "#b0b7bf", "#8e6c8a"]),
                            legend=alt.Legend(orient="top", direction="horizontal")),
            tooltip=["group:N", "measure:N", "weights:N", "category:N", alt.Tooltip("mean:Q", title="unique")],
        )
        .properties(width=320, height=200)
    )
    return _finish(_comparison_panels(bars, stats), "Unique detectors per category of trained and untrained weights")


def _panels(chart: alt.Chart, field: str) -> alt.FacetChart:
    """One panel per value of ``field``, wrapped after three so that pages don't scroll sideways."""
    return chart.facet(facet=alt.Facet(field, title=None, header=alt.Header(labelFontWeight="bold")), columns=3)


def sanity_chart(data: pd.DataFrame, test: str) -> dict | None:
    """Similarity to the original maps after each randomisation stage: the median over images (line) and its
    quartiles (band) per method, one panel per metric, controls dashed. ``data``: one test's rows of
    :func:`unitscope.saliency.run.summarize` (display names for ``method`` and ``metric``, in display order)
    with a ``kind`` column (``method`` or ``control``)."""
    if data.empty:
        return None
    stages, methods, metrics = (list(dict.fromkeys(data[column])) for column in ("stage", "method", "metric"))
    x = alt.X("stage:N", sort=stages, title=f"{test}: last block randomised",
              axis=alt.Axis(labelAngle=-60, labelLimit=90))
    color = alt.Color("method:N", sort=methods, title=None, legend=alt.Legend(orient="top", columns=5))
    base = alt.Chart(data).encode(x=x, color=color)
    band = base.mark_area(opacity=0.12).encode(y=alt.Y("q1:Q", title="similarity to the original"), y2="q3:Q")
    line = base.mark_line(point=True).encode(
        y="median:Q", strokeDash=alt.StrokeDash("kind:N", legend=None, scale=alt.Scale(domain=["method", "control"],
                                                                                        range=[[1, 0], [4, 3]])),
        tooltip=[alt.Tooltip("method:N"), alt.Tooltip("stage:N"), alt.Tooltip("median:Q", format=".2f"),
                 alt.Tooltip("q1:Q", format=".2f"), alt.Tooltip("q3:Q", format=".2f"), alt.Tooltip("nan:Q")])
    chart = alt.layer(band, line).properties(width=300, height=180).facet(
        facet=alt.Facet("metric:N", title=None, sort=metrics), columns=2)
    return _finish(chart, f"Similarity of each method's maps to the original model's after {test} randomisation")
