"""Data-efficiency curves: test AUC against the number of training positives, one panel per label, one line per arm.

Each point is the median over seeds; the band is its 95% confidence interval (patient-level bootstrap of the test
set, see :mod:`ecgfm.transfer.compare`). The x axis is logarithmic because the question is what each doubling of rare
examples buys. Built on ``matplotlib.figure.Figure`` directly (no pyplot state), safe in headless runs.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

#: Colour and title per arm (fixed so every report reads the same).
ARM_STYLE = {
    "finetune": ("#1f77b4", "fine-tuned foundation"),
    "scratch": ("#d62728", "trained from scratch"),
    "embeddings": ("#2ca02c", "embeddings + logistic regression"),
}


def plot_data_efficiency(rows: Sequence[Mapping], arms: Sequence[str], labels: Sequence[str] | None = None,
                         descriptions: Mapping[str, str] | None = None, ncols: int = 3,
                         panel_inches: tuple[float, float] = (3.6, 2.9)) -> Figure:
    """Plot summary rows (``label``, ``train_pos_patients``, ``auc_<arm>``, ``auc_<arm>_ci_low/high``) as curves."""
    labels = list(labels) if labels is not None else list(dict.fromkeys(r["label"] for r in rows))
    if not labels:
        raise ValueError("no comparison rows to plot")
    descriptions = descriptions or {}
    ncols = max(1, min(ncols, len(labels)))
    nrows = math.ceil(len(labels) / ncols)
    fig = Figure(figsize=(ncols * panel_inches[0], nrows * panel_inches[1] + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, label in zip(axes.flat, labels):
        points = sorted((r for r in rows if r["label"] == label), key=lambda r: r["train_pos_patients"])
        x = np.array([r["train_pos_patients"] for r in points], dtype=float)
        ax.axhline(0.5, linestyle="--", linewidth=0.7, color="0.6")
        for arm in arms:
            colour, title = ARM_STYLE.get(arm, ("0.3", arm))
            y = np.array([_num(r.get(f"auc_{arm}")) for r in points])
            if not np.isfinite(y).any():
                continue
            low = np.array([_num(r.get(f"auc_{arm}_ci_low")) for r in points])
            high = np.array([_num(r.get(f"auc_{arm}_ci_high")) for r in points])
            ax.plot(x, y, marker="o", markersize=3.5, linewidth=1.4, color=colour, label=title)
            band = np.isfinite(low) & np.isfinite(high)
            if band.any():
                ax.fill_between(x[band], low[band], high[band], color=colour, alpha=0.15, linewidth=0)
        if len(x):
            ax.set_xscale("log")
            ax.set_xticks(x)
            ax.set_xticklabels([_tick(r) for r in points], fontsize=7)
            ax.minorticks_off()
        title = label if label not in descriptions or descriptions[label] == label else f"{label}: {descriptions[label]}"
        ax.set_title(_shorten(title, 48), fontsize=8.5)
        ax.set_ylim(0.3, 1.0)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25, linewidth=0.5)
        ax.set_xlabel("training positives (patients)", fontsize=7.5)
        ax.set_ylabel("test AUC", fontsize=7.5)
    for ax in axes.flat[len(labels):]:
        ax.set_axis_off()
    handles, names = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside upper center", ncols=len(names), fontsize=8, frameon=False)
    return fig


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _tick(row: Mapping) -> str:
    n = int(round(row["train_pos_patients"]))
    return f"all\n({n})" if str(row.get("size")) == "all" else str(n)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"
