"""The standard 12-lead ECG printout: 3 x 4 leads plus a lead II rhythm strip on pink millimetre paper, at true scale.

Drawn the way electrocardiographs print it: 25 mm/s and 10 mm/mV by default (50 mm/s and 5 or 20 mm/mV on
request), a 1 mm / 5 mm grid, a 1 mV calibration pulse at the start of every row, lead names in each cell and a header
with the record, the date, the heart rate and, when given, the model's findings. ``layout="rows"`` draws one row per
lead over a longer stretch (for records longer than 10 s).

The figure is one axes whose data units are millimetres of paper, spanning the whole page; the page size in inches is
the paper size. Saved as PDF or SVG it is therefore true scale (a printed page measures 25 mm per second); as PNG it
is true scale at the DPI it is saved with. Built on ``matplotlib.figure.Figure`` (no pyplot state; safe in servers).

This module sits in the base layer beside :mod:`ecgfm.ecg` (``ECG.plot()`` uses it), so it imports only numpy,
scipy, matplotlib and the base modules, and accepts any object with ``signal`` (mV, leads x samples), ``fs``,
``leads`` and ``meta``. Findings are plain data (dicts or objects with ``label``, ``description``, ``probability``,
``threshold``), e.g. ``Predictor.predict(ecg).findings``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ecgfm.errors import ECGValueError
from ecgfm.leads import STANDARD_LEADS, canonical_lead_name

SPEEDS = (25.0, 50.0)  # mm/s, the paper speeds of electrocardiographs
GAINS = (5.0, 10.0, 20.0)  # mm/mV
LAYOUTS = ("standard", "rows")
#: The conventional 3 x 4 arrangement: rows of leads, each column a consecutive quarter of the strip.
STANDARD_GRID = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
MM_PER_INCH = 25.4
#: A4 landscape, the usual 12-lead paper in Europe (US letter is 279 x 216 mm: the 250-mm strip fits either).
PAGE_MM = (297.0, 210.0)
#: Paper geometry (mm): the strip is 250 mm wide (10 s at 25 mm/s), after a margin holding the calibration pulse.
TRACE_X0, STRIP_MM, GRID_X0 = 25.0, 250.0, 10.0
HEADER_MM = 36.0  # height of the header band above the grid
MARGIN_MM = 8.0
#: Rows layout: at most this many mm of paper per row (a 5-m PDF page; PDF viewers accept up to 5.08 m).
MAX_ROW_MM = 5000.0
DEFAULT_ROWS_SECONDS = 60.0
CALIBRATION_S = 0.2  # width of the 1 mV calibration pulse (200 ms, as electrocardiographs draw it)
MINOR_COLOUR, MAJOR_COLOUR = "#f6c9c9", "#e89292"  # the pink of ECG paper
MAX_FINDINGS_SHOWN = 8


def printout(ecg: Any, findings: Sequence[Any] | None = None, speed: float = 25.0, gain: float = 10.0,
             layout: str = "standard", start: float = 0.0, seconds: float | None = None,
             title: str | None = None, quality: Any = None, model: str | None = None) -> Figure:
    """The printout of ``ecg`` as a matplotlib Figure (save it as PDF/SVG for true scale, PNG for a picture).

    Args:
        ecg: an :class:`~ecgfm.ECG` or any object with ``signal`` (mV, leads x samples), ``fs``, ``leads``, ``meta``.
        findings: the model's findings to print in the header (dicts or objects with ``label``, ``description``,
            ``probability``, ``threshold``; an optional ``rule`` is printed too).
        speed: paper speed in mm/s (25 or 50). At 50 mm/s the same paper holds half the time (1.25 s per column).
        gain: mm per mV (5, 10 or 20).
        layout: ``"standard"`` (3 x 4 + lead II rhythm strip, 10 s at 25 mm/s) or ``"rows"`` (one row per lead).
        start: first second drawn.
        seconds: how much to draw in the rows layout (default: the rest of the record, at most 60 s).
        title: replaces the record id in the header.
        quality: a signal-quality verdict to print (``"ok"``, a list of problems, or a dict with ``verdict``).
        model: the model's name, printed beside the findings.
    """
    if float(speed) not in SPEEDS:
        raise ECGValueError(f"paper speed must be one of {', '.join(f'{s:g}' for s in SPEEDS)} mm/s, got {speed!r}")
    if float(gain) not in GAINS:
        raise ECGValueError(f"gain must be one of {', '.join(f'{g:g}' for g in GAINS)} mm/mV, got {gain!r}")
    if layout not in LAYOUTS:
        raise ECGValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    record = _Record(ecg)
    if not 0 <= start < record.duration:
        raise ECGValueError(f"start {start:g} s is outside the record (0 to {record.duration:.2f} s)")
    paper = _Paper(float(speed), float(gain))
    if layout == "standard":
        page, notes = _standard(paper, record, float(start))
    else:
        page, notes = _rows(paper, record, float(start), seconds)
    _header(page, record, notes, findings, title, quality, model, paper)
    return page.figure


def heart_rate(signal: np.ndarray, fs: float) -> float | None:
    """Ventricular rate in beats per minute from R peaks (median RR interval), or ``None`` when no rhythm is found.

    QRS complexes are found as peaks of the squared 5-20 Hz band-passed signal summed over leads (the QRS band of
    Pan & Tompkins 1985; summing squares makes it independent of each lead's polarity), at least 250 ms apart
    (at most 240 bpm). The median RR interval ignores an occasional missed or extra beat.
    """
    from scipy.signal import butter, find_peaks, sosfiltfilt

    signal = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    if fs < 45 or signal.shape[1] < 3 * fs:  # the band needs fs > 40 Hz; a rate needs at least 3 s
        return None
    sos = butter(2, [5.0, 20.0], btype="bandpass", fs=fs, output="sos")
    energy = (sosfiltfilt(sos, signal, axis=1) ** 2).sum(axis=0)
    window = max(int(0.08 * fs), 1)  # 80-ms moving sum merges the Q, R and S lobes into one peak
    energy = np.convolve(energy, np.ones(window) / window, mode="same")
    reference = float(np.percentile(energy, 99))
    if reference <= 1e-12:
        return None
    peaks, _ = find_peaks(energy, height=0.2 * reference, distance=max(int(0.25 * fs), 1))
    rr = np.diff(peaks) / fs
    rr = rr[(rr >= 0.25) & (rr <= 3.0)]  # 20-240 bpm
    if rr.size < 2:
        return None
    return float(60.0 / np.median(rr))


# -- the record -------------------------------------------------------------------------------------------------------

class _Record:
    """The ECG's samples by canonical lead name, with its duration; unknown lead names are kept as given."""

    def __init__(self, ecg: Any):
        signal = np.asarray(ecg.signal, dtype=np.float64)
        fs = float(ecg.fs)
        if signal.ndim != 2 or signal.shape[0] != len(ecg.leads) or signal.shape[1] == 0:
            raise ECGValueError(f"signal must be (leads, samples) with {len(ecg.leads)} leads, got {signal.shape}")
        if not np.isfinite(fs) or fs <= 0:
            raise ECGValueError(f"sampling rate must be positive, got {fs!r}")
        self.fs = fs
        self.signal = signal
        self.meta: Mapping[str, Any] = dict(getattr(ecg, "meta", None) or {})
        self.by_lead = {_lead_name(name): row for name, row in zip(ecg.leads, signal)}
        self.duration = signal.shape[1] / fs

    def segment(self, lead: str, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) and samples (mV) of ``lead`` within ``[t0, t1)``."""
        row = self.by_lead[lead]
        first, last = int(np.ceil(t0 * self.fs)), min(int(np.ceil(t1 * self.fs)), row.size)
        index = np.arange(first, max(first, last))
        return index / self.fs, row[index]


def _lead_name(name: str) -> str:
    try:
        return canonical_lead_name(name)
    except ValueError:
        return str(name)


# -- paper ------------------------------------------------------------------------------------------------------------

class _Paper:
    """Scale: paper speed (mm/s) and gain (mm/mV)."""

    def __init__(self, speed: float, gain: float):
        self.speed, self.gain = speed, gain

    @property
    def row_pitch(self) -> float:
        """Rows layout: mm between baselines, 2 mV of paper rounded up to a 5-mm box (at least 15 mm)."""
        return max(15.0, float(np.ceil(2.0 * self.gain / 5.0) * 5.0))


class _Page:
    """A figure whose single axes maps data units to millimetres of paper, edge to edge."""

    def __init__(self, width_mm: float, height_mm: float):
        self.width, self.height = width_mm, height_mm
        self.figure = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH))
        self.ax = self.figure.add_axes((0.0, 0.0, 1.0, 1.0))
        self.ax.set_xlim(0.0, width_mm)
        self.ax.set_ylim(0.0, height_mm)
        self.ax.set_axis_off()

    def grid(self, x0: float, x1: float, y0: float, y1: float) -> None:
        """ECG paper: 1-mm minor and 5-mm major lines over ``[x0, x1] x [y0, y1]`` (whole millimetres)."""
        for step, colour, width in ((1.0, MINOR_COLOUR, 0.25), (5.0, MAJOR_COLOUR, 0.6)):
            xs = np.arange(x0, x1 + 1e-6, step)
            ys = np.arange(y0, y1 + 1e-6, step)
            segments = [((x, y0), (x, y1)) for x in xs] + [((x0, y), (x1, y)) for y in ys]
            lines = LineCollection(segments, colors=colour, linewidths=width, zorder=1 if step == 1 else 2)
            lines.set_snap(False)
            self.ax.add_collection(lines)
        self.clip = (x0, y0, x1 - x0, y1 - y0)

    def trace(self, x: np.ndarray, y: np.ndarray, width: float = 0.6) -> None:
        """A black trace in paper millimetres, clipped to the grid (neighbouring rows may overlap, as on paper)."""
        from matplotlib.patches import Rectangle

        (line,) = self.ax.plot(x, y, color="black", linewidth=width, zorder=4, solid_joinstyle="round")
        line.set_snap(False)  # snapping to device pixels would shift points off true scale
        line.set_clip_path(Rectangle(self.clip[:2], *self.clip[2:], transform=self.ax.transData))

    def calibration(self, x: float, baseline: float, paper: _Paper) -> float:
        """A 1 mV x 200 ms calibration pulse starting at ``x``; returns where it ends."""
        width = CALIBRATION_S * paper.speed
        xs = np.array([x, x + 1, x + 1, x + 1 + width, x + 1 + width, x + 2 + width])
        ys = baseline + np.array([0, 0, 1, 1, 0, 0]) * paper.gain
        self.trace(xs, ys, width=0.8)
        return x + 2 + width

    def text(self, x: float, y: float, text: str, **kwargs: Any) -> None:
        # parse_math=False: "$" in a file's free text must print as is, never as mathtext (which may also raise)
        self.ax.text(x, y, text, parse_math=False, zorder=5, **kwargs)


# -- layouts ----------------------------------------------------------------------------------------------------------

def _standard(paper: _Paper, record: _Record, start: float) -> tuple[_Page, list[str]]:
    """3 x 4 leads (each column a quarter of the strip) and the rhythm strip below, on one A4 landscape page."""
    page = _Page(*PAGE_MM)
    rows = len(STANDARD_GRID) + 1
    grid_top = PAGE_MM[1] - HEADER_MM + 4.0  # 170 mm of grid under a 32-mm header
    pitch = (grid_top - MARGIN_MM) / rows
    page.grid(GRID_X0, TRACE_X0 + STRIP_MM + 5.0, MARGIN_MM, grid_top)
    strip_s = STRIP_MM / paper.speed
    column_s = strip_s / 4
    column_mm = STRIP_MM / 4
    notes = []
    for r, leads in enumerate(STANDARD_GRID):
        baseline = grid_top - pitch * (r + 0.5)
        page.calibration(GRID_X0 + 2.0, baseline, paper)
        for c, lead in enumerate(leads):
            x0 = TRACE_X0 + c * column_mm
            t0 = start + c * column_s
            _cell(page, paper, record, lead, x0, baseline, t0, t0 + column_s, label_y=baseline + 0.35 * pitch)
            if c:
                page.trace(np.array([x0, x0]), baseline + np.array([-3.0, 3.0]), width=0.8)  # column separator
    rhythm = RHYTHM_LEAD if RHYTHM_LEAD in record.by_lead else next(iter(record.by_lead))
    baseline = grid_top - pitch * (rows - 0.5)
    page.calibration(GRID_X0 + 2.0, baseline, paper)
    _cell(page, paper, record, rhythm, TRACE_X0, baseline, start, start + strip_s, label_y=baseline + 0.35 * pitch)
    if rhythm != RHYTHM_LEAD:
        notes.append(f"rhythm strip: lead {rhythm} (lead II not recorded)")
    missing = [lead for lead in STANDARD_LEADS if lead not in record.by_lead]
    if missing:
        notes.append(f"not recorded: {', '.join(missing)}")
    extra = [lead for lead in record.by_lead if lead not in STANDARD_LEADS]
    if extra:
        notes.append(f"not shown: {', '.join(extra)}")
    end = start + strip_s
    if record.duration < end:
        notes.append(f"record ends at {record.duration:.1f} s: no trace after it")
    elif start > 0 or record.duration > end + 1e-9:
        notes.append(f"showing {start:.1f}-{end:.1f} s of {record.duration:.1f} s")
    return page, notes


def _rows(paper: _Paper, record: _Record, start: float, seconds: float | None) -> tuple[_Page, list[str]]:
    """One row per lead over ``seconds`` (default: the rest of the record, at most 60 s), on a page sized to fit."""
    limit = (MAX_ROW_MM - TRACE_X0 - 2 * MARGIN_MM) / paper.speed
    wanted = record.duration - start if seconds is None else float(seconds)
    if seconds is not None and not 0 < wanted <= limit:
        raise ECGValueError(f"seconds must be in (0, {limit:.0f}] at {paper.speed:g} mm/s, got {seconds!r}")
    span = min(wanted, DEFAULT_ROWS_SECONDS if seconds is None else limit, record.duration - start)
    strip_mm = float(np.ceil(span * paper.speed / 5.0) * 5.0)
    leads = [lead for lead in STANDARD_LEADS if lead in record.by_lead] + \
            [lead for lead in record.by_lead if lead not in STANDARD_LEADS]
    pitch = paper.row_pitch
    grid_top = MARGIN_MM + pitch * len(leads)
    page = _Page(max(TRACE_X0 + strip_mm + 5.0 + MARGIN_MM, PAGE_MM[0]), grid_top + HEADER_MM)
    page.grid(GRID_X0, TRACE_X0 + strip_mm + 5.0, MARGIN_MM, grid_top)
    for r, lead in enumerate(leads):
        baseline = grid_top - pitch * (r + 0.5)
        page.calibration(GRID_X0 + 2.0, baseline, paper)
        _cell(page, paper, record, lead, TRACE_X0, baseline, start, start + span, label_y=baseline + 0.3 * pitch)
    notes = []
    missing = [lead for lead in STANDARD_LEADS if lead not in record.by_lead]
    if missing:
        notes.append(f"not recorded: {', '.join(missing)}")
    if start > 0 or start + span < record.duration - 1e-9:
        notes.append(f"showing {start:.1f}-{start + span:.1f} s of {record.duration:.1f} s")
    return page, notes


def _cell(page: _Page, paper: _Paper, record: _Record, lead: str, x0: float, baseline: float, t0: float, t1: float,
          label_y: float) -> None:
    """One lead from ``t0`` to ``t1`` s drawn from ``x0`` mm on ``baseline``; says so when there is nothing to draw."""
    page.text(x0 + 1.0, label_y, lead, fontsize=9, fontweight="bold", va="center")
    if lead not in record.by_lead:
        page.text(x0 + 8.0, baseline, f"{lead} not recorded", fontsize=7, color="#555555", va="center")
        return
    times, values = record.segment(lead, t0, t1)
    if times.size < 2:
        page.text(x0 + 8.0, baseline, "no data (record ended)", fontsize=7, color="#555555", va="center")
        return
    page.trace(x0 + (times - t0) * paper.speed, baseline + values * paper.gain)


# -- header -----------------------------------------------------------------------------------------------------------

def _header(page: _Page, record: _Record, notes: list[str], findings: Sequence[Any] | None, title: str | None,
            quality: Any, model: str | None, paper: _Paper) -> None:
    """Record, patient, date and rate on the left; the model's findings on the right; notes under the grid title."""
    meta = record.meta
    top = page.height - 6.0
    x = GRID_X0
    name = title or str(meta.get("record_id") or "ECG")
    page.text(x, top, _clip(name, 60), fontsize=11, fontweight="bold", va="top")
    who = [f"patient {meta['patient_id']}" if meta.get("patient_id") else None,
           f"{meta['age']:g} y" if isinstance(meta.get("age"), (int, float)) else None,
           {"M": "male", "F": "female"}.get(str(meta.get("sex") or ""), None),
           str(meta.get("acquisition_time") or meta.get("date") or "") or None]
    rate = heart_rate(record.signal, record.fs)
    n_leads = len(record.by_lead)
    vitals = [f"rate {rate:.0f} bpm" if rate else "rate not measurable",
              f"{record.duration:.1f} s at {record.fs:g} Hz, {n_leads} lead{'s' * (n_leads != 1)}",
              f"{paper.speed:g} mm/s, {paper.gain:g} mm/mV, grid 1 mm / 5 mm"]
    lines = [", ".join(part for part in who if part) or "patient not identified", " \u00b7 ".join(vitals)]
    if meta.get("device"):
        lines.append(f"device: {meta['device']}")
    statements = meta.get("statements")
    if statements:
        lines.append("device statements: " + "; ".join(str(s) for s in statements))
    lines += notes
    for k, line in enumerate(lines[:5]):
        page.text(x, top - 5.5 - 4.2 * k, _clip(line, 110), fontsize=7.5, va="top")
    _findings(page, findings, quality, model, x=min(page.width - 110.0, 180.0), top=top)


def _findings(page: _Page, findings: Sequence[Any] | None, quality: Any, model: str | None, x: float,
              top: float) -> None:
    if findings is None and quality is None:
        return
    heading = "Model findings" + (f" ({model})" if model else "") + ": probability / threshold"
    page.text(x, top, _clip(heading, 70), fontsize=8, fontweight="bold", va="top")
    rows = [_finding_line(f) for f in (findings or [])]
    if findings is not None and not rows:
        rows = ["no finding above its threshold"]
    if len(rows) > MAX_FINDINGS_SHOWN:
        rows = rows[:MAX_FINDINGS_SHOWN - 1] + [f"... and {len(rows) - MAX_FINDINGS_SHOWN + 1} more"]
    verdict = quality_text(quality)
    if verdict:
        rows.append(f"signal quality: {verdict}")
    for k, row in enumerate(rows):
        page.text(x, top - 4.3 - 3.4 * k, _clip(row, 78), fontsize=6.8, va="top")


def _finding_line(finding: Any) -> str:
    get = finding.get if isinstance(finding, Mapping) else (lambda key, default=None: getattr(finding, key, default))
    label, description = str(get("label", "?")), str(get("description", "") or "")
    probability, threshold = get("probability"), get("threshold")
    rule = get("rule")
    scores = format_probability(probability) if probability is not None else "?"
    if threshold is not None:
        scores += f" / {format_probability(threshold)}" + (f" ({rule})" if rule else "")
    return f"{label} {description}: {scores}" if description and description != label else f"{label}: {scores}"


def format_probability(value: float) -> str:
    """Two decimals from 0.1, two significant digits below (0.0021, so small thresholds do not all read 0.00), and
    "< 0.001" below that; the viewer page writes probabilities the same way."""
    value = float(value)
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:#.2g}" if value >= 0.001 else "< 0.001"


def quality_text(quality: Any) -> str | None:
    """A one-line verdict from ``"ok"``, a list of problems or a dict with ``verdict``/``problems``."""
    if quality is None:
        return None
    if isinstance(quality, str):
        return quality
    if isinstance(quality, Mapping):
        verdict = quality.get("verdict") or quality.get("status")
        problems = quality.get("problems") or quality.get("issues") or []
        return "; ".join([str(verdict)] * bool(verdict) + [str(p) for p in problems]) or None
    if isinstance(quality, Sequence):
        return "; ".join(str(p) for p in quality) or "ok"
    return str(quality)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
