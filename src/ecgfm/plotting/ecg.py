"""12-lead ECG figures, optionally shaded by an attribution map (what drove a prediction; ``ecgfm.explain``).

One row per lead on a shared time axis, ECG-paper grid (0.2 s / 0.5 mV major lines), the trace in black. With an
attribution map, each lead's background is coloured by the attribution smoothed over 40 ms: red where the signal
pushes the logit towards the label, blue where it pushes against, on one colour scale for all leads so leads can be
compared. Built on ``matplotlib.figure.Figure`` (no pyplot state; safe headless and in servers).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

#: Width of the moving average applied to attributions before shading (one QRS is ~0.1 s wide).
SMOOTHING_SECONDS = 0.04
#: Grid of ECG paper: major lines every 0.2 s and 0.5 mV.
GRID_SECONDS, GRID_MV = 0.2, 0.5


def plot_ecg(signal: np.ndarray, fs: float, leads: Sequence[str], attribution: np.ndarray | None = None,
             title: str | None = None, lead_notes: Sequence[str] | None = None,
             row_inches: float = 0.95, width_inches: float = 13.0) -> Figure:
    """Draw ``signal`` (leads x samples, mV) at ``fs`` Hz, one row per lead, shaded by ``attribution`` if given.

    ``lead_notes`` (one string per lead, e.g. its logit contribution) are printed beside the lead names.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(leads):
        raise ValueError(f"signal must be (leads, samples) with {len(leads)} leads, got shape {signal.shape}")
    if attribution is not None and np.shape(attribution) != signal.shape:
        raise ValueError(f"attribution shape {np.shape(attribution)} differs from the signal's {signal.shape}")
    if fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    n_leads, n_samples = signal.shape
    seconds = n_samples / fs
    height = row_inches * n_leads + 0.8
    # Fixed margins rather than constrained layout, which costs more than drawing the figure.
    fig = Figure(figsize=(width_inches, height))
    fig.subplots_adjust(left=0.07, right=0.9 if attribution is not None else 0.98, top=1 - 0.7 / height,
                        bottom=0.45 / height, hspace=0.12)
    axes = fig.subplots(n_leads, 1, sharex=True, squeeze=False)[:, 0]
    time = np.arange(n_samples) / fs
    low, high = _shared_limits(signal)
    shading, norm = _shading(attribution, fs) if attribution is not None else (None, None)
    image = None
    for k, ax in enumerate(axes):
        if shading is not None:
            image = ax.imshow(shading[k][None, :], aspect="auto", cmap="RdBu_r", norm=norm,
                              extent=(0.0, seconds, low, high), interpolation="nearest", alpha=0.8)
        _paper_grid(ax, seconds, low, high)
        ax.plot(time, signal[k], color="black", linewidth=0.7)
        ax.set_xlim(0.0, seconds)
        ax.set_ylim(low, high)
        note = f"\n{lead_notes[k]}" if lead_notes is not None else ""
        ax.set_ylabel(f"{leads[k]}{note}", rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=11)
    if image is not None:
        bar = fig.colorbar(image, cax=fig.add_axes((0.915, 0.3, 0.012, 0.4)))
        bar.set_label("attribution (logit per second, smoothed)")
    return fig


def plot_explanation(explanation, label: str, **kwargs) -> Figure:
    """The figure of one label of an :class:`ecgfm.explain.Explanation`: the model input, shaded by the label's
    attribution, each lead annotated with its logit contribution."""
    item = explanation[label]
    contribution = item.lead_contribution
    notes = [f"{contribution[lead]:+.2f}" for lead in explanation.leads]
    method = explanation.method + (f", {explanation.steps} steps" if explanation.steps else "")
    title = (f"{explanation.record_id or explanation.source or 'ECG'}: {item.label} ({item.description}), "
             f"p = {item.probability:.2f}\nlogit {item.logit:+.2f} against {item.baseline_logit:+.2f} for a flat ECG; "
             f"{method}; each lead's contribution beside its name")
    return plot_ecg(explanation.signal, explanation.fs, explanation.leads, attribution=item.attribution,
                    title=title, lead_notes=notes, **kwargs)


def _shared_limits(signal: np.ndarray) -> tuple[float, float]:
    """One amplitude range for all rows (so voltages compare across leads), at least +-1 mV."""
    finite = signal[np.isfinite(signal)]
    extent = max(float(np.percentile(np.abs(finite), 99.9)) if finite.size else 0.0, 1.0) * 1.1
    return -extent, extent


def _shading(attribution: np.ndarray, fs: float):
    """Attribution smoothed over ``SMOOTHING_SECONDS`` and expressed per second, with a colour scale symmetric
    around 0 shared by all leads."""
    width = max(int(round(SMOOTHING_SECONDS * fs)), 1)
    kernel = np.ones(width) / width
    smoothed = np.stack([np.convolve(row, kernel, mode="same") for row in np.asarray(attribution, float)]) * fs
    limit = float(np.max(np.abs(smoothed))) or 1.0
    return smoothed, TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def _paper_grid(ax, seconds: float, low: float, high: float) -> None:
    """ECG-paper grid as two line collections per row (cheap to draw, unlike one artist per grid line)."""
    ax.vlines(np.arange(0.0, seconds + 1e-9, GRID_SECONDS), low, high, color="#f2b8b8", linewidth=0.4, zorder=0.5)
    ax.hlines(np.arange(np.ceil(low / GRID_MV) * GRID_MV, high, GRID_MV), 0.0, seconds, color="#f2b8b8",
              linewidth=0.4, zorder=0.5)
