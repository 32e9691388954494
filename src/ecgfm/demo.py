"""The paper's pipeline in one call, on PTB-XL: pre-train a foundation model with some statements held out, evaluate
it like a clinical paper, fine-tune it for the held-out statements against training from scratch, and show what it
sees in one test ECG.

``ecgfm demo`` is a thin shell over :func:`run_demo`. Every stage writes its own run folder under ``out`` and is
skipped when its outputs already exist, so a killed demo resumes where it stopped; ``report.html`` ties them together.
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ecgfm.config import cache_dir, ptbxl_dir

#: Statements held out of pre-training and used as the "rare" fine-tuning targets (see docs/results.md): a drug
#: effect (digitalis), a conduction finding (first-degree AV block) and a morphology finding (left atrial enlargement).
HELD_OUT = ("DIG", "1AVB", "LAO/LAE")
#: The finding the demo explains, and the leads where cardiologists read it (docs/explain.md): the rsR' of complete
#: right bundle branch block in V1-V2, a localisation the reader can check on the figure.
EXPLAIN_LABEL, EXPLAIN_LEADS = "CRBBB", ("V1", "V2")


@dataclass
class DemoPreset:
    """Budgets of one demo run; ``quick`` fits a laptop CPU, ``full`` reproduces docs/results.md."""

    name: str = "quick"
    model: str = "xresnet1d50"
    fs: float = 100.0
    pretrain_epochs: int = 15
    min_count: int = 10  # pre-train on statements with at least this many training positives
    n_bootstrap: int = 500
    compare_sizes: list = field(default_factory=lambda: [10, 25])
    compare_seeds: list = field(default_factory=lambda: [0])
    compare_epochs: int = 12
    compare_patience: int = 4  # early-stopping patience of the comparison's trained arms


PRESETS = {
    "quick": DemoPreset(),
    "full": DemoPreset(name="full", pretrain_epochs=50, n_bootstrap=1000, compare_sizes=[10, 25, 50, 100, "all"],
                       compare_seeds=[0, 1, 2], compare_epochs=30, compare_patience=8),  # = `ecgfm compare` defaults
}


def locate_ptbxl(ptbxl: str | Path | None, download: bool, log: Callable[[str], None]) -> Path:
    """The PTB-XL folder: the argument, ``$ECGFM_PTBXL_DIR``, or (if ``download``) a verified 100 Hz download."""
    root = ptbxl_dir(ptbxl)
    if root is not None and (root / "ptbxl_database.csv").exists():
        return root
    if root is not None and not download:
        raise FileNotFoundError(f"{root} holds no ptbxl_database.csv; pass --download to fetch PTB-XL there")
    if not download:
        raise FileNotFoundError("PTB-XL not found: set $ECGFM_PTBXL_DIR, pass --ptbxl, or pass --download")
    from ecgfm.datasets.download import download_ptbxl

    dest = root or cache_dir() / "ptbxl-1.0.3"
    log(f"downloading PTB-XL (100 Hz records, checked against SHA256SUMS.txt) into {dest}")
    report = download_ptbxl(dest, rates=(100,))
    failed = getattr(report, "failed", None)
    if failed:
        raise RuntimeError(f"PTB-XL download incomplete: {len(failed)} files failed; re-run to resume")
    return dest


def _pretrain(root: Path, out: Path, preset: DemoPreset, held_out, device: str, log) -> Path:
    from ecgfm.training.pretrain import pretrain, training_data
    from ecgfm.training.recipes import custom_recipe

    run_dir = out / "foundation"
    pretrained = run_dir / "pretrained"
    if (pretrained / "config.json").exists() and (run_dir / "demo_done").exists():
        log(f"pre-training: done earlier ({pretrained})")
        return pretrained
    recipe = replace(custom_recipe(preset.model, epochs=preset.pretrain_epochs), fs=preset.fs,
                     min_count=preset.min_count)
    data = training_data(recipe, exclude=held_out, ptbxl=root, progress=False)
    log(f"pre-training {preset.model} on {len(data.labels)} statements ({', '.join(held_out)} held out), "
        f"{preset.pretrain_epochs} epochs")
    pretrain(data, recipe, run_dir=run_dir, resume=(run_dir / "last.pt").exists(), device=device, seed=0)
    (run_dir / "demo_done").write_text("ok\n")
    return pretrained


def _evaluate(root: Path, foundation: Path, out: Path, preset: DemoPreset, device: str, log) -> dict[str, Any]:
    from ecgfm.datasets import load_labelled
    from ecgfm.evaluation.model_eval import evaluate_model
    from ecgfm.models import load

    eval_dir = out / "evaluation"
    if not (eval_dir / "metrics.json").exists():
        log("evaluating the foundation model on fold 10 (thresholds from fold 9)")
        model = load(foundation)
        data = load_labelled(ptbxl=root, labels=model.info.labels, pipeline=model.info.pipeline(), train_folds=(),
                             progress=False)
        evaluate_model(model, data, eval_dir, min_test_positives=5, n_bootstrap=preset.n_bootstrap,
                       device="cuda" if device == "cuda" else "cpu", command="ecgfm demo (evaluation stage)")
    return json.loads((eval_dir / "metrics.json").read_text())


def _compare(root: Path, foundation: Path, out: Path, preset: DemoPreset, held_out, device: str, log):
    from ecgfm.datasets import load_labelled
    from ecgfm.models import load
    from ecgfm.transfer.compare import run_comparison
    from ecgfm.transfer.config import quick_config
    from ecgfm.transfer.report import write_compare_report

    model = load(foundation)
    config = quick_config(list(held_out))
    train = replace(config.finetune.train, epochs=preset.compare_epochs, patience=preset.compare_patience,
                    device=device)
    config = replace(config, sizes=preset.compare_sizes, seeds=preset.compare_seeds, n_bootstrap=preset.n_bootstrap,
                     finetune=replace(config.finetune, train=train), scratch=None)
    data = load_labelled(ptbxl=root, labels=list(held_out), pipeline=model.info.pipeline(), progress=False)
    log(f"fine-tuned vs from scratch on {', '.join(held_out)}: sizes {config.sizes}, seeds {config.seeds}")
    result = run_comparison(model, data, config, out / "compare", log=log, foundation_name=str(foundation))
    return result, write_compare_report(result, out / "compare", command="ecgfm demo (comparison stage)")


def _explain(root: Path, foundation: Path, out: Path, log) -> dict[str, Any] | None:
    """Explain the foundation's ``EXPLAIN_LABEL`` on the fold-10 record with that label it is most confident about
    (a shown example, chosen as such); ``None`` when the model does not predict the label or no such record exists."""
    from ecgfm.datasets.ptbxl import PTBXL
    from ecgfm.explain import explain
    from ecgfm.files import atomic_write_text
    from ecgfm.inference.predictor import Predictor

    folder = out / "explanation"
    if (folder / "explanation.json").exists():
        return json.loads((folder / "explanation.json").read_text())
    predictor = Predictor.from_pretrained(foundation)
    if EXPLAIN_LABEL not in predictor.labels:
        return None
    ptbxl = PTBXL(root)
    meta, labels = ptbxl.metadata, ptbxl.labels("all")
    found = [ptbxl.record_path(i, fs=predictor.pipeline.fs or 100) for i in meta.index[meta["strat_fold"] == 10]
             if EXPLAIN_LABEL in labels[i]]
    paths = [f[0] for f in found if f is not None]
    report = predictor.predict_many(paths, num_workers=0)
    if not report.predictions:
        return None
    best = max(report.predictions, key=lambda p: p.probabilities[EXPLAIN_LABEL])
    log(f"explaining {EXPLAIN_LABEL} on {best.record_id} (fold 10; the most confident of {len(paths)} records)")
    explanation = explain(best.source, predictor, labels=[EXPLAIN_LABEL])
    figure = explanation.write(folder, figure_format="png")[0]
    summary = {"record": best.record_id, "source": str(best.source), "candidates": len(paths),
               "figure": str(figure), **explanation.to_dict()["labels"][0]}
    # Written last and atomically: its presence marks the stage done, so a killed demo never resumes from half a file.
    atomic_write_text(folder / "explanation.json", json.dumps(summary, indent=1) + "\n")
    return summary


def run_demo(out: str | Path = "runs/demo", ptbxl: str | Path | None = None, preset: str | DemoPreset = "quick",
             held_out=HELD_OUT, download: bool = False, device: str = "auto",
             log: Callable[[str], None] = print, command: str | None = None) -> Path:
    """Run (or resume) the whole pipeline and return the path of ``report.html``."""
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    settings = PRESETS[preset] if isinstance(preset, str) else preset
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    root = locate_ptbxl(ptbxl, download, log)
    foundation = _pretrain(root, out, settings, tuple(held_out), device, log)
    timings["pretrain_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    metrics = _evaluate(root, foundation, out, settings, device, log)
    timings["evaluate_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    comparison, compare_paths = _compare(root, foundation, out, settings, tuple(held_out), device, log)
    timings["compare_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    explained = _explain(root, foundation, out, log)
    timings["explain_s"] = time.perf_counter() - clock
    report = out / "report.html"
    report.write_text(render_report(root, settings, held_out, metrics, comparison, compare_paths, timings, command,
                                    explained, foundation))
    (out / "demo_config.json").write_text(json.dumps({"preset": asdict(settings), "held_out": list(held_out),
                                                      "ptbxl": str(root), "command": command,
                                                      "timings_s": timings}, indent=2))
    log(f"report: {report}")
    return report


def render_report(root: Path, preset: DemoPreset, held_out, metrics: dict, comparison, compare_paths: dict,
                  timings: dict, command: str | None, explained: dict[str, Any] | None = None,
                  foundation: Path | None = None) -> str:
    """One self-contained HTML page: what ran, the foundation's headline metrics, the comparison table and plot,
    and one explained test ECG."""
    from ecgfm.plotting.html import page, table
    from ecgfm.transfer.report import markdown_table

    esc = html.escape
    summary = metrics.get("summary", {})
    plot = compare_paths.get("plot")
    plot_html = ""
    if plot is not None and Path(plot).exists():
        import base64

        plot_html = (f"<img alt='AUC versus training positives' style='max-width:100%' "
                     f"src='data:image/png;base64,{base64.b64encode(Path(plot).read_bytes()).decode()}'>")
    explain_html = _explain_html(explained, foundation)
    return page("ecgfm demo", [
        "<h1>ecgfm demo: foundation model, clinical evaluation, rare-label transfer</h1>",
        f"<p>Data: PTB-XL at <code>{esc(str(root))}</code> (folds 1-8 train, 9 validation, 10 test). Preset "
        f"<b>{esc(preset.name)}</b>: {esc(preset.model)} at {preset.fs:g} Hz, {preset.pretrain_epochs} pre-training "
        f"epochs. Held out of pre-training: <b>{esc(', '.join(held_out))}</b>.</p>",
        f"<h2>1. Foundation model on fold 10</h2><p>{esc(summary.get('text', ''))}</p>",
        '<p>Full per-label report: <a href="evaluation/report.html">evaluation/report.html</a></p>',
        "<h2>2. Fine-tuned versus from scratch on the held-out statements</h2>",
        f"<pre>{esc(markdown_table(comparison))}</pre>{plot_html}",
        '<p>Full comparison report: <a href="compare/report.html">compare/report.html</a></p>',
        explain_html,
        "<h2>Run</h2>", table(["stage", "seconds"], [[k, f"{v:.0f} s"] for k, v in timings.items()]),
        f"<p>Command: <code>{esc(command or 'ecgfm demo')}</code></p>"])


def _explain_html(explained: dict[str, Any] | None, foundation: Path | None) -> str:
    """Section 3 of the report: the explained ECG's figure and its strongest leads (or why there is none)."""
    esc = html.escape
    if not explained:
        return (f"<h2>3. What the model sees</h2><p>Not shown: the foundation model does not predict "
                f"{EXPLAIN_LABEL}, or fold 10 has no record with it.</p>")
    import base64

    figure = Path(explained["figure"])
    image = base64.b64encode(figure.read_bytes()).decode() if figure.exists() else ""
    contribution = explained["lead_contribution"]
    leads = ", ".join(f"{lead} {contribution[lead]:+.2f}" for lead in explained["top_leads"])
    command = f"ecgfm explain {explained['source']} --model {foundation} --label {EXPLAIN_LABEL}"
    return f"""<h2>3. What the model sees</h2>
<p>Record {esc(str(explained['record']))} (fold 10, labelled {EXPLAIN_LABEL}, {esc(explained['description'])}): the
most confident of the {explained['candidates']} fold-10 records with that label, p = {explained['probability']:.2f}.
Integrated gradients against a flat ECG; leads pushing hardest towards {EXPLAIN_LABEL} (logit): {esc(leads)}.
Cardiologists read it in {', '.join(EXPLAIN_LEADS)} (rsR'); red shading pushes towards the finding, blue against.
See docs/explain.md for how far such explanations can be trusted.</p>
<img alt='attributions of {EXPLAIN_LABEL}' style='max-width:100%' src='data:image/png;base64,{image}'>
<p>Reproduce: <code>{esc(command)}</code></p>"""
