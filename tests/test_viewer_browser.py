"""The viewer page in a real browser: ``ecgfm serve`` on 127.0.0.1 driven by headless Chromium through Selenium.

Files are uploaded through the page's file input (as a person choosing them would); the tests check the traces are
drawn, the findings listed match ``POST /predict`` for the same files, selecting a finding shades the traces, the PDF
printout downloads, and text from a crafted file never runs as code. A tiny model serves most tests; one test uses
the shipped model. Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and ``selenium``.
"""
from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import make_synthetic_ecg
from ecgfm.io.writers import write
from ecgfm.printout import format_probability
from predict_fixtures import make_tiny_model, serving, write_wfdb

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
                None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="no Chromium or chromedriver installed (Debian: apt-get install chromium "
                                       "chromium-driver)")
PAGE_TIMEOUT_S = 60


# -- the server and the browser ------------------------------------------------------------------------------------------

@contextmanager
def serving_model(model: Path | None, log: Path, env: dict[str, str] | None = None):
    """``ecgfm serve`` (the shipped model when ``model`` is None) on a free port until the block ends; ``env``: extra
    environment variables."""
    with serving(["--workers", "2", "--threads", "1"] + (["--model", str(model)] if model else []), log, env) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    with serving_model(tiny_model, tmp_path_factory.mktemp("log") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory, downloads):
    """Headless Chromium with a fresh profile, no network services of its own, downloads into ``downloads``."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium did not start: {exc.msg}")
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    yield driver
    driver.quit()


def _wait(predicate, what: str, timeout: float = PAGE_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def open_files(driver, url: str, paths: list[Path]) -> None:
    """Load the page afresh and choose ``paths`` in its file input; wait until it has drawn and predicted."""
    driver.get(url + "/")
    driver.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in paths))
    state = _wait(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("ready", "error")
                  and driver.find_element(By.TAG_NAME, "body").get_attribute("data-state"), "the page to load the file")
    assert state == "ready", driver.find_element(By.ID, "status").text


def listed_findings(driver) -> list[tuple[str, str, str]]:
    return [(row.get_attribute("data-label"), row.find_element(By.CSS_SELECTOR, "td.prob").text,
             row.find_element(By.CSS_SELECTOR, "td.flag").text)
            for row in driver.find_elements(By.CSS_SELECTOR, "#findings tbody tr")]


def predicted_findings(url: str, paths: list[Path]) -> list[tuple[str, str, str]]:
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    response = httpx.post(f"{url}/predict", files=files, timeout=60)
    assert response.status_code == 200, response.text
    return [(f["label"], format_probability(f["probability"]), "yes") for f in response.json()["findings"]]


def drawn_traces(driver) -> list[dict]:
    """Each drawn trace: its lead, number of points and width on the paper (mm)."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#ecg path.trace')).map(p => ({
            lead: p.dataset.lead, points: (p.getAttribute('d').match(/[ML]/g) || []).length,
            width: p.getBBox().width, height: p.getBBox().height}));""")


# -- the files -----------------------------------------------------------------------------------------------------------

def _ptbxl_record() -> list[Path]:
    root = Path(os.environ.get("ECGFM_PTBXL_DIR") or Path(__file__).resolve().parents[2] / "shared/data/ptbxl")
    headers = sorted((root / "records500").glob("*/*.hea"))[:1]
    if not headers:
        pytest.skip(f"no PTB-XL records under {root}/records500; set ECGFM_PTBXL_DIR")
    return [headers[0], headers[0].with_suffix(".dat")]


def _formats_muse() -> list[Path]:
    root = Path(os.environ.get("ECGFM_FORMATS_DIR") or Path(__file__).resolve().parents[2] / "shared/data/formats")
    files = sorted((root / "ge_muse_xml").glob("*.xml"))[:1]
    if not files:
        pytest.skip(f"no MUSE XML under {root}/ge_muse_xml; set ECGFM_FORMATS_DIR")
    return files


def _synthetic_wfdb(folder: Path) -> list[Path]:
    header = write_wfdb(folder, "synthetic_wfdb", fs=500, seed=5)
    return [header, header.with_suffix(".dat")]


def _synthetic_muse(folder: Path) -> list[Path]:
    ecg = make_synthetic_ecg(fs=500, seed=6, patient_id="P-0006", sex="F")
    return [write(ecg, folder / "synthetic_muse.xml", format="muse")]


SOURCES = {"synthetic WFDB": _synthetic_wfdb, "synthetic MUSE": _synthetic_muse,
           "PTB-XL WFDB": lambda folder: _ptbxl_record(), "MUSE from formats": lambda folder: _formats_muse()}


# -- the tests -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", list(SOURCES))
def test_page_draws_predicts_explains_and_prints(server, browser, downloads, tmp_path, source):
    paths = SOURCES[source](tmp_path)
    open_files(browser, server, paths)

    traces = drawn_traces(browser)  # 3 x 4 cells of 2.5 s (62.5 mm) and the 10-s (250-mm) rhythm strip
    assert sorted(t["lead"] for t in traces) == sorted(["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4",
                                                        "V5", "V6", "II"])
    assert all(t["points"] > 100 and t["width"] > 60 and t["height"] > 1 for t in traces), traces
    assert max(t["width"] for t in traces) > 245

    assert listed_findings(browser) == predicted_findings(server, paths)  # the same findings as POST /predict

    label = browser.find_element(By.CSS_SELECTOR, "#findings tbody tr").get_attribute("data-label")
    browser.find_element(By.CSS_SELECTOR, f"#findings tbody tr[data-label='{label}']").click()
    shaded = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#ecg rect.attribution"), "the attribution overlay")
    assert len(shaded) >= 10  # 40-ms bins with at least 5% of the largest attribution
    note = browser.find_element(By.ID, "overlay-note").text
    assert label in note and ("Shading" in note or "shading" in note)

    before = set(downloads.iterdir())
    browser.find_element(By.ID, "pdf").click()
    new = _wait(lambda: [p for p in set(downloads.iterdir()) - before if p.suffix == ".pdf"], "the PDF download")
    assert new[0].read_bytes().startswith(b"%PDF")


def test_layout_speed_gain_and_zoom_redraw(server, browser, tmp_path):
    open_files(browser, server, _synthetic_wfdb(tmp_path))
    svg = browser.find_element(By.ID, "ecg")
    width = int(svg.get_attribute("width"))
    browser.find_element(By.ID, "zoom-in").click()
    assert int(svg.get_attribute("width")) > width
    browser.find_element(By.ID, "zoom-actual").click()  # 1 mm of paper = 96/25.4 CSS pixels
    view_width = float(svg.get_dom_attribute("viewBox").split()[2])
    assert int(svg.get_attribute("width")) == round(view_width * 96 / 25.4)
    browser.find_element(By.CSS_SELECTOR, "#layout option[value='rows']").click()
    traces = drawn_traces(browser)
    assert len(traces) == 12 and all(t["width"] > 245 for t in traces)  # one 10-s row per lead
    browser.find_element(By.CSS_SELECTOR, "#speed option[value='50']").click()
    assert all(t["width"] > 490 for t in drawn_traces(browser))  # 10 s at 50 mm/s
    browser.find_element(By.CSS_SELECTOR, "#gain option[value='20']").click()
    tall = max(t["height"] for t in drawn_traces(browser))
    browser.find_element(By.CSS_SELECTOR, "#gain option[value='5']").click()
    assert max(t["height"] for t in drawn_traces(browser)) == pytest.approx(tall / 4, rel=0.01)


def test_long_record_is_shown_in_windows(server, browser, tmp_path):
    header = write_wfdb(tmp_path, "long", fs=100, seconds=150.0, seed=8)
    open_files(browser, server, [header, header.with_suffix(".dat")])
    assert browser.find_element(By.ID, "window-note").text == "Showing 0.0\u201360.0 s of 150.0 s."
    browser.find_element(By.CSS_SELECTOR, "#layout option[value='rows']").click()
    assert max(t["width"] for t in drawn_traces(browser)) > 60 * 25 - 5  # 60 s at 25 mm/s
    browser.find_element(By.ID, "later").click()
    _wait(lambda: browser.find_element(By.ID, "window-note").text == "Showing 60.0\u2013120.0 s of 150.0 s.",
          "the next minute")
    browser.find_element(By.CSS_SELECTOR, "#findings tbody tr").click()  # the model reads all 150 s
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#ecg rect.attribution"), "the attribution overlay")
    assert "The model reads" not in browser.find_element(By.ID, "overlay-note").text  # no part left unread


HOSTILE = {  # each would set window.__pwned if the page ever treated file text as HTML
    "patient_id": "<script>window.__pwned = 1</script>",
    "device": '<img src=x onerror="window.__pwned = 2">',
    "statements": ['<svg onload="window.__pwned = 3"></svg>', "</td><script>window.__pwned = 4</script>"],
}


def test_crafted_muse_xml_text_shows_literally_and_never_runs(server, browser, tmp_path):
    ecg = make_synthetic_ecg(fs=500, seed=9, **HOSTILE)
    path = write(ecg, tmp_path / "<img src=x onerror=window.__pwned=5>.xml", format="muse")  # record id = file name
    open_files(browser, server, [path])
    page_text = browser.find_element(By.TAG_NAME, "body").text
    for text in [HOSTILE["patient_id"], HOSTILE["device"], *HOSTILE["statements"], "<img src=x onerror=window.__pwned=5>"]:
        assert text in page_text  # shown as text, character for character
    browser.find_element(By.CSS_SELECTOR, "#findings tbody tr").click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#ecg rect.attribution"), "the attribution overlay")
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img, script:not([src]), iframe').length") == 0
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1


def test_dropping_a_file_on_the_page(server, browser, tmp_path):
    """A file dropped on the drop zone (a synthetic drag-and-drop event carrying the file's bytes) loads like a chosen
    one."""
    import base64

    path = _synthetic_muse(tmp_path)[0]
    browser.get(server + "/")
    browser.execute_script("""
        const [name, data] = arguments;
        const file = new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], name);
        const transfer = new DataTransfer();
        transfer.items.add(file);
        const zone = document.getElementById('drop');
        for (const type of ['dragover', 'drop'])
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        """, path.name, base64.b64encode(path.read_bytes()).decode("ascii"))
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready", "the drop")
    assert len(drawn_traces(browser)) == 13
    assert listed_findings(browser) == predicted_findings(server, [path])


def test_unreadable_file_shows_the_reason(server, browser, tmp_path):
    broken = tmp_path / "broken.hea"
    broken.write_text("nonsense\n")
    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(broken))
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error", "the error")
    assert "broken.hea" in browser.find_element(By.ID, "status").text


def test_page_asks_for_the_api_key_once_and_sends_it(browser, tiny_model, tmp_path):
    """A server started with an API key: the page (public) asks for the key at the first 401, then sends it with
    every request of the tab, so drawing and predicting work as without a key."""
    from selenium.common.exceptions import NoAlertPresentException

    def alert():
        try:
            return browser.switch_to.alert
        except NoAlertPresentException:
            return None

    key = "browser-test-key-0123456789"
    with serving_model(tiny_model, tmp_path / "server.log", env={"ECGFM_API_KEY": key}) as url:
        assert httpx.get(f"{url}/labels").status_code == 401
        browser.get(url + "/")
        prompt = _wait(alert, "the page to ask for the API key")
        prompt.send_keys(key)
        prompt.accept()
        _wait(lambda: browser.find_element(By.ID, "model").text.startswith("model: resnet1d_small"), "the model line")
        open_files(browser, url, _synthetic_wfdb(tmp_path))  # the page reloads: the key is kept for the tab
        assert alert() is None and len(drawn_traces(browser)) == 13 and listed_findings(browser)


def test_shipped_model_through_the_page(browser, tmp_path):
    """The default model end to end; the page's own timing of the prediction is printed (benchmarks/viewer.py
    measures it properly)."""
    try:
        paths = _ptbxl_record()
    except pytest.skip.Exception:
        paths = _synthetic_wfdb(tmp_path)
    with serving_model(None, tmp_path / "server.log") as url:
        open_files(browser, url, paths)
        assert listed_findings(browser) == predicted_findings(url, paths)
        timings = browser.execute_script("return window.ecgfmTimings")
    print(f"shipped model: prediction shown {timings['predictionMs']:.0f} ms, traces {timings['ecgMs']:.0f} ms "
          "after the files were chosen")


def test_batch_report_sorts_by_a_findings_probability(browser, tiny_model, tmp_path):
    """The page of ``ecgfm predict --report``, opened from disk: clicking a finding orders records by it."""
    from ecgfm.inference.predictor import Predictor
    from ecgfm.viewer.batch_report import write_report

    predictor = Predictor.from_pretrained(tiny_model)
    headers = [write_wfdb(tmp_path, f"r{seed}", fs=100, seed=seed) for seed in range(4)]
    report = predictor.predict_many(headers, num_workers=0)
    page = write_report(report, tmp_path / "report.html")
    browser.get(page.as_uri())
    browser.find_element(By.CSS_SELECTOR, ".chip[data-label='NORM']").click()
    order = [row.get_attribute("data-record") for row in browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")]
    expected = sorted(report.predictions, key=lambda p: -p.probabilities["NORM"])
    assert order == [p.record_id for p in expected]
    shown = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#records tbody td.sortp")]
    assert shown == [f"{p.probabilities['NORM']:.2f}" for p in expected]  # the report shows two decimals
    browser.find_element(By.CSS_SELECTOR, "th[data-sort='record']").click()
    assert [row.get_attribute("data-record") for row in
            browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")] == ["r0", "r1", "r2", "r3"]
