"""ROC curve figures for reports: small multiples (one panel per label), embeddable in self-contained HTML.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend), so they are safe in
servers, threads and headless CI.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any, Callable
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

#: Colour per curve in a panel (model A, model B, ...): matplotlib's default cycle, kept explicit for stable reports.
CURVE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@dataclass
class RocPanel:
    """One label's panel: curves ``(fpr, tpr, name)`` and operating points ``(fpr, tpr, name)`` to mark."""

    title: str
    curves: list[tuple[np.ndarray, np.ndarray, str]]
    points: list[tuple[float, float, str]] = field(default_factory=list)


def panel_grid(panels: Sequence, draw: Callable[[Any, Any], None], xlabel: str, ylabel: str, ncols: int = 6,
               panel_inches: float = 2.3) -> Figure:
    """A grid of square panels, ``draw(ax, panel)`` for each, axis labels on the outer edges only, unused cells
    blank, and one legend on top when the panels hold several curves."""
    if not panels:
        raise ValueError("no panels to plot")
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(ncols * panel_inches, nrows * panel_inches + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        draw(ax, panel)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for index, ax in enumerate(axes.flat[: len(panels)]):
        if index + ncols >= len(panels):  # nothing drawn below this panel
            ax.set_xlabel(xlabel, fontsize=7)
        if index % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=7)
    if len(panels[0].curves) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=8, frameon=False)
    return fig


def _draw_roc(ax, panel: RocPanel) -> None:
    ax.plot([0, 1], [0, 1], linestyle="--", linewidth=0.7, color="0.6")
    for k, (fpr, tpr, name) in enumerate(panel.curves):
        ax.plot(fpr, tpr, linewidth=1.2, color=CURVE_COLOURS[k % len(CURVE_COLOURS)], label=name)
    for k, (fpr, tpr, _name) in enumerate(panel.points):
        if np.isfinite(fpr) and np.isfinite(tpr):
            ax.plot([fpr], [tpr], marker="o", markersize=3.5, color=CURVE_COLOURS[k % len(CURVE_COLOURS)])
    ax.set_title(panel.title, fontsize=7.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)


def plot_roc_grid(panels: Sequence[RocPanel], ncols: int = 6, panel_inches: float = 2.3) -> Figure:
    """Draw ROC curves as a grid of square panels (chance diagonal dashed, operating points as dots)."""
    return panel_grid(panels, _draw_roc, "1 - specificity", "sensitivity", ncols, panel_inches)


def figure_to_svg(fig: Figure) -> str:
    """Render a figure as inline ``<svg>`` markup (vector; larger than PNG for many curves)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]
