"""The canonical in-memory ECG: float32 millivolts, shape (leads, samples), a sampling rate and canonical lead names.

Every reader produces an :class:`ECG` and every consumer (preprocessing, datasets, models, prediction) takes one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ecgfm.errors import ECGValueError
from ecgfm.leads import canonical_lead_name


@dataclass(frozen=True, eq=False)
class ECG:
    """A multi-lead ECG recording.

    Attributes:
        signal: float32 array in millivolts, shape ``(n_leads, n_samples)``.
        fs: sampling rate in Hz (may be non-integer, e.g. 599.88 Hz Welch Allyn files).
        leads: canonical lead names (``I, II, III, aVR, aVL, aVF, V1..V6``), one per row of ``signal``.
        meta: optional metadata: ``record_id``, ``patient_id``, ``age``, ``sex``, ``source``, ``format``,
            ``statements`` (machine/cardiologist statements), ``snomed`` / ``scp`` codes, ...
    """

    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f" ({self.meta.get('source')})" if self.meta.get("source") else ""
        signal = np.asarray(self.signal)
        if signal.ndim != 2:
            raise ECGValueError(f"ECG signal must be 2-D (leads, samples), got shape {signal.shape}{where}")
        if not np.issubdtype(signal.dtype, np.number):
            raise ECGValueError(f"ECG signal must be numeric, got dtype {signal.dtype}{where}")
        signal = np.ascontiguousarray(signal, dtype=np.float32)
        if signal.shape[1] == 0:
            raise ECGValueError(f"ECG signal has zero samples{where}")
        if not np.isfinite(signal).all():
            bad = np.argwhere(~np.isfinite(signal))[0]
            raise ECGValueError(f"ECG signal has non-finite values (first at lead {bad[0]}, sample {bad[1]}){where}")
        fs = float(self.fs)
        if not np.isfinite(fs) or fs <= 0:
            raise ECGValueError(f"sampling rate must be a positive number, got {self.fs!r}{where}")
        try:
            leads = tuple(canonical_lead_name(name) for name in self.leads)
        except ValueError as exc:
            raise ECGValueError(f"{exc}{where}") from None
        if len(leads) != signal.shape[0]:
            raise ECGValueError(f"{len(leads)} lead names for {signal.shape[0]} signal rows{where}")
        if len(set(leads)) != len(leads):
            dupes = sorted({lead for lead in leads if leads.count(lead) > 1})
            raise ECGValueError(f"duplicate leads {dupes}{where}")
        signal.setflags(write=False)
        object.__setattr__(self, "signal", signal)
        object.__setattr__(self, "fs", fs)
        object.__setattr__(self, "leads", leads)
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def n_leads(self) -> int:
        return self.signal.shape[0]

    @property
    def n_samples(self) -> int:
        return self.signal.shape[1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.fs

    @property
    def record_id(self) -> str | None:
        return self.meta.get("record_id")

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples (mV) by canonical or vendor name."""
        return self.signal[self.leads.index(canonical_lead_name(name))]

    def replace(self, signal: np.ndarray | None = None, fs: float | None = None,
                leads: Sequence[str] | None = None, **meta: Any) -> "ECG":
        """A copy with some fields changed; metadata keys given as keywords are updated."""
        return ECG(signal=self.signal if signal is None else signal,
                   fs=self.fs if fs is None else fs,
                   leads=self.leads if leads is None else tuple(leads),
                   meta={**self.meta, **meta})

    def plot(self, **kwargs: Any):
        """The standard 12-lead printout (3 x 4 + lead II rhythm strip, 25 mm/s, 10 mm/mV) as a matplotlib Figure.

        Keywords go to :func:`ecgfm.printout.printout` (``findings=predictor.predict(ecg).findings``, ``speed=50``,
        ``gain=5``, ``layout="rows"``...). ``fig.savefig("ecg.pdf")`` prints at true scale.
        """
        from ecgfm.printout import printout

        return printout(self, **kwargs)

    def _repr_png_(self) -> bytes:
        """Jupyter: the printout as a PNG (80 dpi: the A4 page at 935 x 661 pixels)."""
        import io

        buffer = io.BytesIO()
        self.plot().savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        """Jupyter: the printout with a one-line summary; text from the file is HTML-escaped."""
        import base64
        import html

        png = base64.b64encode(self._repr_png_()).decode("ascii")
        return (f"<div><div>{html.escape(repr(self))}</div>"
                f'<img alt="ECG printout" style="max-width:100%" src="data:image/png;base64,{png}"/></div>')

    def __repr__(self) -> str:
        rid = f" {self.record_id!r}" if self.record_id else ""
        return f"ECG({rid.strip() or 'unnamed'}, {self.n_leads} leads, {self.fs:g} Hz, {self.duration:.2f} s)"
