"""``ecgfm predict --report``: one HTML page per batch with findings, thumbnails, sorting data and PDF printouts."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_synthetic_ecg
from ecgfm.cli.main import app
from ecgfm.inference.predictor import Predictor
from ecgfm.io.writers import write
from ecgfm.viewer.batch_report import write_report
from predict_fixtures import LABELS, make_tiny_model, write_wfdb

HOSTILE_ID = "<script>window.__pwned=1</script>"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def records(tmp_path) -> Path:
    folder = tmp_path / "ecgs"
    write_wfdb(folder, "a", fs=500, seed=1)
    write_wfdb(folder, "b", fs=100, seed=2)
    write(make_synthetic_ecg(seed=3), folder / "<img src=x onerror=alert(1)>.xml", format="muse")
    (folder / "broken.hea").write_text("<b>nonsense</b>\n")
    return folder


class _Page(HTMLParser):
    """Collects the rows, links, scripts and the JSON block of the report."""

    def __init__(self):
        super().__init__()
        self.rows, self.links, self.scripts, self.tags = [], [], [], []
        self._script = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "tr" and "data-index" in attrs:
            self.rows.append(attrs)
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "script":
            self._script = attrs
            self.scripts.append([attrs, ""])

    def handle_data(self, data):
        if self._script is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None


def test_predict_report_lists_records_with_thumbnails_printouts_and_failures(model_dir, records, tmp_path):
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["predict", str(records), "--model", str(model_dir), "--report", str(out),
                                      "--no-progress", "--workers", "0"])
    assert result.exit_code == 1, result.output  # broken.hea failed; the rest are predicted and reported
    text = out.read_text()
    page = _Page()
    page.feed(text)
    assert [row["data-record"] for row in page.rows] == ["<img src=x onerror=alert(1)>", "a", "b"]
    assert [int(row["data-n"]) >= 1 for row in page.rows] == [True] * 3  # NORM's threshold is 0
    assert len(page.links) == 3
    for href in page.links:
        pdf = out.parent / href
        assert pdf.parent.name == "report_files" and pdf.read_bytes().startswith(b"%PDF")
    assert text.count('<svg class="thumb"') == 3 and len(text) < 100_000
    # file text never becomes markup: only the page's own two scripts, no <img>, escaped names and reasons
    assert [attrs.get("type") for attrs, _ in page.scripts] == ["application/json", None]
    assert "img" not in page.tags
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "broken.hea" in text
    probabilities = json.loads(page.scripts[0][1])
    assert len(probabilities) == 3 and set(probabilities[1]) == set(LABELS)


def test_report_caps_printouts_for_large_batches(model_dir, records, tmp_path):
    predictor = Predictor.from_pretrained(model_dir)
    report = predictor.predict_many(sorted(records.glob("*.hea")) + sorted(records.glob("*.xml")), num_workers=0)
    path = write_report(report, tmp_path / "big.html", max_detailed=1)
    text = path.read_text()
    assert len(list((tmp_path / "big_files").glob("*.pdf"))) == 1 and text.count('<svg class="thumb"') == 1
    assert "Thumbnails and printouts for the first 1 of 3 records" in text
    assert len(re.findall(r'<tr data-index="\d+"', text)) == 3  # every record is still listed
