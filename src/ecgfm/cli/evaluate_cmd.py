"""``ecgfm evaluate`` and ``ecgfm compare-models``: paper-style evaluation reports from a model or prediction files.

``--model`` scores a model on labelled data (:func:`ecgfm.evaluation.model_eval.evaluate_model`); ``--predictions``
evaluates saved predictions (:func:`ecgfm.evaluation.report.evaluate_predictions`, which code holding arrays can call
directly).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from ecgfm.cli.common import console, err_console, is_interactive, user_errors
from ecgfm.cli.options import (Data, Device, Labels, Manifest, Model, Ptbxl, Store, TestFolds, Threads, ValFolds,
                               command_line, match_labels, source_kwargs)
from ecgfm.evaluation.evaluate import DEFAULT_N_BOOTSTRAP, ThresholdSpec
from ecgfm.evaluation.predictions import load_predictions
from ecgfm.evaluation.report import compare_predictions, evaluate_predictions

__all__ = ["register"]


def _progress_bar(total: int, description: str):
    """A tqdm bar on stderr (quiet when not interactive) and the callback that advances it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=description, unit="resample", disable=not is_interactive(), leave=False)

    def update(done: int) -> None:
        bar.update(done - bar.n)

    return bar, update


def _same_records(path_a: Path, a, path_b: Path, b) -> None:
    """Refuse to pair two prediction files that do not describe the same records and labels in the same order."""
    if a.label_names != b.label_names:
        raise ValueError(f"{path_a} and {path_b} have different label names or order")
    if a.y_true.shape != b.y_true.shape:
        raise ValueError(f"{path_a} and {path_b} cover different numbers of records ({a.y_true.shape[0]} vs "
                         f"{b.y_true.shape[0]})")
    if a.record_ids is not None and b.record_ids is not None and not np.array_equal(a.record_ids, b.record_ids):
        raise ValueError(f"{path_a} and {path_b} list different record ids (a paired comparison needs the same "
                         "records)")
    if not np.array_equal(np.isnan(a.y_true), np.isnan(b.y_true)) or not np.array_equal(
            np.nan_to_num(a.y_true), np.nan_to_num(b.y_true)):
        raise ValueError(f"{path_a} and {path_b} have different true labels")


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        ctx: typer.Context,
        model: Model = None,
        data: Data = None,
        ptbxl: Ptbxl = None,
        manifest: Manifest = None,
        store: Store = None,
        labels: Labels = None,
        val_folds: ValFolds = "9",
        test_folds: TestFolds = "10",
        min_test_positives: int = typer.Option(1, "--min-test-positives", min=1,
                                               help="Report only labels with at least this many test positives."),
        device: Device = "auto",
        threads: Threads = None,
        predictions: Path = typer.Option(None, "--predictions", help="Instead of --model: a test-set prediction file "
                                         "(.npz: y_true, y_score, label_names, optional record_ids/patient_ids)."),
        val_predictions: Path = typer.Option(None, "--val-predictions",
                                             help="Validation-set prediction file; thresholds are fitted on it."),
        out: Path = typer.Option(Path("evaluation"), "--out", help="Output folder for metrics.json/.csv, report.html."),
        threshold: str = typer.Option(None, "--threshold", help="Operating point: a rule fitted on the validation "
                                      "records (youden, 'sens>=0.9', 'spec>=0.95'), a number, 'model' (the thresholds "
                                      "stored with the model), or a JSON file label -> threshold. Default: youden, "
                                      "or 'model' with --data (external validation)."),
        n_bootstrap: int = typer.Option(DEFAULT_N_BOOTSTRAP, "--bootstrap", min=0,
                                        help="Bootstrap resamples (0: none)."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap random seed."),
        level: float = typer.Option(0.95, "--ci", min=0.5, max=0.999, help="Confidence level."),
        jobs: int = typer.Option(1, "--jobs", min=1, help="Threads for the bootstrap (labels are split)."),
    ) -> None:
        """Evaluate predictions like a clinical paper: per-label AUC, AP, sensitivity, specificity, PPV, NPV, F1 with
        95% CIs (patient-level bootstrap, Wilson, DeLong), median/macro/micro summaries, JSON/CSV/HTML report.

        With --data, every record of PATH is a test record from elsewhere (external validation): SNOMED-CT labels
        are mapped to the model's vocabulary and the model's own thresholds apply.

        Example: ecgfm evaluate --model pretrained --ptbxl ../shared/data/ptbxl --out runs/eval

        Example: ecgfm evaluate --model pretrained --data ../shared/data/external/cpsc --out runs/external

        Example: ecgfm evaluate --predictions runs/test.npz --val-predictions runs/val.npz --threshold youden --out runs/eval
        """
        if threads:
            import torch

            torch.set_num_threads(threads)
        if predictions is None:
            sources = source_kwargs(data, ptbxl, manifest, store)
            _evaluate_model(ctx, model or "pretrained", out, sources, labels, val_folds=val_folds,
                            test_folds=test_folds, min_test_positives=min_test_positives, device=device,
                            threshold=threshold or ("model" if data is not None else "youden"),
                            n_bootstrap=n_bootstrap, seed=seed, level=level, jobs=jobs)
            return
        if model is not None:
            raise typer.BadParameter("give --model (with data) or --predictions, not both")
        with user_errors():
            test = load_predictions(predictions)
            val = load_predictions(val_predictions) if val_predictions is not None else None
            if val is not None and val.label_names != test.label_names:
                raise ValueError(f"{val_predictions} and {predictions} have different label names or order")
            bar, update = _progress_bar(n_bootstrap, "bootstrap")
            with bar:
                result, paths = evaluate_predictions(
                    test.y_true, test.y_score, test.label_names, out,
                    val_true=None if val is None else val.y_true, val_score=None if val is None else val.y_score,
                    patient_ids=test.patient_ids, thresholds=_threshold_spec(threshold or "youden"),
                    command=command_line(ctx),
                    config={k: str(v) if isinstance(v, Path) else v for k, v in ctx.params.items()},
                    n_bootstrap=n_bootstrap, seed=seed, level=level, progress=update, n_jobs=jobs)
        console.print(result.summary["text"], highlight=False)
        for path in paths.values():
            err_console.print(f"wrote {path}", highlight=False)

    @app.command("compare-models")
    def compare_models(
        ctx: typer.Context,
        predictions_a: Path = typer.Option(..., "--predictions-a", help="Prediction file of model A (.npz)."),
        predictions_b: Path = typer.Option(..., "--predictions-b", help="Prediction file of model B, same records."),
        name_a: str = typer.Option("A", "--name-a", help="Display name of model A."),
        name_b: str = typer.Option("B", "--name-b", help="Display name of model B."),
        out: Path = typer.Option(Path("comparison"), "--out", help="Output folder for comparison.json/.csv/.html."),
        n_bootstrap: int = typer.Option(DEFAULT_N_BOOTSTRAP, "--bootstrap", min=0,
                                        help="Bootstrap resamples (0: none)."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap random seed."),
        level: float = typer.Option(0.95, "--ci", min=0.5, max=0.999, help="Confidence level."),
        jobs: int = typer.Option(1, "--jobs", min=1, help="Threads for the bootstrap (labels are split)."),
    ) -> None:
        """Compare two models on the same records, label by label: AUC A, AUC B, difference with DeLong CI and
        p-value (Benjamini-Hochberg adjusted across labels) and a paired patient-level bootstrap CI.

        Example: ecgfm compare-models --predictions-a runs/pretrained/test.npz --predictions-b runs/scratch/test.npz --name-a pretrained --name-b scratch --out runs/compare
        """
        with user_errors():
            a = load_predictions(predictions_a)
            b = load_predictions(predictions_b)
            _same_records(predictions_a, a, predictions_b, b)
            patients = a.patient_ids if a.patient_ids is not None else b.patient_ids
            bar, update = _progress_bar(n_bootstrap, "bootstrap")
            with bar:
                result, paths = compare_predictions(
                    a.y_true, a.y_score, b.y_score, a.label_names, out, patient_ids=patients,
                    model_names=(name_a, name_b), command=command_line(ctx),
                    config={k: str(v) if isinstance(v, Path) else v for k, v in ctx.params.items()},
                    n_bootstrap=n_bootstrap, seed=seed, level=level, progress=update, n_jobs=jobs)
        console.print(result.summary["text"], highlight=False)
        for path in paths.values():
            err_console.print(f"wrote {path}", highlight=False)


def _evaluate_model(ctx: typer.Context, model: str, out: Path, sources: dict, labels: str | None, *, val_folds: str,
                    test_folds: str, min_test_positives: int, device: str, threshold: str, n_bootstrap: int,
                    seed: int, level: float, jobs: int) -> None:
    """``ecgfm evaluate --model``: score the model on the data's validation and test records, then report."""
    from ecgfm.datasets import load_labelled
    from ecgfm.evaluation.model_eval import evaluate_model
    from ecgfm.models import load
    from ecgfm.training import resolve_device

    with user_errors():
        device = str(resolve_device(device))
        net = load(model, device=device)
        names = match_labels(labels, net.info.labels) or None
        external = "data" in sources
        pipeline = net.info.pipeline().any_length() if external else net.info.pipeline()
        data = load_labelled(**sources, labels=net.info.labels, pipeline=pipeline, train_folds=(),
                             val_folds=val_folds, test_folds=test_folds, progress=is_interactive(), lazy=external)
        if external:
            data = data.with_split("test")
        bar, update = _progress_bar(n_bootstrap, "bootstrap")
        with bar:
            result, paths = evaluate_model(
                net, data, out, labels=names, thresholds=_threshold_spec(threshold),
                min_test_positives=min_test_positives, device=device, command=command_line(ctx),
                config={k: str(v) if isinstance(v, Path) else v for k, v in ctx.params.items()},
                progress=update, n_bootstrap=n_bootstrap, seed=seed, level=level, n_jobs=jobs)
    console.print(result.summary["text"], highlight=False)
    for path in paths.values():
        err_console.print(f"wrote {path}", highlight=False)


def _threshold_spec(text: str) -> ThresholdSpec:
    """A CLI threshold argument: a number (fixed), a JSON file of per-label thresholds, or a rule name."""
    try:
        return float(text)
    except ValueError:
        pass
    if text.lower().endswith(".json"):
        import json

        try:
            return {str(k): float(v) for k, v in json.loads(Path(text).read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(f"{text}: not a JSON file of label -> threshold ({exc})") from None
    return text
