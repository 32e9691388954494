"""``ecgfm compare``: fine-tuning vs training from scratch (vs frozen embeddings) on novel labels, by training size.

A thin shell over :func:`ecgfm.transfer.compare.run_comparison` and :func:`ecgfm.transfer.report.write_compare_report`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, err_console, is_interactive, user_errors
from ecgfm.cli.options import (ConfigFile, Data, Device, Manifest, Model, Progress, Ptbxl, Store, TestFolds, Threads,
                               TrainFolds, ValFolds, apply_settings, command_line, settings, source_kwargs,
                               split_list)


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_command(
        ctx: typer.Context,
        labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated novel labels, e.g. DIG,1AVB,LAO/LAE."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (cells/, report.html, table.md, "
                                 "data_efficiency.png, compare.json, summary.csv); re-running resumes."),
        model: Model = "pretrained",
        data: Data = None,
        ptbxl: Ptbxl = None,
        manifest: Manifest = None,
        store: Store = None,
        train_folds: TrainFolds = "1-8",
        val_folds: ValFolds = "9",
        test_folds: TestFolds = "10",
        quick: bool = typer.Option(False, "--quick", help="Preset for a first look: sizes 10,25, one seed, a 12-epoch "
                                   "budget, 500 bootstrap resamples (settings still override)."),
        sizes: Optional[str] = typer.Option(None, "--sizes", help="Training positives (patients) per size, "
                                            "e.g. 10,25,50,100,all (the default)."),
        seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Number of seeds (training draws; CV "
                                            "repeats); default 3, quick 1."),
        split: str = typer.Option("fixed", "--split", help="fixed (held-out test records: --test-folds or the 'test' "
                                  "split) or cv (repeated patient-level K-fold, pooled out-of-fold)."),
        config_file: ConfigFile = None,
        set_: Optional[list[str]] = typer.Option(None, "--set", help="A CompareConfig setting KEY=VALUE (repeatable), "
                                                 "e.g. --set neg_ratio=4 --set arms='[\"finetune\",\"scratch\"]'; "
                                                 "the fine-tuning arm's as finetune.KEY (finetune.strategy, "
                                                 "finetune.train.epochs, finetune.min_val_positives...)."),
        device: Device = "auto",
        threads: Threads = None,
        progress: Progress = True,
    ) -> None:
        """Fine-tuned foundation vs the same network trained from scratch (vs frozen embeddings + logistic regression)
        on labels the foundation never saw, at growing training sizes and several seeds, on identical patient-level
        splits with identical budgets. Writes AUCs with patient-bootstrap 95% CIs, paired differences with DeLong
        p-values, a paper-style table, a data-efficiency plot, JSON/CSV and one HTML report. Killed runs resume.

        Example: ecgfm compare --model runs/fm-heldout --labels DIG,1AVB,LAO/LAE --ptbxl ../shared/data/ptbxl --quick --out runs/compare-quick
        """
        import torch

        from ecgfm.datasets import load_labelled
        from ecgfm.models import load
        from ecgfm.transfer.compare import run_comparison
        from ecgfm.transfer.config import CompareConfig, quick_config
        from ecgfm.transfer.report import checks_text, markdown_table, write_compare_report

        with user_errors():
            names = split_list(labels)
            config = quick_config(names) if quick else CompareConfig(labels=names)
            config = dataclasses.replace(config, split=split, sizes=split_list(sizes) or config.sizes,
                                         seeds=list(range(seeds)) if seeds else config.seeds)
            config = apply_settings(config, settings(config_file, set_))
            train = dataclasses.replace(config.finetune.train, device=device, num_threads=threads)
            config = dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, train=train),
                                         scratch=None)
            if threads:
                torch.set_num_threads(threads)
            foundation = load(model)
            labelled = load_labelled(**source_kwargs(data, ptbxl, manifest, store), labels=names,
                                     pipeline=foundation.info.pipeline(), train_folds=train_folds,
                                     val_folds=val_folds, test_folds=test_folds, progress=progress)
            console.print(f"comparing {', '.join(config.arms)} on {names}: sizes {config.sizes}, seeds "
                          f"{config.seeds}, split {config.split}; output {out}")
            result = run_comparison(foundation, labelled, config, out, log=console.print,
                                    progress=_progress(progress), foundation_name=model)
            paths = write_compare_report(result, out, command=command_line(ctx))
        console.print(markdown_table(result), markup=False, highlight=False, soft_wrap=True)
        console.print(checks_text(result), markup=False, highlight=False)
        for skipped in result.skipped:
            console.print(f"not run: {skipped['label']} n={skipped['size']} ({skipped['reason']})")
        console.print(f"report: {paths['html']}")


def _progress(enabled: bool):
    """Progress over cells on stderr: a tqdm bar when interactive, else one line per cell started."""
    if not enabled:
        return None
    from tqdm import tqdm

    state: dict = {}

    def update(done: int, total: int, cell: str, event: str) -> None:
        if not is_interactive():
            if event == "start":
                err_console.print(f"[{done + 1}/{total}] {cell}", highlight=False)
            return
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, unit="cell", desc="compare")
        bar.set_postfix_str(cell)
        bar.update(done - bar.n)

    return update
