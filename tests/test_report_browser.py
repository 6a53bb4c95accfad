"""The report site in a real headless Chromium, opened from file:// (skipped when Chromium is absent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_report import make_study
from unitscope.report.site import build_site

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed")
    playwright_api = pytest.importorskip("playwright.sync_api")
    tmp = tmp_path_factory.mktemp("browser")
    dataset, results = make_study(tmp)
    add_saliency_results(results / "saliency")
    site = build_site([results], dataset, tmp / "site", workers=2)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log = {"requests": [], "errors": []}
        page.on("request", lambda request: log["requests"].append(request.url))
        page.on("console", lambda message: message.type == "error" and log["errors"].append(message.text))
        page.on("pageerror", lambda error: log["errors"].append(str(error)))
        yield site, page, log
        browser.close()


def add_saliency_results(root: Path) -> None:
    """A saliency and a sanity-check result of an untrained ProbeCNN on two photographs (small and fast)."""
    from unitscope.models import load_model
    from unitscope.saliency.images import load_images
    from unitscope.saliency.run import Subject, explain_images, sanity_check
    from unitscope.settings import SaliencySettings, SanitySettings

    subject = Subject(load_model("probecnn"))
    images = load_images(["builtin:chelsea", "builtin:coffee"], 64)
    settings = SaliencySettings(methods=("gradient", "guided-backprop", "grad-cam"))
    explain_images(subject, images, root / "probecnn-maps", settings=settings)
    sanity_check(subject, images, root / "probecnn", settings, SanitySettings(figure_images=1))


def test_saliency_and_sanity_pages_render_offline(browser_page) -> None:
    site, page, log = browser_page
    page.goto((site / "saliency" / "index.html").as_uri())
    page.get_by_role("link", name="probecnn (untrained)").first.click()
    page.wait_for_function("[...document.querySelectorAll('table.maps:not(.signed) img')].every(i => i.complete)")
    assert page.evaluate("[...document.querySelectorAll('table.maps:not(.signed) img')].every(i => i.naturalWidth > 0)")
    assert page.locator("table.maps:not(.signed) img").count() == 2 * 4  # each image and its three maps
    page.get_by_text("Signed maps").click()
    page.wait_for_function("[...document.querySelectorAll('table.signed img')].every(i => i.complete)")
    assert page.evaluate("[...document.querySelectorAll('table.signed img')].map(i => i.naturalWidth)") == [112] * 6
    page.goto((site / "sanity" / "probecnn.html").as_uri())
    page.wait_for_selector("#sanity-cascading svg", timeout=20_000)
    page.wait_for_selector("#sanity-independent svg", timeout=20_000)
    assert page.locator("#sanity-cascading svg .mark-line path").count() > 0
    assert page.locator("table.figure img").count() == 3 * 6  # methods × (original + five ProbeCNN blocks)
    assert log["errors"] == []


def test_index_renders_charts_offline(browser_page) -> None:
    site, page, log = browser_page
    page.goto((site / "index.html").as_uri())
    page.wait_for_selector("#by-layer svg", timeout=20_000)
    page.wait_for_selector("#unique svg", timeout=20_000)
    assert page.locator("#by-layer svg .mark-symbol path, #by-layer svg .mark-line path").count() > 0
    assert log["errors"] == []
    assert log["requests"] and all(url.startswith("file://") for url in log["requests"]), log["requests"]


def test_click_path_index_layer_unit_concept_and_back(browser_page) -> None:
    site, page, log = browser_page
    page.goto((site / "index.html").as_uri())
    page.get_by_role("link", name="layer4").first.click()
    page.wait_for_selector("#bars svg", timeout=20_000)
    assert page.url.endswith("toynet/layer4/index.html")
    assert page.locator("h1").inner_text().startswith("toynet")

    page.locator("#unit-list li a").first.click()
    assert re.search(r"toynet/layer4/unit-\d{4}\.html$", page.url)
    unit_url = page.url
    page.wait_for_function("document.querySelector('figure.strip img').complete")
    assert page.evaluate("document.querySelector('figure.strip img').naturalWidth") > 0

    label = page.locator("a.concept").inner_text()
    page.locator("a.concept").click()
    assert "/concepts/" in page.url
    assert page.locator("h1").inner_text().startswith(label)

    page.go_back()
    assert page.url == unit_url
    assert log["errors"] == []


def test_layer_units_sort_and_filter(browser_page) -> None:
    site, page, _ = browser_page
    page.goto((site / "toynet" / "layer4" / "index.html").as_uri())
    page.get_by_role("button", name="IoU").click()
    ious = [float(v) for v in page.locator("#unit-list li").evaluate_all("els => els.map(e => e.dataset.iou)")]
    assert ious == sorted(ious, reverse=True)
    page.get_by_role("button", name="unit").click()
    units = [int(v) for v in page.locator("#unit-list li").evaluate_all("els => els.map(e => e.dataset.unit)")]
    assert units == sorted(units)
    page.select_option("#cat-filter", "object")
    cats = page.locator("#unit-list li:visible").evaluate_all("els => els.map(e => e.dataset.cat)")
    assert cats and set(cats) == {"object"}
    assert page.locator("#unit-count").inner_text() == f"{len(cats)} unit{'s' if len(cats) != 1 else ''}"
    page.keyboard.press("Tab")  # controls are real buttons: reachable by keyboard
    page.get_by_role("button", name="label").focus()
    page.keyboard.press("Enter")
    assert page.get_by_role("button", name="label").get_attribute("aria-pressed") == "true"


def test_search_finds_a_concept(browser_page) -> None:
    site, page, log = browser_page
    page.goto((site / "toynet" / "layer3" / "unit-0001.html").as_uri())
    page.fill("#search", "forest")
    link = page.locator("#search-results a", has_text="forest path").first
    link.wait_for(timeout=10_000)
    link.click()
    assert page.url.endswith("concepts/forest_path-s.html")
    assert page.locator("h1").inner_text().startswith("forest path")
    assert log["errors"] == []
