"""The standard 12-lead printout: true scale measured from the PDF's own geometry, heart rate, short records and
missing leads, escaping of file text, Jupyter reprs and ``ecgfm plot``."""
from __future__ import annotations

import io
import re
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_synthetic_ecg
from ecgfm import ECG
from ecgfm.cli.main import app
from ecgfm.errors import ECGValueError
from ecgfm.leads import STANDARD_LEADS
from ecgfm.printout import format_probability, heart_rate, printout
from predict_fixtures import make_tiny_model, write_wfdb

MM_PER_PT = 25.4 / 72  # PDF user space: 1 unit = 1/72 inch


# -- reading geometry back from a PDF ---------------------------------------------------------------------------------

def _pdf_page_mm(pdf: bytes) -> tuple[float, float]:
    x0, y0, x1, y1 = map(float, re.search(rb"/MediaBox\s*\[([^\]]*)\]", pdf).group(1).split())
    return (x1 - x0) * MM_PER_PT, (y1 - y0) * MM_PER_PT


def _pdf_paths(pdf: bytes) -> list[np.ndarray]:
    """Every stroked polyline of the page content (``x y m``, ``x y l`` ... ``S``), in PDF points."""
    paths, current, operands = [], [], []
    for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            content = zlib.decompress(raw)
        except zlib.error:
            continue
        for token in content.split():
            if re.fullmatch(rb"-?[0-9.]+", token):
                operands.append(float(token))
                continue
            if token == b"cm":  # a scaling transform would make raw coordinates lie about the printed size
                a, b, c, d = operands[-6:-2]
                assert (a, b, c, d) == (1, 0, 0, 1) or (a, d) == (1, 1) and b == c == 0, operands[-6:]
            if token == b"m":
                current = [operands[-2:]]
            elif token == b"l" and current:
                current.append(operands[-2:])
            elif token in (b"S", b"s") and current:
                paths.append(np.array(current))
                current = []
            operands = []
    return paths


def _pulse_ecg(fs: float = 500.0, seconds: float = 10.0) -> ECG:
    """Flat leads; lead II holds a 1-mV, 0.2-s square pulse every second from 0.5 s (edges to measure)."""
    t = np.arange(int(fs * seconds)) / fs
    signal = np.zeros((12, t.size))
    signal[1] = ((t % 1.0) >= 0.5) & ((t % 1.0) < 0.7)
    return ECG(signal, fs, STANDARD_LEADS, {"record_id": "pulses"})


def _pdf_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf")
    return buffer.getvalue()


@pytest.mark.parametrize("speed,gain", [(25, 10), (50, 10), (25, 5), (25, 20)])
def test_pdf_is_true_scale(speed, gain):
    """On the PDF page, one second of trace spans ``speed`` mm and one millivolt ``gain`` mm (within 1%)."""
    pdf = _pdf_bytes(printout(_pulse_ecg(), speed=speed, gain=gain))
    width, height = _pdf_page_mm(pdf)
    assert width == pytest.approx(297, rel=1e-3) and height == pytest.approx(210, rel=1e-3)  # A4 landscape
    paths = _pdf_paths(pdf)
    rhythm = max(paths, key=len)  # lead II over the whole strip: the most corners
    x, y = rhythm[:, 0] * MM_PER_PT, rhythm[:, 1] * MM_PER_PT
    rises = np.flatnonzero(np.diff(y) > 0.5 * gain)
    assert len(rises) == 250 / speed  # a 250-mm strip: 10 s at 25 mm/s, 5 s at 50 mm/s
    rise_x = (x[rises] + x[rises + 1]) / 2
    mm_per_second = (rise_x[-1] - rise_x[0]) / (len(rises) - 1)
    mm_per_mv = float(np.median(y[rises + 1] - y[rises]))
    assert mm_per_second == pytest.approx(speed, rel=0.01)
    assert mm_per_mv == pytest.approx(gain, rel=0.01)
    pulses = [p * MM_PER_PT for p in paths if len(p) == 6 and np.ptp(p[:, 1]) > 0]  # the calibration pulses
    assert len(pulses) == 4  # one per row
    for pulse in pulses:
        assert np.ptp(pulse[:, 1]) == pytest.approx(gain, rel=0.01)  # 1 mV
        assert pulse[3, 0] - pulse[2, 0] == pytest.approx(0.2 * speed, rel=0.01)  # 200 ms


def test_grid_is_one_and_five_millimetres():
    pdf = _pdf_bytes(printout(_pulse_ecg()))
    verticals = sorted({round(p[0, 0] * MM_PER_PT, 3) for p in _pdf_paths(pdf)
                        if len(p) == 2 and p[0, 0] == p[1, 0] and np.ptp(p[:, 1]) * MM_PER_PT > 100})
    steps = np.diff(verticals)
    assert steps.min() == pytest.approx(1.0, abs=0.01) and steps.max() == pytest.approx(1.0, abs=0.01)
    assert len(verticals) >= 250  # the whole strip is on 1-mm paper


@pytest.mark.parametrize("fs", [500.0, 100.0])
@pytest.mark.parametrize("rate", [45.0, 72.0, 150.0])
def test_heart_rate_from_r_peaks_despite_noise_and_wander(rate, fs):
    ecg = make_synthetic_ecg(fs=fs, seconds=10.0, heart_rate=rate, noise_mv=0.05, seed=int(rate))
    t = np.arange(ecg.n_samples) / fs
    wander = 0.5 * np.sin(2 * np.pi * 0.3 * t)  # 0.5 mV of baseline wander at 0.3 Hz (breathing)
    assert heart_rate(ecg.signal + wander, fs) == pytest.approx(rate, rel=0.03)


def test_heart_rate_is_none_without_a_rhythm():
    assert heart_rate(np.zeros((12, 5000)), 500.0) is None  # flat line
    assert heart_rate(make_synthetic_ecg(seconds=2.0).signal, 500.0) is None  # too short
    assert heart_rate(make_synthetic_ecg(fs=40.0).signal, 40.0) is None  # below the QRS band


def _texts(figure) -> str:
    return "\n".join(text.get_text() for text in figure.axes[0].texts)


def test_header_has_record_date_rate_and_findings():
    ecg = make_synthetic_ecg(heart_rate=60, record_id="00042_hr", patient_id="P7", age=63.0, sex="F",
                             acquisition_time="2020-01-02T10:00:00", statements=["Sinus rhythm"])
    findings = [{"label": "AFIB", "description": "atrial fibrillation", "probability": 0.91, "threshold": 0.4,
                 "rule": "f1"}]
    texts = _texts(printout(ecg, findings=findings, quality=["lead V3 flat"], model="default8"))
    for expected in ("00042_hr", "patient P7, 63 y, female, 2020-01-02T10:00:00", "rate 60 bpm", "25 mm/s, 10 mm/mV",
                     "AFIB atrial fibrillation: 0.91 / 0.40 (f1)", "(default8)", "signal quality: lead V3 flat",
                     "device statements: Sinus rhythm"):
        assert expected in texts
    assert "no finding above its threshold" in _texts(printout(ecg, findings=[]))
    assert "Model findings" not in _texts(printout(ecg))  # no model, no findings section


@pytest.mark.parametrize("value,text", [(0.934, "0.93"), (0.1, "0.10"), (0.05, "0.050"), (0.0021, "0.0021"),
                                        (0.001, "0.0010"), (0.0004, "< 0.001"), (0.0, "< 0.001")])
def test_small_probabilities_keep_two_significant_digits(value, text):
    assert format_probability(value) == text


def test_findings_as_objects_like_predictor_findings():
    from ecgfm.inference.predictor import Finding

    texts = _texts(printout(make_synthetic_ecg(), findings=[Finding("NORM", "normal ECG", 0.93, 0.51)]))
    assert "NORM normal ECG: 0.93 / 0.51" in texts


def test_any_object_with_signal_fs_leads_and_meta_plots():
    from types import SimpleNamespace

    record = SimpleNamespace(signal=make_synthetic_ecg(leads=("I", "II")).signal, fs=500.0, leads=["lead I", "ii"],
                             meta={"record_id": "duck"})
    texts = _texts(printout(record))
    assert "duck" in texts and "not recorded: III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6" in texts


def test_short_record_and_missing_leads_still_plot_and_say_so():
    leads = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    ecg = make_synthetic_ecg(seconds=4.0, leads=leads)
    figure = printout(ecg)
    texts = _texts(figure)
    assert "not recorded: III, aVR, aVL, aVF" in texts
    assert "record ends at 4.0 s: no trace after it" in texts
    assert texts.count("no data (record ended)") == 6  # V1-V6 sit in the columns after 5 s
    assert texts.count("not recorded") >= 4
    figure.savefig(io.BytesIO(), format="png", dpi=30)
    no_ii = printout(make_synthetic_ecg(leads=("I", "V1")))
    assert "rhythm strip: lead I (lead II not recorded)" in _texts(no_ii)


def test_rows_layout_for_long_records_sizes_the_page():
    ecg = make_synthetic_ecg(fs=250.0, seconds=30.0)
    figure = printout(ecg, layout="rows", gain=5)
    width_mm = figure.get_figwidth() * 25.4
    assert width_mm == pytest.approx(25 + 750 + 5 + 8, abs=0.5)  # 30 s at 25 mm/s after the calibration margin
    assert [t for t in _texts(figure).split("\n") if t in STANDARD_LEADS] == list(STANDARD_LEADS)
    long = printout(make_synthetic_ecg(fs=100.0, seconds=90.0), layout="rows")
    assert "showing 0.0-60.0 s of 90.0 s" in _texts(long)
    assert "showing 30.0-50.0 s of 90.0 s" in _texts(printout(make_synthetic_ecg(fs=100.0, seconds=90.0),
                                                             layout="rows", start=30, seconds=20))


@pytest.mark.parametrize("kwargs,message", [({"speed": 30}, "paper speed"), ({"gain": 7}, "gain"),
                                            ({"layout": "spiral"}, "layout"), ({"start": 11}, "outside the record"),
                                            ({"layout": "rows", "seconds": 1e6}, "seconds must be")])
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ECGValueError, match=message):
        printout(make_synthetic_ecg(), **kwargs)


def test_file_text_is_escaped_in_svg_and_never_parsed_as_math():
    ecg = make_synthetic_ecg(record_id="<script>alert(1)</script>", patient_id="$\\frac{$ 5$",
                             statements=["<img src=x onerror=alert(2)>"])
    buffer = io.BytesIO()
    figure = printout(ecg)
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    assert b"<script" not in svg.lower() and b"<img" not in svg.lower()
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "patient $\\frac{$ 5$" in _texts(figure)  # printed as is: no mathtext (which would fail to parse)
    figure.savefig(io.BytesIO(), format="png", dpi=30)


def test_ecg_plot_and_jupyter_reprs():
    ecg = make_synthetic_ecg(record_id="<b>bold</b>")
    assert "<b>bold</b>" in _texts(ecg.plot(gain=5))
    assert ecg._repr_png_().startswith(b"\x89PNG")
    html = ecg._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html and "data:image/png;base64," in html


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


def test_plot_command_writes_pdf_png_svg(tmp_path, tiny_model):
    header = write_wfdb(tmp_path, "rec", fs=500, seed=3)
    runner = CliRunner()
    pdf = tmp_path / "out" / "ecg.pdf"
    result = runner.invoke(app, ["plot", str(header), "--out", str(pdf)])
    assert result.exit_code == 0, result.output
    assert pdf.read_bytes().startswith(b"%PDF") and _pdf_page_mm(pdf.read_bytes())[0] == pytest.approx(297, rel=1e-3)
    with_model = tmp_path / "findings.svg"  # SVG keeps each text as a comment: the findings can be read back
    result = runner.invoke(app, ["plot", str(header), "--out", str(with_model), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert b"NORM normal ECG: " in with_model.read_bytes() and b"(resnet1d_small)" in with_model.read_bytes()
    for name, extra in (("ecg.png", ["--dpi", "40"]), ("ecg.svg", ["--layout", "rows", "--speed", "50"])):
        result = runner.invoke(app, ["plot", str(header), "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "ecg.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "ecg.svg").read_bytes()
    bad = runner.invoke(app, ["plot", str(header), "--out", str(tmp_path / "ecg.txt")])
    assert bad.exit_code == 2 and "must end in" in bad.output
    missing = runner.invoke(app, ["plot", str(tmp_path / "nope.hea"), "--out", str(pdf)])
    assert missing.exit_code == 2 and "nope.hea" in missing.output
