"""Benchmark: how fast the viewer page shows a dropped 12-lead ECG's prediction, and how much the page weighs.

Method. ``ecgfm serve`` with the shipped model (its defaults: 2 workers x 1 thread on 2 cores) on 127.0.0.1, driven by
headless Chromium (Debian's ``chromium`` + ``chromedriver``, Selenium). For each of ``--records`` PTB-XL records
(500-Hz WFDB, ``.hea`` + ``.dat``) the page is loaded afresh and the two files are chosen in its file input, as a user
dropping them would; the page itself times (``performance.now()``) from the file event to the findings table being
filled (``predictionMs``: upload + read + preprocessing + model + JSON + rendering) and to the traces being drawn
(``ecgMs``, ``POST /ecg`` in parallel). The first record after the server starts is reported apart (cold: lazy
imports, first model call). Then, on ``--explain`` records, the top finding is selected (``POST /explain/attribution``,
integrated gradients) and the PDF printout downloaded (``POST /printout``), timed the same way. Page weight: the bytes
the browser fetched for the page and its assets (Resource Timing ``encodedBodySize``) and the package files.

With ``--screenshots DIR`` it also writes the images of ``docs/viewer.md``: ``viewer.png`` (the page with a
finding's attribution shaded) and ``printout.png`` (the standard printout of the same record, with its findings).

Run: ``python benchmarks/viewer.py --ptbxl ../shared/data/ptbxl`` (writes ``benchmarks/results/viewer.json``);
``--screenshots docs/img`` to refresh the documentation's pictures.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import command_line, cpu_flags, free_port, start_server, stop, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def start_browser(profile: Path, downloads: Path, width: int = 1280, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                     f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def wait(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError("page did not finish")


def load(driver, url: str, files: list[Path]) -> dict:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    wait(lambda: driver.execute_script("return document.readyState") == "complete")
    driver.find_element(By.ID, "file").send_keys("\n".join(map(str, files)))
    state = wait(lambda: driver.execute_script("var s = document.body.dataset.state; "
                                               "return s === 'ready' || s === 'error' ? s : null"))
    if state != "ready":
        raise SystemExit(driver.find_element(By.ID, "status").text)
    return driver.execute_script("return window.ecgfmTimings")


def page_weight(driver) -> dict:
    from ecgfm.viewer import ASSETS, asset

    fetched = driver.execute_script("""
        const entries = performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
            .filter(e => !/\\/(ecg|predict|labels|health|explain|printout)/.test(new URL(e.name).pathname)
                         || new URL(e.name).pathname === '/');
        return entries.map(e => [new URL(e.name).pathname, e.encodedBodySize]);""")
    return {"fetched_by_browser": dict(fetched), "fetched_total_bytes": sum(size for _, size in fetched),
            "package_files_bytes": {name: len(asset(name)) for name in ASSETS}}


def explain_and_print(driver, downloads: Path) -> dict:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, "#findings tbody tr")
    start = time.perf_counter()
    row.click()
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#ecg rect.attribution"))
    explained = time.perf_counter() - start
    note = driver.find_element(By.ID, "overlay-note").text
    before = set(downloads.iterdir())
    start = time.perf_counter()
    driver.find_element(By.ID, "pdf").click()
    pdf = wait(lambda: [p for p in set(downloads.iterdir()) - before if p.suffix == ".pdf"])[0]
    printed = time.perf_counter() - start
    return {"label": row.get_attribute("data-label"), "attribution_s": explained, "pdf_s": printed,
            "pdf_bytes": pdf.stat().st_size, "note": note}


def screenshots(driver, url: str, files: list[Path], label: str | None, out: Path) -> list[str]:
    """The page with ``label`` (default: the top finding) shaded, and the printout of the same record."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    from ecgfm.inference.predictor import Predictor
    from ecgfm.io import read
    from ecgfm.printout import printout

    out.mkdir(parents=True, exist_ok=True)
    load(driver, url, files)
    selector = f"#findings tbody tr[data-label='{label}']" if label else "#findings tbody tr"
    driver.find_element(By.CSS_SELECTOR, selector).click()
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#ecg rect.attribution"))
    wait(lambda: not driver.find_element(By.ID, "status").text)
    page = out / "viewer.png"
    driver.save_screenshot(str(page))
    ecg = read(files[0])
    prediction = Predictor.from_pretrained().predict(ecg).to_dict()
    sheet = out / "printout.png"
    printout(ecg, findings=prediction["findings"], model="shipped default").savefig(sheet, dpi=75)
    for path in (page, sheet):  # a 64-colour palette keeps the pictures small without visible loss
        Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return [str(page), str(sheet)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ptbxl", default=os.environ.get("ECGFM_PTBXL_DIR", "../shared/data/ptbxl"))
    parser.add_argument("--records", type=int, default=12, help="records dropped on the page (first is cold)")
    parser.add_argument("--explain", type=int, default=3, help="of those, how many get an attribution and a PDF")
    parser.add_argument("--screenshots", type=Path, default=None, help="also write viewer.png and printout.png here")
    parser.add_argument("--screenshot-record", default="00034_hr", help="record shown in the screenshots")
    parser.add_argument("--screenshot-label", default=None, help="finding shaded in the screenshot (default: top)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    headers = sorted(Path(args.ptbxl).glob("records500/*/*.hea"))[:args.records]
    if len(headers) < 2:
        raise SystemExit(f"no PTB-XL 500-Hz records under {args.ptbxl}")
    records = [[h, h.with_suffix(".dat")] for h in headers]
    work = Path(tempfile.mkdtemp(prefix="ecgfm-viewer-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    # the rate limit off: one client loading records back to back is this benchmark, not an abuser
    server = start_server(port, work / "server.log", "--rate-limit", "0", wait_s=120)
    downloads = work / "downloads"
    downloads.mkdir()
    driver = start_browser(work / "profile", downloads)
    try:
        timings = [load(driver, url, files) for files in records]
        weight = page_weight(driver)
        explained = []
        for files in records[:args.explain]:
            load(driver, url, files)
            explained.append(explain_and_print(driver, downloads))
        pictures = []
        if args.screenshots:
            match = [files for files in records if files[0].stem == args.screenshot_record] or records[:1]
            pictures = screenshots(driver, url, match[0], args.screenshot_label, args.screenshots)
    finally:
        driver.quit()
        stop(server)
    warm = timings[1:]
    prediction_ms = [t["predictionMs"] for t in warm]
    traces_ms = [t["ecgMs"] for t in warm]
    summary = {
        "cold_first_record": {"prediction_ms": timings[0]["predictionMs"], "traces_ms": timings[0]["ecgMs"]},
        "prediction_ms": {"median": statistics.median(prediction_ms), "max": max(prediction_ms), "n": len(warm)},
        "traces_ms": {"median": statistics.median(traces_ms), "max": max(traces_ms), "n": len(warm)},
        "attribution_s_median": statistics.median(e["attribution_s"] for e in explained) if explained else None,
        "pdf_s_median": statistics.median(e["pdf_s"] for e in explained) if explained else None,
    }
    print(f"prediction shown: median {summary['prediction_ms']['median']:.0f} ms (max "
          f"{summary['prediction_ms']['max']:.0f}, cold first {timings[0]['predictionMs']:.0f}); traces: median "
          f"{summary['traces_ms']['median']:.0f} ms; page + assets {weight['fetched_total_bytes']} bytes")
    document = {
        "benchmark": "viewer", "command": command_line(argv), "model": "the shipped default",
        "server": "ecgfm serve defaults (2 workers x 1 thread)", "browser": "headless Chromium (Selenium)",
        "records": [str(files[0].relative_to(args.ptbxl)) for files in records], "summary": summary,
        "per_record": timings, "explained": explained, "page_weight": weight, "screenshots": pictures,
        "environment": {"cpu": cpu_flags(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "chromium": subprocess.run([shutil.which("chromium") or "chromium", "--version"],
                                                   capture_output=True, text=True).stdout.strip()},
        "wall_s": time.perf_counter() - started,
    }
    write_result(args.out or RESULTS / "viewer.json", document)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
