"""``ecgfm pretrain``: train a foundation model from scratch (a thin shell over :func:`ecgfm.training.pretrain`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, user_errors
from ecgfm.cli.options import (ConfigFile, Data, Device, Labels, Manifest, Progress, Ptbxl, Store, Threads,
                               apply_settings, settings, source_kwargs, split_list)


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    def pretrain_command(
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (config.json, metrics.jsonl, last.pt, "
                                 "best.pt, pretrained/)."),
        recipe: str = typer.Option("xresnet1d50", "--recipe", help="A named recipe: 'anylead' (the shipped "
                                   "default: one network distilled from default8, any lead set), 'default8' (the "
                                   "ensemble, its teacher), 'xresnet1d50', "
                                   "'xresnet1d101', 'inception1d' (ecgfm.training.recipes)."),
        arch: Optional[str] = typer.Option(None, "--arch", help="Instead of a recipe: one network of this "
                                           "architecture (see `ecgfm models`) with the Strodthoff settings."),
        arch_kw: Optional[list[str]] = typer.Option(None, "--arch-kw", help="With --arch: an architecture option "
                                                    "KEY=VALUE (JSON value; repeatable), e.g. --arch-kw "
                                                    "'widths=[32,64,96,128]'."),
        data: Data = None,
        ptbxl: Ptbxl = None,
        manifest: Manifest = None,
        store: Store = None,
        task: str = typer.Option("all", "--task", help="PTB-XL label task: all, diagnostic, subdiagnostic, "
                                 "superdiagnostic, form or rhythm."),
        labels: Labels = None,
        exclude_labels: Optional[str] = typer.Option(None, "--exclude-labels", help="Comma-separated statements held out of "
                                              "pre-training (e.g. to fine-tune on them later)."),
        min_count: Optional[int] = typer.Option(None, "--min-count", min=1, help="Keep labels with at least this "
                                                "many training positives (default: the recipe's, 10)."),
        teacher: Optional[str] = typer.Option(None, "--teacher", help="Distilling recipes: the teacher (a shipped "
                                              "name or a model folder) instead of the recipe's; with "
                                              "--exclude-labels it must not predict them."),
        config_file: ConfigFile = None,
        set_: Optional[list[str]] = typer.Option(None, "--set", help="A training setting KEY=VALUE of TrainConfig (repeatable), "
                                      "e.g. --set epochs=30 --set lr=0.003 --set window=500 (window and stride in "
                                      "samples at the data's rate); applied to every member of an ensemble."),
        device: Device = "auto",
        threads: Threads = None,
        workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
        jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Ensemble recipes: members trained at once, "
                                           "each with threads / jobs CPU threads or its own GPU."),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
        progress: Progress = True,
    ) -> None:
        """Pre-train a multi-label ECG model (default: PTB-XL statements, folds 1-8 train, fold 9 validation).

        Keeps the epoch with the best validation macro-AUC (best.pt) and writes a resumable last.pt every epoch.

        Example: ecgfm pretrain --ptbxl ../shared/data/ptbxl --out runs/fm

        The shipped model (distilled from the shipped default8; --teacher runs/fm8 for your own):
        ecgfm pretrain --ptbxl ../shared/data/ptbxl --recipe anylead --threads 2 --out runs/anylead

        Its teacher: ecgfm pretrain --ptbxl ../shared/data/ptbxl --recipe default8 --threads 2 --out runs/fm8

        Multi-GPU (DDP, one process per GPU): torchrun --nproc_per_node 8 --no-python ecgfm pretrain --store
        /data/store --set batch_size=128 --workers 8 --out runs/fm  (see docs/scaling.md)
        """
        from ecgfm.training.config import TrainConfig
        from ecgfm.training.pretrain import pretrain, training_data
        from ecgfm.training.recipes import custom_recipe, get_recipe

        with user_errors():
            changes = settings(config_file, set_)
            if arch_kw and not arch:
                raise ValueError("--arch-kw sets options of the architecture given by --arch")
            chosen = custom_recipe(arch, settings(None, arch_kw)) if arch else get_recipe(recipe)
            if jobs is not None and not chosen.members:
                raise ValueError(f"--jobs trains the members of an ensemble recipe side by side; {chosen.name} is one "
                                 "network")
            if changes:
                apply_settings(TrainConfig(), changes)  # an unknown key fails here, naming the known ones
                chosen = chosen.with_config(**changes)
            dataset = training_data(chosen, labels=split_list(labels) or None, exclude=split_list(exclude_labels),
                                    min_count=min_count, task=task, progress=progress,
                                    **source_kwargs(data, ptbxl, manifest, store))
            console.print(f"pre-training [bold]{chosen.name}[/] on {len(dataset.part('train'))} ECGs "
                          f"({len(dataset.labels)} labels), validating on {len(dataset.part('val'))}; run folder {out}")
            result = pretrain(dataset, chosen, run_dir=out, resume=resume, jobs=jobs, teacher=teacher,
                              report=lambda line: console.print(line), device=device, workers=workers,
                              num_threads=threads, seed=seed, progress=progress)
        score = f"validation macro-AUC {result.best_score:.4f}" if result.best_score is not None else "no validation"
        console.print(f"done: {chosen.name} ({score}); model in {out / 'pretrained'}")
