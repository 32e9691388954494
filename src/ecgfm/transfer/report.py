"""Write a comparison's results (:class:`~ecgfm.transfer.analysis.CompareResult`): JSON (everything), CSV (summary and
per-seed), a Markdown table, the data-efficiency plot (PNG) and one self-contained HTML report holding all of them.
Every file is written atomically."""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ecgfm.files import to_jsonable
from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.plotting.data_efficiency import plot_data_efficiency
from ecgfm.plotting.html import figure_to_data_uri, page, provenance, table
from ecgfm.transfer.analysis import PAIRS, CompareResult
from ecgfm.version import __version__

SCHEMA = "ecgfm.compare/1"
ARM_TITLES = {"finetune": "fine-tuned", "scratch": "from scratch", "embeddings": "embeddings + LR"}
FILES = {"json": "compare.json", "summary_csv": "summary.csv", "per_seed_csv": "per_seed.csv",
         "markdown": "table.md", "plot": "data_efficiency.png", "html": "report.html"}


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _p(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return "<0.001" if value < 1e-3 else f"{value:.3f}"


def _with_ci(row: Mapping, key: str, signed: bool = False) -> str:
    value, low, high = row.get(key), row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if value is None or not math.isfinite(value):
        return "-"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    text = fmt.format(value)
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    return text


def _size_text(row: Mapping) -> str:
    n = int(round(row["train_pos_patients"]))
    return f"all ({n})" if str(row["size"]) == "all" else str(n)


def table_rows(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the paper-style table: per label and size, each arm's AUC [95% CI], the paired difference."""
    arms = result.config["arms"]
    pairs = [(a, b) for a, b in PAIRS if a in arms and b in arms]
    headers = ["Label", "Diagnosis", "Train positives", "Train ECGs", "Test pos/neg"]
    headers += [f"{ARM_TITLES[a]} AUC [95% CI]" for a in arms]
    for a, b in pairs[:1]:
        headers += [f"Δ {ARM_TITLES[a]} − {ARM_TITLES[b]} [95% CI]", "DeLong p (median)", f"seeds {a} better"]
    for a, b in pairs[1:]:
        headers += [f"Δ {ARM_TITLES[a]} − {ARM_TITLES[b]} [95% CI]"]
    body = []
    for row in result.summary:
        cells = [row["label"], str(row.get("description", row["label"])), _size_text(row), f"{row['train_records']:.0f}",
                 f"{row['test_pos']}/{row['test_neg']}"]
        cells += [_with_ci(row, f"auc_{a}") for a in arms]
        for a, b in pairs[:1]:
            cells += [_with_ci(row, f"diff_{a}_{b}", signed=True), _p(row.get(f"p_delong_{a}_{b}")),
                      f"{row.get(f'seeds_{a}_over_{b}', 0)}/{row['seeds']}"]
        for a, b in pairs[1:]:
            cells += [_with_ci(row, f"diff_{a}_{b}", signed=True)]
        body.append(cells)
    return headers, body


def markdown_table(result: CompareResult) -> str:
    headers, body = table_rows(result)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def checks_text(result: CompareResult) -> str:
    """Plain-language statement of the targets (fine-tuning vs scratch at the smallest size, sizes scratch wins)."""
    checks = result.checks
    if not checks:
        return "Fine-tuning and scratch arms were not both run; no paired checks."
    parts = []
    for s in checks["smallest_size"]:
        verdict = "higher" if s["finetune_higher"] else "NOT higher"
        ci = "CI excludes 0" if s["ci_excludes_zero"] else "CI includes 0"
        parts.append(f"{s['label']} (n={s['size']}): fine-tuned {verdict}, Δ {s['diff']:+.3f} "
                     f"[{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}], {ci}")
    text = "At the smallest training size: " + "; ".join(parts) + "."
    beaten = checks["sizes_where_scratch_beats_finetune"]
    if beaten:
        text += " Scratch had the higher median AUC at: " + ", ".join(
            f"{b['label']} n={b['size']} (Δ {b['diff']:+.3f})" for b in beaten) + "."
    else:
        text += " The fine-tuned model's median AUC was not below scratch at any size."
    return text


def _per_seed_table(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    arms = result.config["arms"]
    pairs = [(a, b) for a, b in PAIRS if a in arms and b in arms]
    headers = ["Label", "Size", "Seed", "Train positives (ECGs)"] + [f"{ARM_TITLES[a]} AUC [95% CI]" for a in arms]
    headers += [f"Δ {a} − {b} [95% CI], DeLong p" for a, b in pairs]
    rows = []
    for r in result.per_seed:
        cells = [r["label"], str(r["size"]), str(r["seed"]), f"{r['train_pos_records']:.0f}"]
        cells += [_with_ci(r, f"auc_{a}") for a in arms]
        cells += [f"{_with_ci(r, f'diff_{a}_{b}', signed=True)}, p={_p(r.get(f'p_delong_{a}_{b}'))}" for a, b in pairs]
        rows.append(cells)
    return headers, rows


def render_html(result: CompareResult, plot_uri: str | None, command: str | None) -> str:
    config = result.config
    headers, body = table_rows(result)
    seed_headers, seed_rows = _per_seed_table(result)
    design = ("a fixed held-out test split" if config["split"] == "fixed" else
              f"{config['cv_folds']}-fold patient-level cross-validation repeated once per seed, pooled out-of-fold "
              "predictions")
    neg = "all available negatives" if config["neg_ratio"] is None else f"{config['neg_ratio']:g} negatives per positive"
    parts = [
        "<h1>Rare diagnoses from few examples: fine-tuning versus training from scratch</h1>",
        f"<p class=abstract>{html.escape(checks_text(result))}</p>",
        "<h2>Results (median over seeds)</h2>",
        f"<p>Design: {html.escape(design)}; training sets of the stated number of positive patients with {neg}, "
        f"{config['val_fraction']:.0%} of them held out for early stopping; seeds {config['seeds']}. AUC intervals: "
        f"{config['ci_level']:.0%} percentile intervals of a patient-level bootstrap ({config['n_bootstrap']} resamples) "
        "of the seed-median; DeLong p is the median over seeds of the per-seed paired test.</p>",
        table(headers, body),
    ]
    if plot_uri:
        parts += ["<h2>Data efficiency</h2>", f"<img alt='AUC versus training positives' src='{plot_uri}'>"]
    if result.skipped:
        parts += ["<h2>Sizes not run</h2>",
                  table(["Label", "Size", "Reason"], [[s["label"], s["size"], s["reason"]] for s in result.skipped])]
    parts += ["<h2>Per seed</h2>", table(seed_headers, seed_rows)]
    parts += provenance(command, config=to_jsonable(config), run=to_jsonable(result.meta))
    return page("ecgfm compare", parts)


def write_compare_report(result: CompareResult, out_dir: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write every output file into ``out_dir``; returns ``{kind: path}``."""
    out_dir = Path(out_dir)
    paths = {kind: out_dir / name for kind, name in FILES.items()}
    document = {"schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "ecgfm_version": __version__, "command": command, "config": result.config, "meta": result.meta,
                "checks": result.checks, "summary": result.summary, "per_seed": result.per_seed,
                "skipped": result.skipped}
    atomic_write_text(paths["json"], json.dumps(to_jsonable(document), indent=2))
    atomic_write_text(paths["summary_csv"], pd.DataFrame(result.summary).to_csv(index=False))
    atomic_write_text(paths["per_seed_csv"], pd.DataFrame(result.per_seed).to_csv(index=False))
    atomic_write_text(paths["markdown"], markdown_table(result))
    plot_uri = None
    if result.summary:
        descriptions = {r["label"]: r.get("description", r["label"]) for r in result.summary}
        fig = plot_data_efficiency(result.summary, result.config["arms"], descriptions=descriptions)
        atomic_write(paths["plot"], lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plot_uri = figure_to_data_uri(fig, dpi=90)
    else:
        paths.pop("plot")
    atomic_write_text(paths["html"], render_html(result, plot_uri, command))
    return paths
