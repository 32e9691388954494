"""Write evaluation results as ``metrics.json``, ``metrics.csv`` and a self-contained HTML report.

The JSON holds everything (command, config, settings, summary, per-label rows; NaN written as ``null``); the CSV has
one row per label with the same columns; the HTML (no external files: figures are embedded PNG) shows the abstract-style
summary, ROC curves, reliability diagrams (before and after calibration when raw scores were given) and the per-label
table sorted by AUC. Files are written atomically (temporary file, then rename).
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from collections.abc import Sequence

from ecgfm.evaluation.evaluate import (DEFAULT_N_BOOTSTRAP, POOLED, ComparisonResult, EvaluationResult, ThresholdSpec,
                                       compare_scores, evaluate_scores)
from ecgfm.files import atomic_write_text, to_jsonable
from ecgfm.plotting.html import figure_to_data_uri, page, provenance, table
from ecgfm.plotting.reliability import ReliabilityPanel, plot_reliability, plot_reliability_grid
from ecgfm.plotting.roc import RocPanel, plot_roc_grid

SCHEMA = "ecgfm.evaluation/1"
EVALUATION_FILES = {"json": "metrics.json", "csv": "metrics.csv", "html": "report.html"}
COMPARISON_FILES = {"json": "comparison.json", "csv": "comparison.csv", "html": "comparison.html"}


def _document(kind: str, result, command: str | None, config: Mapping | None) -> dict:
    """The JSON document shared by evaluation and comparison outputs."""
    from ecgfm.version import __version__

    return {
        "schema": SCHEMA,
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ecgfm_version": __version__,
        "command": command,
        "config": dict(config or {}),
        "settings": result.settings,
        "summary": result.summary,
        "labels": result.labels,
    }


def _fmt(value, digits: int = 3) -> str:
    """A number for the HTML table ("-" for missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer() and abs(value) > 1):
        return f"{int(value)}"
    return f"{value:.{digits}f}"


def _with_ci(row: Mapping, key: str, low: str | None = None, high: str | None = None) -> str:
    """``0.912 (0.901-0.925)`` for a per-label value and its interval."""
    value = _fmt(row.get(key))
    lo, hi = row.get(low or f"{key}_ci_low"), row.get(high or f"{key}_ci_high")
    if value != "-" and lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        value += f" <span class=ci>({lo:.3f}-{hi:.3f})</span>"
    return value


def _stat(stat: Mapping) -> str:
    return _with_ci(stat, "value", "ci_low", "ci_high")


def _provenance(command: str | None, config: Mapping | None, settings: Mapping) -> list[str]:
    """The report's provenance block: the exact command, its config and the statistical settings."""
    return provenance(command, config=to_jsonable(dict(config or {})), settings=to_jsonable(dict(settings)))


def _table(headers: list[str], rows: list[tuple[bool, list[str]]]) -> str:
    """An HTML table of already formatted cells; each row is ``(excluded, cells)``."""
    return table(headers, [cells for _, cells in rows], escape=False, excluded=[flag for flag, _ in rows])


def _sorted_by(rows: list[dict], key: str) -> list[dict]:
    """Rows by descending ``key``, rows without a value (excluded labels) last."""
    def order(row):
        value = row.get(key)
        return (0, -value) if value is not None and math.isfinite(value) else (1, row["label"])
    return sorted(rows, key=order)


def render_evaluation_html(result: EvaluationResult, command: str | None = None, config: Mapping | None = None,
                           title: str = "ecgfm evaluation") -> str:
    """Self-contained HTML report for one model."""
    s = result.summary
    level = result.settings["ci_level"]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class=abstract>{html.escape(s['text'])}</p>", "<h2>Summary</h2>"]
    summary_rows = [
        (False, ["Median AUC", _stat(s["median_auc"])]),
        (False, ["Macro AUC (mean)", _stat(s["macro_auc"])]),
        (False, ["Micro AUC (pooled)", _stat(s["micro_auc"])]),
        (False, ["Median average precision", _stat(s["median_average_precision"])]),
        (False, ["Median sensitivity", _stat(s["median_sensitivity"])]),
        (False, ["Median specificity", _stat(s["median_specificity"])]),
        (False, ["Labels evaluated / total", f"{s['n_evaluable']} / {s['n_labels']}"]),
        (False, ["Threshold", html.escape(f"{s['threshold_rule']} ({s['threshold_source']})")]),
        (False, ["Records / bootstrap", html.escape(
            f"{result.settings['n_records']} records, {result.settings['n_bootstrap']} resamples by "
            f"{result.settings['bootstrap_unit']} ({result.settings['n_clusters']} clusters), seed "
            f"{result.settings['seed']}, {level:.0%} intervals")]),
    ]
    summary_rows += _calibration_rows(s.get("calibration", {}))
    body.append(_table(["Statistic", f"Value ({level:.0%} CI)"], summary_rows))
    if s["excluded"]:
        items = "".join(f"<li>{html.escape(e['label'])}: {html.escape(e['reason'])}</li>" for e in s["excluded"])
        body.append(f"<p>{s['n_excluded']} labels excluded from medians and macro AUC:</p><ul>{items}</ul>")
    if s["without_threshold"]:
        items = "".join(f"<li>{html.escape(e['label'])}: {html.escape(e['reason'])}</li>"
                        for e in s["without_threshold"])
        body.append(f"<p>Labels without an operating threshold:</p><ul>{items}</ul>")

    rows = _sorted_by(result.labels, "auc")
    panels = [RocPanel(f"{r['label']}  AUC {r['auc']:.3f}", [(*result.curves[r["label"]], "test")],
                       [(1.0 - r["specificity"], r["sensitivity"], "operating point")])
              for r in rows if r["label"] in result.curves]
    if panels:
        body.append("<h2>ROC curves (test set; dot = operating threshold)</h2>")
        body.append(f"<img alt='ROC curves' src='{figure_to_data_uri(plot_roc_grid(panels))}'>")

    body += _reliability_section(result, rows)

    body.append("<h2>Per-label metrics (sorted by AUC)</h2>")
    raw = "raw" in result.reliability
    headers = ["Label", "Pos", "Neg", "AUC (bootstrap CI)", "AUC DeLong CI", "AP", "Threshold", "Sensitivity",
               "Specificity", "PPV", "NPV", "F1", "Brier", "ECE" + (" (raw)" if raw else ""), "Cal. slope", "Note"]
    table_rows = []
    for r in rows:
        delong = (f"{r['auc_delong_ci_low']:.3f}-{r['auc_delong_ci_high']:.3f}"
                  if math.isfinite(r["auc_delong_ci_low"]) else "-")
        undefined = r.get("bootstrap_undefined") or 0
        undefined_note = f"AUC undefined in {undefined} resamples (left out of its CI)" if undefined else None
        note = "; ".join(x for x in (r["reason"], r["threshold_reason"], undefined_note) if x)
        table_rows.append((r["excluded"], [
            html.escape(r["label"]), _fmt(r["n_pos"]), _fmt(r["n_neg"]), _with_ci(r, "auc"), delong,
            _with_ci(r, "average_precision", "ap_ci_low", "ap_ci_high"), _fmt(r["threshold"], 4),
            _with_ci(r, "sensitivity"), _with_ci(r, "specificity"), _with_ci(r, "ppv"), _with_ci(r, "npv"),
            _with_ci(r, "f1"), _fmt(r.get("brier"), 4),
            _fmt(r.get("ece"), 4) + (f" ({_fmt(r.get('ece_raw'), 4)})" if raw else ""),
            _fmt(r.get("calibration_slope"), 2), html.escape(note)]))
    body.append(_table(headers, table_rows))
    body.append(f"<p class=ci>Sensitivity/specificity/PPV/NPV intervals: Wilson score. AUC, AP and F1 intervals: "
                f"percentile bootstrap ({result.settings['bootstrap_unit']}-level).</p>")
    if config and config.get("external"):
        body += _external_section(result, config)
    body += _provenance(command, config, result.settings)
    return page(title, body)


def _external_section(result: EvaluationResult, config: Mapping) -> list[str]:
    """External validation: each label's AUC here beside the model's own test AUC (the generalisation gap), observed
    against predicted prevalence, and what the source's labels could not express."""
    from ecgfm.labels.snomed import snomed_term

    external = config["external"]
    aucs = {row["label"]: row.get("auc") for row in result.labels}
    rows = []
    for row in external["labels"]:
        auc, internal = aucs.get(row["label"]), row.get("internal_auc")
        gap = auc - internal if auc is not None and internal is not None else None
        rows.append((row["label"] not in aucs, [
            html.escape(row["label"]), _fmt(row["n_pos"]), _fmt(auc), _fmt(internal), _fmt(gap),
            _fmt(row["observed_prevalence"]), _fmt(row["mean_predicted_probability"]), _fmt(row["flagged_fraction"])]))
    parts = ["<h2>External validation: generalisation gap and prevalence</h2>",
             f"<p>Internal test: {html.escape(str(external.get('internal_test') or 'not recorded'))}.</p>",
             _table(["Label", "Positives", "AUC here", "AUC internal test", "Gap", "Observed prevalence",
                     "Mean predicted probability", "Flagged at threshold"], rows)]
    unmapped = external.get("unmapped_snomed") or {}
    if unmapped:
        items = "".join(f"<li>{html.escape(code)} {html.escape(snomed_term(code) or '')}: {count} record(s)</li>"
                        for code, count in unmapped.items())
        parts.append(f"<p>SNOMED-CT codes with no label in the model's vocabulary (not evaluated):</p><ul>{items}</ul>")
    if config.get("n_unreadable"):
        parts.append(f"<p>{config['n_unreadable']} record(s) could not be read and were left out (listed in "
                     "metrics.json).</p>")
    return parts


def _calibration_rows(calibration: Mapping) -> list[tuple[bool, list[str]]]:
    """Summary-table rows: pooled Brier score, ECE and slope/intercept, before -> after when raw scores were given."""
    after, before = calibration.get("calibrated"), calibration.get("raw")
    if not after or after.get("note"):
        return []

    def value(key, digits):
        text = _fmt(after[key], digits)
        return f"{_fmt(before[key], digits)} &rarr; {text}" if before and not before.get("note") else text

    suffix = " (raw &rarr; calibrated)" if before and not before.get("note") else ""
    return [(False, [f"Brier score, pooled{suffix}", value("brier", 4)]),
            (False, [f"Expected calibration error, pooled{suffix}", value("ece", 4)]),
            (False, [f"Calibration slope / intercept, pooled{suffix}",
                     f"{value('calibration_slope', 2)} / {value('calibration_intercept', 2)}"])]


def _reliability_section(result: EvaluationResult, rows: list[dict]) -> list[str]:
    """Reliability diagrams: all labels pooled, then one panel per evaluable label (raw and calibrated overlaid)."""
    kinds = [kind for kind in ("raw", "calibrated") if result.reliability.get(kind)]
    if not kinds:
        return []
    names = {"raw": "raw", "calibrated": "calibrated" if len(kinds) > 1 else "model"}

    def panel(title, label):
        curves = [(c.mean_predicted, c.fraction_positive, names[kind])
                  for kind in kinds if (c := result.reliability[kind].get(label)) is not None]
        return ReliabilityPanel(title, curves)

    settings = result.settings.get("calibration", {})
    bins = f"diagrams: {settings.get('diagrams', 'equal-width bins')}; ECE: {settings.get('ece', 'equal-mass bins')}"
    body = ["<h2>Calibration (test set; reliability diagrams, points on the diagonal = calibrated)</h2>",
            f"<p class=ci>{html.escape(bins)}. Below the diagonal: the model is over-confident.</p>",
            "<img alt='pooled reliability diagram' "
            f"src='{figure_to_data_uri(plot_reliability(panel(POOLED, POOLED)))}'>"]
    panels = [panel(f"{r['label']}  ECE {r['ece']:.3f}", r["label"]) for r in rows
              if r["label"] in result.reliability[kinds[-1]]]
    if panels:
        body.append(f"<img alt='reliability diagrams per label' "
                    f"src='{figure_to_data_uri(plot_reliability_grid(panels))}'>")
    return body


def render_comparison_html(result: ComparisonResult, command: str | None = None, config: Mapping | None = None,
                           title: str = "ecgfm model comparison") -> str:
    """Self-contained HTML report for a paired two-model comparison."""
    s = result.summary
    a, b = result.settings["model_a"], result.settings["model_b"]
    level = result.settings["ci_level"]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class=abstract>{html.escape(s['text'])}</p>", "<h2>Summary</h2>"]
    body.append(_table(["Statistic", f"Value ({level:.0%} CI)"], [
        (False, [f"Median AUC {html.escape(a)}", _stat(s["median_auc_a"])]),
        (False, [f"Median AUC {html.escape(b)}", _stat(s["median_auc_b"])]),
        (False, [f"Median difference ({html.escape(a)} - {html.escape(b)})", _stat(s["median_diff"])]),
        (False, [f"Labels where {html.escape(a)} is significantly better / worse",
                 f"{s['n_a_better']} / {s['n_b_better']}"]),
        (False, ["Labels evaluated / total", f"{s['n_evaluable']} / {s['n_labels']}"]),
    ]))
    if s["excluded"]:
        items = "".join(f"<li>{html.escape(e['label'])}: {html.escape(e['reason'])}</li>" for e in s["excluded"])
        body.append(f"<p>{s['n_excluded']} labels excluded:</p><ul>{items}</ul>")
    rows = _sorted_by(result.labels, "diff")
    panels = [RocPanel(f"{r['label']}  {r['auc_a']:.3f} vs {r['auc_b']:.3f}",
                       [(*result.curves[r["label"]][0], a), (*result.curves[r["label"]][1], b)])
              for r in rows if r["label"] in result.curves]
    if panels:
        body.append("<h2>ROC curves</h2>")
        body.append(f"<img alt='ROC curves' src='{figure_to_data_uri(plot_roc_grid(panels))}'>")
    body.append(f"<h2>Per-label paired comparison (sorted by difference {html.escape(a)} - {html.escape(b)})</h2>")
    headers = ["Label", "Pos", "Neg", f"AUC {html.escape(a)}", f"AUC {html.escape(b)}", "Difference",
               "DeLong CI", "Bootstrap CI", "p (DeLong)", "q (BH)", "Note"]
    table_rows = []
    for r in rows:
        delong = (f"{r['diff_delong_ci_low']:.3f} to {r['diff_delong_ci_high']:.3f}"
                  if math.isfinite(r["diff_delong_ci_low"]) else "-")
        boot = (f"{r['diff_boot_ci_low']:.3f} to {r['diff_boot_ci_high']:.3f}"
                if math.isfinite(r["diff_boot_ci_low"]) else "-")
        table_rows.append((r["excluded"], [
            html.escape(r["label"]), _fmt(r["n_pos"]), _fmt(r["n_neg"]), _with_ci(r, "auc_a"), _with_ci(r, "auc_b"),
            _fmt(r["diff"]), delong, boot, _fmt(r["p_delong"], 4), _fmt(r["p_fdr_bh"], 4),
            html.escape(r["reason"] or "")]))
    body.append(_table(headers, table_rows))
    body += _provenance(command, config, result.settings)
    return page(title, body)


def _write(kind: str, result, out_dir, command, config, files: Mapping[str, str], render) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in files.items()}
    document = to_jsonable(_document(kind, result, command, config))
    atomic_write_text(paths["json"], json.dumps(document, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["csv"], pd.DataFrame(result.labels).to_csv(index=False))
    atomic_write_text(paths["html"], render(result, command, config))
    return paths


def write_evaluation(result: EvaluationResult, out_dir, command: str | None = None,
                     config: Mapping | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.csv`` and ``report.html`` into ``out_dir``; returns their paths."""
    return _write("evaluation", result, out_dir, command, config, EVALUATION_FILES, render_evaluation_html)


def write_comparison(result: ComparisonResult, out_dir, command: str | None = None,
                     config: Mapping | None = None) -> dict[str, Path]:
    """Write ``comparison.json``, ``comparison.csv`` and ``comparison.html`` into ``out_dir``; returns their paths."""
    return _write("comparison", result, out_dir, command, config, COMPARISON_FILES, render_comparison_html)


def evaluate_predictions(
    y_true,
    y_score,
    label_names: Sequence[str],
    out_dir,
    val_true=None,
    val_score=None,
    patient_ids=None,
    thresholds: ThresholdSpec = "youden",
    command: str | None = None,
    config: Mapping | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
    progress=None,
    n_jobs: int = 1,
    raw_score=None,
) -> tuple[EvaluationResult, dict[str, Path]]:
    """Evaluate test scores and write ``metrics.json``, ``metrics.csv`` and ``report.html`` into ``out_dir``.

    Thresholds are fitted on ``val_true``/``val_score`` (see :func:`ecgfm.evaluation.evaluate_scores`); ``raw_score``
    (uncalibrated probabilities of the same model) adds calibration before/after. ``command`` and ``config`` are
    recorded verbatim in the JSON and the HTML so the report says how it was produced.
    """
    result = evaluate_scores(y_true, y_score, label_names, val_true=val_true, val_score=val_score,
                             thresholds=thresholds, patient_ids=patient_ids, n_bootstrap=n_bootstrap, seed=seed,
                             level=level, progress=progress, n_jobs=n_jobs, raw_score=raw_score)
    return result, write_evaluation(result, out_dir, command=command, config=config)


def compare_predictions(
    y_true,
    score_a,
    score_b,
    label_names: Sequence[str],
    out_dir,
    patient_ids=None,
    model_names: tuple[str, str] = ("A", "B"),
    command: str | None = None,
    config: Mapping | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
    progress=None,
    n_jobs: int = 1,
) -> tuple[ComparisonResult, dict[str, Path]]:
    """Compare two models' scores on the same records; writes comparison.json/.csv/.html into ``out_dir``."""
    result = compare_scores(y_true, score_a, score_b, label_names, model_names=model_names, patient_ids=patient_ids,
                            n_bootstrap=n_bootstrap, seed=seed, level=level, progress=progress, n_jobs=n_jobs)
    return result, write_comparison(result, out_dir, command=command, config=config)
