"""The viewer end to end in a real headless Chromium (Debian's, driven by Python playwright).

A real uvicorn server on a loopback port serves the trained classifier and a segmentation-
shaped entry; the test uploads files as a user would and checks what the page shows. The
screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medsight.service.app import create_app
from medsight.service.models import ModelRegistry, load_registry
from medsight.service.settings import ServiceSettings

from .conftest import KEY, fake_lesion_model
from .servers import ServerThread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make install adds it)"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module (playwright's sync API allows one running at a time)."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    profile = tmp_path_factory.mktemp("chromium")  # its caches and downloads stay in the test's folder
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, downloads_path=str(profile))
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str, width: int = 1280):
    """A new page on ``url``, and the list its script errors and console errors go to."""
    page = browser.new_page(viewport={"width": width, "height": 800}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url + "/")
    return page, errors


@pytest.fixture(scope="module")
def browser_page(served, browser):
    registry = ModelRegistry()
    registry.add(served.get("nodules"))
    registry.add(fake_lesion_model())
    with ServerThread(create_app(registry, ServiceSettings(api_key=KEY))) as server:
        page, errors = open_page(browser, server.url)
        try:
            yield page, server, errors
        finally:
            page.close()


def canvas_stats(page) -> dict:
    """Mean brightness and the share of strongly coloured pixels on the image canvas."""
    return page.evaluate("""() => {
        const c = document.getElementById('image-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let sum = 0, coloured = 0;
        for (let i = 0; i < d.length; i += 4) {
            sum += d[i] + d[i + 1] + d[i + 2];
            const max = Math.max(d[i], d[i + 1], d[i + 2]), min = Math.min(d[i], d[i + 1], d[i + 2]);
            if (max - min > 60) coloured++;
        }
        return {mean: sum / (d.length / 4 * 3), coloured: coloured / (d.length / 4), width: c.width};
    }""")


def test_classify_a_dicom_in_the_browser(browser_page, served, slice_files):
    page, server, errors = browser_page
    page.wait_for_selector("#status:has-text('Enter the API key')")
    page.fill("#api-key", KEY)
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector("#model option[value=nodules]", state="attached")
    page.select_option("#model", "nodules")
    page.set_input_files("#file-input", str(slice_files["dicom"]))
    page.wait_for_selector("#result:not(.hidden)")
    page.wait_for_selector("#image-canvas[data-drawn=heatmap]", state="attached")  # (CSP forbids eval)

    import httpx

    expected = httpx.post(server.url + "/v1/predict?model=nodules", headers={"X-API-Key": KEY},
                          files={"file": ("s.dcm", slice_files["dicom"].read_bytes())}).json()
    assert page.inner_text("#result-label") == expected["label"]
    for name, p in expected["probabilities"].items():
        row = page.locator(f".prob-row[data-class='{name}']")
        assert f"{100 * p:.1f}%" in row.inner_text()
    assert page.locator(".prob-row.predicted").get_attribute("data-class") == expected["label"]
    assert page.is_hidden("#lesions")

    with_heat = canvas_stats(page)
    assert with_heat["width"] == 512 and with_heat["mean"] > 5  # an image is drawn, scaled up
    page.fill("#opacity", "0")
    page.dispatch_event("#opacity", "input")
    without = canvas_stats(page)
    assert with_heat["coloured"] > without["coloured"]  # the jet heatmap adds colour
    page.fill("#opacity", "60")
    page.dispatch_event("#opacity", "input")

    page.click("button.preset[data-preset=bone]")  # a CT window preset changes the picture
    assert page.input_value("#level") == "400" and page.input_value("#width") == "1800"
    assert canvas_stats(page)["mean"] != pytest.approx(with_heat["mean"], abs=0.5)

    with page.expect_download() as info:
        page.click("#download-json")
    downloaded = json.loads(Path(info.value.path()).read_text())
    assert downloaded["label"] == expected["label"] and "image" not in downloaded
    with page.expect_download() as info:
        page.click("#download-report")
    report = Path(info.value.path()).read_text()
    assert expected["label"] in report and "data:image/png;base64," in report

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-classification.png"), full_page=True)
    assert not [e for e in errors if "401" not in e], errors  # 401: the first model list, before the key


def test_segmentation_overlay_and_lesion_list(browser_page, slice_files):
    page, _, errors = browser_page
    if not page.input_value("#api-key"):  # run alone: the test before it entered the key
        page.fill("#api-key", KEY)
        page.dispatch_event("#api-key", "change")
    listed = page.locator("#cases li").count()
    page.select_option("#model", "lesions")
    page.set_input_files("#file-input", str(slice_files["png"]))
    page.wait_for_selector("#image-canvas[data-drawn=mask]", state="attached")
    rows = page.locator("#lesion-table tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("td").nth(0).inner_text() == "1"
    assert page.inner_text("#size-head") == "Area (mm²)"
    assert rows.nth(1).locator("td").nth(4).inner_text() == "0.70"
    shown = canvas_stats(page)
    page.check("#layer-none")
    plain = canvas_stats(page)
    assert shown["coloured"] > plain["coloured"] + 0.01  # the mask colours ~3% of the image
    page.check("#layer-mask")
    assert page.locator("#cases li").count() == listed + 1  # earlier uploads stay listed, to be reopened
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-segmentation.png"), full_page=True)

    page.set_input_files("#file-input", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"})
    page.wait_for_selector("#error:not(.hidden)")
    assert "unsupported content" in page.inner_text("#error")
    assert page.locator("#cases li.failed").count() == 1
    assert not [e for e in errors if "401" not in e and "415" not in e], errors  # the failed upload: its 415


@pytest.fixture(scope="module")
def similar_page(trained_run, similar_index, browser):
    """The classifier served with a similar-case index, beside a model without one."""
    registry = load_registry([f"nodules={trained_run}"], [f"nodules={similar_index[0]}"])
    registry.add(fake_lesion_model())
    with ServerThread(create_app(registry, ServiceSettings(api_key=KEY))) as server:
        page, errors = open_page(browser, server.url)
        try:
            yield page, errors
        finally:
            page.close()


def test_similar_earlier_cases_beside_the_diagnosis(similar_page, similar_index, slice_files):
    page, errors = similar_page
    page.fill("#api-key", KEY)
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector("#model option[value=nodules]", state="attached")
    page.select_option("#model", "nodules")
    assert page.is_visible("#similar-box") and page.input_value("#similar-k") == "5"
    page.fill("#similar-k", "4")
    page.set_input_files("#file-input", str(slice_files["nifti"]))
    page.wait_for_selector("#similar:not(.hidden)")
    rows = page.locator("#similar-table tbody tr")
    assert rows.count() == 4
    first = rows.nth(0).locator("td")
    assert [first.nth(i).inner_text() for i in range(3)] == [similar_index[1], "nodule", "0.000"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-similar.png"), full_page=True)

    page.select_option("#model", "lesions")  # no index: no K to choose, no panel
    assert page.is_hidden("#similar-box")
    page.set_input_files("#file-input", str(slice_files["png"]))
    page.wait_for_selector("#image-canvas[data-drawn=mask]", state="attached")
    assert page.is_hidden("#similar")
    assert not [e for e in errors if "401" not in e], errors


@pytest.fixture(scope="module")
def single_model_page(served, browser, tmp_path_factory):
    """The viewer of a service with one model and a worklist database, in a page of its own."""
    from medsight.store import open_database

    from .worklist_data import seed_worklist

    registry = ModelRegistry()
    registry.add(served.get("nodules"))
    url = seed_worklist(f"sqlite:///{tmp_path_factory.mktemp('worklist') / 'node.db'}")
    db = open_database(url)
    try:
        with ServerThread(create_app(registry, ServiceSettings(api_key=KEY), db)) as server:
            page, errors = open_page(browser, server.url, width=1400)
            try:
                yield page, url, errors
            finally:
                page.close()
    finally:
        db.close()


def test_a_typed_key_loads_the_single_model_and_a_failed_upload_says_why(single_model_page, slice_files):
    page, _, errors = single_model_page
    page.wait_for_selector("#status:has-text('Enter the API key')")
    page.click("#api-key")
    page.keyboard.type(KEY)  # typed, no change event: the focus never leaves the field
    page.wait_for_selector("#model option[value=nodules]", state="attached")
    assert page.input_value("#model") == "nodules"
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.set_input_files("#file-input", str(slice_files["png"]))  # no model picked by hand
    page.wait_for_selector("#result:not(.hidden)")
    assert page.inner_text("#result-label") in ("nodule", "no nodule")
    assert page.locator("#cases li.failed").count() == 0

    page.set_input_files("#file-input", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"})
    failed = page.locator("#cases li.failed")
    failed.wait_for()
    detail = failed.locator(".error-detail").inner_text()
    assert "unsupported content" in detail  # the service's own message, beside the file
    assert "notes.txt" in failed.inner_text() and "failed" not in detail
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-failed-upload.png"), full_page=True)
    assert not [e for e in errors if "401" not in e and "415" not in e], errors


def test_a_pasted_key_loads_the_models_too(single_model_page):
    page, _, _ = single_model_page
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.wait_for_selector("#status:has-text('Enter the API key')")
    assert page.locator("#model option").count() == 0
    # a paste fires one input event with the whole key
    page.evaluate("""key => { const f = document.getElementById('api-key'); f.focus(); f.value = key;
                      f.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertFromPaste'})); }""",
                  KEY)
    page.wait_for_selector("#model option[value=nodules]", state="attached")
    assert page.inner_text("#status") == "Ready: drop images"


def test_the_worklist_page_lists_by_priority_and_stores_a_verdict(single_model_page):
    from medsight.store import open_database
    from medsight.store.jobs import feedback_rows

    page, url, errors = single_model_page
    if page.locator("#model option").count() == 0:
        page.fill("#api-key", KEY)
    page.click("#tab-worklist")
    page.wait_for_selector("#worklist-table tbody tr")
    assert page.is_hidden("#viewer-page")
    rows = page.locator("#worklist-table tbody tr")
    studies = [rows.nth(i).get_attribute("data-study") for i in range(rows.count())]
    assert studies == ["1.2.1", "1.2.7", "1.2.4", "1.2.3", "1.2.2", "1.2.5", "1.2.6"]
    top = rows.nth(0)
    assert top.locator(".wl-status").inner_text() == "done"
    assert top.locator(".wl-finding").inner_text() == "nodule"
    assert top.locator(".wl-probability").inner_text() == "91.0%"
    assert top.locator(".wl-uncertainty").inner_text() == "20.0%"
    assert top.locator(".wl-time").inner_text() == "7.0 min"
    assert "unusual image" in rows.nth(2).locator(".wl-finding").inner_text()  # the flagged input
    assert top.locator(".wl-open").is_disabled()  # no PACS here to fetch the image from
    assert "Doe" not in page.inner_text("#worklist-table")  # no patient name unless enabled

    top.locator(".wl-comment").fill("agree, 8 mm nodule")
    top.locator(".wl-accept").click()
    page.wait_for_selector("#worklist-table tbody tr[data-study='1.2.1'][data-verdict=accepted]")
    assert top.locator(".wl-verdict").inner_text() == "accepted: agree, 8 mm nodule"
    rows.nth(1).locator(".wl-reject").click()
    page.wait_for_selector("#worklist-table tbody tr[data-study='1.2.7'][data-verdict=rejected]")
    stored = feedback_rows(open_database(url))
    assert [(f["study_uid"], f["accepted"], f["comment"]) for f in stored] == [
        ("1.2.1", True, "agree, 8 mm nodule"), ("1.2.7", False, None)]
    assert all(f["reader"].startswith("key-") for f in stored)

    page.select_option("#wl-status", "failed")
    page.click("#wl-refresh")
    page.wait_for_selector("#wl-message:text-is('1 row')")
    assert page.locator("#worklist-table tbody tr").get_attribute("data-study") == "1.2.6"
    page.select_option("#wl-status", "")
    page.click("#wl-refresh")
    page.wait_for_selector("#wl-message:text-is('7 rows')")
    assert "accepted" in page.locator("#worklist-table tbody tr[data-study='1.2.1'] .wl-verdict").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-worklist.png"), full_page=True)
    page.click("#tab-viewer")
    assert page.is_visible("#viewer-page") and page.is_hidden("#worklist-page")
    assert not [e for e in errors if "401" not in e and "415" not in e], errors
