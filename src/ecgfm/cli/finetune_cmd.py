"""``ecgfm finetune``: adapt a foundation model to new labels (a thin shell over :func:`ecgfm.transfer.finetune`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, user_errors


def parse_list(text: str | None) -> list[str]:
    """``"DIG, 1AVB,LAO/LAE"`` -> ``["DIG", "1AVB", "LAO/LAE"]``."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def parse_folds(text: str) -> list[int]:
    """``"1-8"`` or ``"1,2,3"`` or ``"1-4,6"`` -> sorted fold numbers."""
    folds: set[int] = set()
    for part in parse_list(text):
        low, sep, high = part.partition("-")
        try:
            folds.update(range(int(low), int(high) + 1) if sep else [int(low)])
        except ValueError:
            raise ValueError(f"folds must look like 1-8 or 1,2,3; got {text!r}") from None
    return sorted(folds)


def load_foundation_model(source: str | None):
    """``(model, info)`` from a checkpoint/folder, or the shipped weights when ``source`` is None or 'default'."""
    from ecgfm.inference.predictor import load_model

    return load_model(None if source in (None, "default") else source)


def labelled_data(labels: list[str], info, ptbxl, store, manifest, task: str, train_folds: str, val_folds: str,
                  test_folds: str, progress: bool):
    from ecgfm.transfer.data import load_labelled

    return load_labelled(labels, info, ptbxl=ptbxl if (store is None and manifest is None) else None, store=store,
                         manifest=manifest, task=task, train_folds=parse_folds(train_folds),
                         val_folds=parse_folds(val_folds), test_folds=parse_folds(test_folds), progress=progress)


def register(app: typer.Typer) -> None:
    from ecgfm.transfer.finetune import BALANCE_MODES, STRATEGIES, FinetuneConfig

    defaults = FinetuneConfig()

    @app.command("finetune")
    def finetune_command(
        source: Optional[str] = typer.Option(None, "--from", help="Foundation model: a checkpoint (best.pt), a "
                                             "pretrained folder, or 'default' (the shipped weights)."),
        labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated new labels (PTB-XL statements, or "
                                   "label columns of the manifest/store); one label = binary, several = multi-label."),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory (config.json, metrics.jsonl, last.pt, "
                                 "best.pt, model/, summary.json)."),
        ptbxl: Optional[Path] = typer.Option(None, "--ptbxl", help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)."),
        store: Optional[Path] = typer.Option(None, "--store", help="An ingested store (ecgfm ingest) instead of PTB-XL."),
        manifest: Optional[Path] = typer.Option(None, "--manifest", help="A manifest CSV/Parquet (path, patient_id, "
                                                "split, labels) instead of PTB-XL."),
        task: str = typer.Option("all", "--task", help="PTB-XL label task the labels come from."),
        train_folds: str = typer.Option("1-8", "--train-folds", help="PTB-XL folds to train on."),
        val_folds: str = typer.Option("9", "--val-folds", help="PTB-XL folds for validation (early stopping, "
                                      "thresholds)."),
        strategy: str = typer.Option(defaults.strategy, "--strategy", help=f"{', '.join(STRATEGIES)}: full "
                                     "fine-tuning (default), linear probe, gradual unfreezing, or scratch (no transfer)."),
        epochs: int = typer.Option(defaults.epochs, "--epochs", min=1, help="Total epoch budget (warm-up included)."),
        patience: int = typer.Option(defaults.patience, "--patience", min=0, help="Early stopping: epochs without a "
                                     "better validation AUC (0: never stop early)."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Head learning rate (default: 1e-3 for full/gradual, "
                                           "1e-2 for linear/scratch)."),
        body_lr_scale: float = typer.Option(defaults.body_lr_scale, "--body-lr-scale", help="Body learning rate "
                                            "relative to the head's (discriminative rates)."),
        layer_lr_decay: float = typer.Option(defaults.layer_lr_decay, "--layer-lr-decay", help="Further factor per "
                                             "body group towards the input."),
        head: str = typer.Option(defaults.new_head, "--head", help="The new head: probe (linear on the pooled "
                                 "embedding, started from a fitted logistic regression: LP-FT), fc (a fresh final "
                                 "layer after the pretrained hidden layer, SGD warm-up) or head (the whole head "
                                 "re-learnt)."),
        warmup_epochs: int = typer.Option(defaults.warmup_epochs, "--warmup-epochs", min=0, help="Frozen-body "
                                          "epochs training only the new head first (--head fc/head)."),
        freeze_bn: bool = typer.Option(defaults.freeze_bn, "--freeze-bn/--train-bn", help="Keep the body's "
                                       "pretrained BatchNorm statistics."),
        min_val_positives: int = typer.Option(defaults.min_val_positives, "--min-val-positives", min=0,
                                              help="With --head probe: fewer validation positives than this and the "
                                              "probe is kept, the body not fine-tuned (0: always fine-tune)."),
        balance: str = typer.Option(defaults.balance, "--balance", help=f"{', '.join(BALANCE_MODES)}: positive "
                                    "loss weighting, oversampling positives, or neither."),
        batch_size: int = typer.Option(defaults.batch_size, "--batch-size", min=2),
        mixup: float = typer.Option(0.0, "--mixup", min=0.0, help="Augment the trained stages with mixup, "
                                    "Beta(alpha, alpha) weights (e.g. 0.2); 0 is off."),
        scale_jitter: float = typer.Option(0.0, "--scale-jitter", min=0.0, help="Augment: one gain per ECG, "
                                           "log-uniform in [1/(1+s), 1+s]."),
        noise_mv: float = typer.Option(0.0, "--noise-mv", min=0.0, help="Augment: white noise of this many mV."),
        cv_folds: Optional[int] = typer.Option(None, "--cv-folds", min=2, help="No separate validation set: K-fold "
                                               "CV on train+val picks the epochs and thresholds, then refits on all."),
        val_fraction: float = typer.Option(defaults.val_fraction, "--val-fraction", help="Inner validation share "
                                           "when the validation split has no positives."),
        threshold: str = typer.Option(defaults.threshold_rule, "--threshold", help="Threshold rule fitted on "
                                      "validation: youden, 'sens>=0.9', 'spec>=0.95' or a number."),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars (stderr)."),
    ) -> None:
        """Fine-tune a foundation model for labels it never saw, from few examples.

        Attaches a new head for the labels, trains with the chosen strategy (early stopping on validation AUC, positive
        weighting for rare labels), fits thresholds on validation data, and writes a model that `ecgfm predict` and
        `ecgfm evaluate` accept. Re-running the same command resumes an interrupted run.

        Example: ecgfm finetune --from runs/fm/best.pt --labels DIG --ptbxl ../shared/data/ptbxl --out runs/ft-dig
        """
        from rich.table import Table

        from ecgfm.transfer.finetune import finetune

        with user_errors():
            names = parse_list(labels)
            config = FinetuneConfig(
                strategy=strategy, epochs=epochs, patience=patience or None, lr=lr, body_lr_scale=body_lr_scale,
                layer_lr_decay=layer_lr_decay, warmup_epochs=warmup_epochs, new_head=head, freeze_bn=freeze_bn,
                min_val_positives=min_val_positives, balance=balance, mixup=mixup, scale_jitter=scale_jitter,
                noise_mv=noise_mv,
                batch_size=batch_size, cv_folds=cv_folds, val_fraction=val_fraction, threshold_rule=threshold,
                seed=seed, device=device, num_threads=threads, progress=progress)
            model, info = load_foundation_model(source)
            data = labelled_data(names, info, ptbxl, store, manifest, task, train_folds, val_folds, "", progress)
            train, val = data.part("train"), data.part("val")
            if cv_folds:
                train, val = data.part("train", "val"), None
            elif not len(val) or not (val.Y == 1).any():
                console.print("the validation split has no positives: holding out an inner patient-level split "
                              f"({val_fraction:.0%}) of the training data")
                val = None
            if not (train.Y == 1).any():
                raise ValueError(f"no positive training records for {names}")
            console.print(f"fine-tuning ({strategy}) {info.arch} for {names} on {len(train)} ECGs "
                          f"({int((train.Y == 1).sum())} positive labels); run folder {out}")
            result = finetune((model, info), train, val, config=config, run_dir=out, resume=True)
        table = Table(title="validation")
        for column in ("label", "description", "AUC", "threshold"):
            table.add_column(column)
        for name in result.info.labels:
            auc = result.val_auc.get(name, float("nan"))
            thr = result.info.thresholds.get(name)
            table.add_row(name, result.info.label_descriptions.get(name, ""), f"{auc:.3f}",
                          "-" if thr is None else f"{thr:.3f}")
        console.print(table)
        console.print(f"model: {out / 'model'} (or {out / 'best.pt'}); "
                      f"e.g. ecgfm predict ECG_FILES --model {out / 'model'}")
