"""``ecgfm finetune``: adapt a foundation model to new labels (a thin shell over :func:`ecgfm.transfer.finetune`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, user_errors
from ecgfm.cli.options import (ConfigFile, Data, Device, Manifest, Model, Progress, Ptbxl, Store, Threads,
                               TrainFolds, ValFolds, settings, source_kwargs, split_list)


def register(app: typer.Typer) -> None:
    @app.command("finetune")
    def finetune_command(
        labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated new labels (PTB-XL statements, or "
                                   "label columns of the manifest/store); one label = binary, several = multi-label."),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (best.pt, model/, summary.json, stages)."),
        model: Model = "pretrained",
        data: Data = None,
        ptbxl: Ptbxl = None,
        manifest: Manifest = None,
        store: Store = None,
        train_folds: TrainFolds = "1-8",
        val_folds: ValFolds = "9",
        strategy: str = typer.Option("full", "--strategy", help="full (default: linear probe, then discriminative "
                                     "fine-tuning, or the whole network at the pre-training rate when that validates "
                                     "better; --set whole_body=false for the first alone), linear (probe only), "
                                     "gradual (ULMFiT unfreezing) or scratch."),
        config_file: ConfigFile = None,
        set_: Optional[list[str]] = typer.Option(None, "--set", help="A FinetuneConfig setting KEY=VALUE "
                                                 "(repeatable), e.g. --set epochs=20 --set new_head=fc --set "
                                                 "min_val_positives=0; training options by name (epochs, lr, "
                                                 "batch_size, patience, mixup...)."),
        seed: int = typer.Option(0, "--seed"),
        device: Device = "auto",
        threads: Threads = None,
        progress: Progress = True,
    ) -> None:
        """Fine-tune a foundation model for labels it never saw, from few examples.

        Attaches a new head for the labels, trains with the chosen strategy (early stopping on validation AUC, positive
        weighting for rare labels), fits thresholds on validation data, and writes a model that `ecgfm predict` and
        `ecgfm evaluate` take (--model OUT). Re-running the same command resumes an interrupted run.

        Example: ecgfm finetune --model runs/fm --labels DIG --ptbxl ../shared/data/ptbxl --out runs/ft-dig
        """
        from rich.table import Table

        from ecgfm.datasets import load_labelled
        from ecgfm.models import load
        from ecgfm.transfer.finetune import FinetuneConfig, finetune, finetune_data

        with user_errors():
            names = split_list(labels)
            config = FinetuneConfig.for_strategy(strategy, seed=seed, device=device, num_threads=threads,
                                                 progress=progress, **settings(config_file, set_))
            foundation = load(model)
            labelled = load_labelled(**source_kwargs(data, ptbxl, manifest, store), labels=names,
                                     pipeline=foundation.info.pipeline(), train_folds=train_folds,
                                     val_folds=val_folds, test_folds=(), progress=progress)
            train, val = finetune_data(labelled, config)
            if val is None and not config.cv_folds:
                console.print("the validation records hold no positives: holding out an inner patient-level split "
                              f"({config.val_fraction:.0%}) of the training records")
            console.print(f"fine-tuning ({strategy}) {foundation.info.arch} for {names} on {len(train)} ECGs "
                          f"({int((train.Y == 1).sum())} positive labels); run folder {out}")
            result = finetune(foundation, train, val, config=config, run_dir=out, resume=True)
        table = Table(title="validation")
        for column in ("label", "description", "AUC", "threshold"):
            table.add_column(column)
        for name in result.info.labels:
            auc = result.val_auc.get(name, float("nan"))
            thr = result.info.thresholds.get(name)
            table.add_row(name, result.info.label_descriptions.get(name, ""), f"{auc:.3f}",
                          "-" if thr is None else f"{thr:.3f}")
        console.print(table)
        console.print(f"model: {out / 'model'}; e.g. ecgfm predict ECG_FILES --model {out}")
