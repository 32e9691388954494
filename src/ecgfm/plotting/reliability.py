"""Reliability diagrams: observed fraction of positives against mean predicted probability, one point per bin.

A calibrated model's points lie on the diagonal (a probability of 0.8 comes true 8 times in 10); points below it mean
over-confident probabilities, above it under-confident ones. Takes plain arrays (the bins come from
``ecgfm.evaluation.calibration.reliability_curve``), builds ``matplotlib.figure.Figure`` directly (no pyplot state).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from ecgfm.plotting.roc import CURVE_COLOURS, panel_grid


@dataclass
class ReliabilityPanel:
    """One panel: curves ``(mean_predicted, fraction_positive, name)`` over the same bins scheme."""

    title: str
    curves: list[tuple[np.ndarray, np.ndarray, str]] = field(default_factory=list)


def _draw(ax, panel: ReliabilityPanel, fontsize: float) -> None:
    ax.plot([0, 1], [0, 1], linestyle="--", linewidth=0.7, color="0.6")
    for k, (predicted, observed, name) in enumerate(panel.curves):
        ax.plot(predicted, observed, marker="o", markersize=2.5, linewidth=1.0,
                color=CURVE_COLOURS[k % len(CURVE_COLOURS)], label=name)
    ax.set_title(panel.title, fontsize=fontsize)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)


def plot_reliability(panel: ReliabilityPanel, inches: float = 4.0) -> Figure:
    """One reliability diagram (e.g. every label pooled), with a legend when it holds several curves."""
    fig = Figure(figsize=(inches, inches), layout="constrained")
    ax = fig.subplots()
    _draw(ax, panel, fontsize=9)
    ax.set_xlabel("mean predicted probability", fontsize=8)
    ax.set_ylabel("observed fraction with the finding", fontsize=8)
    if len(panel.curves) > 1:
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    return fig


def plot_reliability_grid(panels: Sequence[ReliabilityPanel], ncols: int = 6, panel_inches: float = 2.3) -> Figure:
    """Reliability diagrams as a grid of square panels (one per label), legend on top when panels hold two curves."""
    return panel_grid(panels, lambda ax, panel: _draw(ax, panel, fontsize=7.5), "predicted", "observed", ncols,
                      panel_inches)
