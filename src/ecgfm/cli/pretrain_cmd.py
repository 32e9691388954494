"""``ecgfm pretrain``: train a foundation model from scratch (a thin shell over :func:`ecgfm.training.pretrain`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ecgfm.cli.common import console, user_errors


def parse_model_kwargs(items: list[str]) -> dict:
    """``["widths=[32,64]", "se=true"]`` -> ``{"widths": [32, 64], "se": True}`` (values parsed as JSON)."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-kw expects KEY=VALUE, got {item!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value  # a bare string
    return kwargs


def register(app: typer.Typer) -> None:
    from ecgfm.labels.ptbxl import TASKS
    from ecgfm.training.config import TrainConfig

    defaults = TrainConfig()

    @app.command("models")
    def models_command(
        fs: float = typer.Option(100.0, "--fs", help="Sampling rate for the FLOP count of a 10-s ECG."),
    ) -> None:
        """List the registered architectures with their parameters and FLOPs per 10-s 12-lead ECG.

        Example: ecgfm models --fs 100
        """
        from rich.table import Table

        from ecgfm.models import count_flops, count_params, create, list_models

        table = Table(title=f"ecgfm architectures (FLOPs for one 10-s 12-lead ECG at {fs:g} Hz, 71 labels)")
        for column in ("model", "parameters", "GFLOPs", "embedding size", "description"):
            table.add_column(column, justify="left" if column in ("model", "description") else "right")
        from ecgfm.models.registry import _MODELS

        for name in list_models():
            doc = (_MODELS[name].__doc__ or "").strip().splitlines()[0]
            try:
                net = create(name, 71)
            except (TypeError, ValueError):  # e.g. an ensemble is built from trained members, not from defaults
                table.add_row(name, "-", "-", "-", doc)
                continue
            table.add_row(name, f"{count_params(net) / 1e6:.2f} M",
                          f"{count_flops(net, (1, 12, int(round(10 * fs)))) / 1e9:.2f}", str(net.num_features), doc)
        console.print(table)

    @app.command("pretrain")
    def pretrain_command(
        out: Path = typer.Option(..., "--out", "-o", help="Run directory (config.json, metrics.jsonl, last.pt, "
                                 "best.pt, pretrained/)."),
        ptbxl: Optional[Path] = typer.Option(None, "--ptbxl", help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)."),
        store: Optional[Path] = typer.Option(None, "--store", help="Train on a store built by `ecgfm ingest` (its "
                                             "train split; val split for validation) instead of PTB-XL."),
        task: str = typer.Option("all", "--task", help=f"PTB-XL label task: {', '.join(TASKS)}."),
        exclude_labels: Optional[str] = typer.Option(None, "--exclude-labels", help="Comma-separated statements to "
                                                     "hold out of pre-training (e.g. to fine-tune on them later)."),
        min_count: int = typer.Option(10, "--min-count", min=1, help="Keep labels with at least this many "
                                      "positives in the training folds."),
        fs: float = typer.Option(100.0, "--fs", help="Sampling rate of the model input (Hz); records are resampled."),
        recipe: Optional[str] = typer.Option(None, "--recipe", help="A named recipe (ecgfm.training.recipes, e.g. "
                                             "'default8', the shipped 8-member ensemble, 'default6', the 6-member "
                                             "one shipped before, or 'xresnet1d50'): sets the "
                                             "model(s), --fs, --min-count and the training options; runtime options (--device, --threads, --seed, "
                                             "--workers, --resume) still apply."),
        model: str = typer.Option("xresnet1d50", "--model", help="Architecture (see `ecgfm models`)."),
        model_kw: List[str] = typer.Option([], "--model-kw", help="Architecture option KEY=VALUE (JSON value); "
                                           "repeatable, e.g. --model-kw 'widths=[32,64,96,128]'."),
        epochs: int = typer.Option(defaults.epochs, "--epochs", min=1),
        batch_size: int = typer.Option(defaults.batch_size, "--batch-size", min=1),
        lr: float = typer.Option(defaults.lr, "--lr", help="Peak learning rate (AdamW)."),
        weight_decay: float = typer.Option(defaults.weight_decay, "--weight-decay"),
        schedule: str = typer.Option(defaults.schedule, "--schedule", help="onecycle, cosine or constant."),
        window: float = typer.Option(2.5, "--window", help="Training crop / test window in seconds (0: whole "
                                     "records); test windows step by half a window."),
        aggregate: str = typer.Option(defaults.aggregate, "--aggregate", help="Combine window logits by max or mean."),
        class_weights: str = typer.Option("none", "--class-weights", help="none, balanced (pos_weight = neg/pos) "
                                          "or sqrt."),
        patience: Optional[int] = typer.Option(None, "--patience", min=1, help="Stop after this many epochs "
                                               "without a better validation macro-AUC."),
        grad_accum: int = typer.Option(1, "--grad-accum", min=1, help="Optimiser step every N batches."),
        ema_decay: Optional[float] = typer.Option(None, "--ema-decay", help="Keep an exponential moving average of "
                                                  "the weights with this decay per step (e.g. 0.995); validation "
                                                  "and the saved model use it."),
        scale_jitter: float = typer.Option(0.0, "--scale-jitter", min=0.0, help="Augment: one gain per ECG, "
                                           "log-uniform in [1/(1+s), 1+s] (e.g. 0.1)."),
        noise_mv: float = typer.Option(0.0, "--noise-mv", min=0.0, help="Augment: white noise of this standard "
                                       "deviation in mV (e.g. 0.02)."),
        mixup: float = typer.Option(0.0, "--mixup", min=0.0, help="Augment: mixup with Beta(alpha, alpha) "
                                    "weights (e.g. 0.2); 0 is off."),
        compile_model: bool = typer.Option(False, "--compile/--no-compile",
                                           help="torch.compile the training forward pass (useful on GPU)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (default: on for CUDA; on "
                                           "CPUs with native bf16 about 1.2x faster, see docs/models.md)."),
        channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help="Run the "
                                                     "1-D convolutions as 2-D channels-last ones (xresnet1d, "
                                                     "inception1d): the same parameters, faster on CPU (see "
                                                     "docs/models.md); float rounding differs, so off by default."),
        workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (in all)."),
        jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="With --recipe: train this many ensemble "
                                           "members at once, each with threads / jobs CPU threads or its own GPU "
                                           "(default: the recipe's; on 2 CPU cores two single-thread members finish "
                                           "about 1.2x sooner than one after the other)."),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (stderr)."),
    ) -> None:
        """Pre-train a multi-label ECG model on PTB-XL statements (folds 1-8 train, fold 9 validation).

        Keeps the epoch with the best validation macro-AUC (best.pt) and writes a resumable last.pt every epoch.

        Example: ecgfm pretrain --ptbxl ../shared/data/ptbxl --task all --min-count 10 --epochs 50 --out runs/fm

        The shipped ensemble recipe (trains two members at a time): ecgfm pretrain --ptbxl ../shared/data/ptbxl
        --recipe default8 --threads 2 --out runs/fm8

        Multi-GPU (DDP, one process per GPU): torchrun --nproc_per_node 8 --no-python ecgfm pretrain --store
        /data/store --batch-size 128 --workers 8 --out runs/fm  (see docs/scaling.md)
        """
        from ecgfm.training.pretrain import pretrain, pretrain_recipe, ptbxl_training_data
        from ecgfm.training.recipes import get_recipe

        with user_errors():
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
            if class_weights not in ("none", "balanced", "sqrt"):
                raise ValueError(f"--class-weights must be none, balanced or sqrt, got {class_weights!r}")
            if store is not None:
                from ecgfm.datasets.store import ECGStore

                fs = ECGStore(store).fs  # a store fixes the rate: crop windows are in its samples
            config = TrainConfig(
                epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, schedule=schedule,
                window=int(round(window * fs)) if window > 0 else None, aggregate=aggregate,
                class_weights=None if class_weights == "none" else class_weights, patience=patience,
                grad_accum=grad_accum, ema_decay=ema_decay, scale_jitter=scale_jitter, noise_mv=noise_mv, mixup=mixup,
                compile=compile_model, device=device, amp=amp, channels_last=bool(channels_last),
                workers=workers, num_threads=threads, seed=seed, progress=progress,
            )
            chosen = get_recipe(recipe) if recipe else None
            if jobs is not None and not (chosen is not None and chosen.members):
                raise ValueError("--jobs trains the members of an ensemble recipe at once; give --recipe with members "
                                 "(e.g. --recipe default8)")
            if chosen is not None:
                fs, min_count, model = chosen.fs, chosen.min_count, chosen.model
            kwargs = parse_model_kwargs(model_kw)
            excluded = [s.strip() for s in exclude_labels.split(",") if s.strip()] if exclude_labels else []
            # Data sources build a TrainingData (Datasets + labels + preprocessing spec); PTB-XL is the built-in one.
            if store is not None:
                from ecgfm.datasets.store import store_training_data

                data = store_training_data(store, min_count=min_count, exclude_labels=excluded)
            else:
                data = ptbxl_training_data(ptbxl, task=task, fs=fs, min_count=min_count, exclude_labels=excluded,
                                           progress=progress)
            console.print(f"pre-training [bold]{model}[/] on {len(data.train)} ECGs ({len(data.labels)} labels), "
                          f"validating on {len(data.val) if data.val is not None else 0}; run folder {out}")
            if chosen is not None:
                runtime = dict(device=device, workers=workers, num_threads=threads, seed=seed, progress=progress)
                for name, value in (("amp", amp), ("channels_last", channels_last)):
                    if value is not None:  # unset: each member keeps what its recipe gives it
                        runtime[name] = value
                result = pretrain_recipe(data, chosen, run_dir=out, resume=resume, jobs=jobs,
                                         report=lambda line: console.print(line), **runtime)
            else:
                result = pretrain(data, model=model, model_kwargs=kwargs, config=config, run_dir=out, resume=resume)
        if chosen is not None and chosen.members:
            score = f"validation macro-AUC {result.best_score:.4f}" if result.best_score is not None else "no validation"
            console.print(f"done: ensemble of {len(chosen.members)} members ({score}); model in {out / 'best.pt'}")
            return
        last = result.history[-1] if result.history else {}
        best = f"best validation macro-AUC {result.best_score:.4f}" if data.val is not None else "no validation set"
        console.print(f"done: {len(result.history)} epochs, {best} at epoch {result.best_epoch}"
                      f"{' (stopped early)' if result.stopped_early else ''}; "
                      f"{last.get('train_ecgs_per_s', 0):.0f} ECGs/s; model in {out / 'best.pt'}")
