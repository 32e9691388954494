"""``ecgfm compare``: fine-tuning vs training from scratch (vs frozen embeddings) on novel labels, by training size.

A thin shell over :func:`ecgfm.transfer.compare.run_comparison`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, err_console, is_interactive, user_errors


def register(app: typer.Typer) -> None:
    from ecgfm.transfer.compare import ARMS, QUICK_OVERRIDES
    from ecgfm.transfer.finetune import BALANCE_MODES, FinetuneConfig

    defaults = FinetuneConfig()

    @app.command("compare")
    def compare_command(
        ctx: typer.Context,
        source: Optional[str] = typer.Option(None, "--from", help="Foundation model (checkpoint or pretrained "
                                             "folder) pre-trained WITHOUT the labels compared."),
        labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated novel labels, e.g. DIG,1AVB,LAO/LAE."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (cells/, report.html, table.md, "
                                 "data_efficiency.png, compare.json, summary.csv); re-running resumes."),
        ptbxl: Optional[Path] = typer.Option(None, "--ptbxl", help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)."),
        store: Optional[Path] = typer.Option(None, "--store", help="An ingested store instead of PTB-XL."),
        manifest: Optional[Path] = typer.Option(None, "--manifest", help="A manifest CSV/Parquet instead of PTB-XL."),
        task: str = typer.Option("all", "--task", help="PTB-XL label task the labels come from."),
        quick: bool = typer.Option(False, "--quick", help=f"Preset for a first look: sizes "
                                   f"{','.join(map(str, QUICK_OVERRIDES['sizes']))}, one seed, "
                                   f"{QUICK_OVERRIDES['epochs']} epochs, {QUICK_OVERRIDES['n_bootstrap']} bootstrap "
                                   "resamples (explicit options still override)."),
        sizes: Optional[str] = typer.Option(None, "--sizes", help="Training positives (patients) per size, "
                                            "e.g. 10,25,50,100,all (the default)."),
        neg_ratio: float = typer.Option(9.0, "--neg-ratio", help="Negative patients drawn per positive (0: all)."),
        seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Number of seeds (training draws; CV "
                                            "repeats); default 3, quick 1."),
        arms: str = typer.Option(",".join(ARMS), "--arms", help="Arms to run: finetune, scratch, embeddings."),
        split: str = typer.Option("fixed", "--split", help="fixed (held-out test split: PTB-XL --test-folds, or the "
                                  "'test' split) or cv (repeated patient-level K-fold, pooled out-of-fold)."),
        cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="Folds per repeat with --split cv."),
        train_folds: str = typer.Option("1-8", "--train-folds", help="PTB-XL folds of the training pool."),
        val_folds: str = typer.Option("9", "--val-folds", help="More PTB-XL folds of the training pool (the compare "
                                      "draws its own inner validation from the pool)."),
        test_folds: str = typer.Option("10", "--test-folds", help="PTB-XL held-out test folds (--split fixed)."),
        val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of each training set held out for "
                                           "early stopping."),
        strategy: str = typer.Option("full", "--strategy", help="Fine-tuning arm strategy: full, linear or gradual."),
        epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help=f"Epoch budget of both trained arms "
                                             f"(default {defaults.epochs}, quick {QUICK_OVERRIDES['epochs']})."),
        patience: Optional[int] = typer.Option(None, "--patience", min=0, help="Early-stopping patience (0: none)."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Fine-tuning head learning rate (default 1e-3)."),
        balance: str = typer.Option(defaults.balance, "--balance", help=f"{', '.join(BALANCE_MODES)}."),
        min_val_positives: int = typer.Option(defaults.min_val_positives, "--min-val-positives", min=0,
                                              help="Fine-tuning arm: with fewer validation positives than this, "
                                              "keep the probe and do not fine-tune the body (0: always fine-tune)."),
        n_bootstrap: Optional[int] = typer.Option(None, "--bootstrap", min=0, help="Bootstrap resamples (default 1000, quick 500)."),
        allow_seen_labels: bool = typer.Option(False, "--allow-seen-labels", help="Run even if the foundation was "
                                               "trained on the labels (not a novel-label experiment)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress (stderr)."),
    ) -> None:
        """Fine-tuned foundation vs the same network trained from scratch (vs frozen embeddings + logistic regression)
        on labels the foundation never saw, at growing training sizes and several seeds, on identical patient-level
        splits with identical budgets. Writes AUCs with patient-bootstrap 95% CIs, paired differences with DeLong
        p-values, a paper-style table, a data-efficiency plot, JSON/CSV and one HTML report. Killed runs resume.

        Example: ecgfm compare --from runs/fm-heldout/best.pt --labels DIG,1AVB,LAO/LAE --ptbxl ../shared/data/ptbxl --quick --out runs/compare-quick
        """
        from ecgfm.cli.evaluate_cmd import command_line
        from ecgfm.cli.finetune_cmd import labelled_data, load_foundation_model, parse_list
        from ecgfm.transfer.compare import CompareConfig, quick_config, run_comparison

        with user_errors():
            names = parse_list(labels)
            base = quick_config(names) if quick else CompareConfig(labels=names)
            ft = base.finetune
            ft = dataclasses.replace(
                ft, strategy=strategy, epochs=epochs or ft.epochs,
                patience=ft.patience if patience is None else (patience or None), lr=lr, balance=balance,
                min_val_positives=min_val_positives, device=device, num_threads=threads)
            config = dataclasses.replace(
                base, sizes=parse_list(sizes) if sizes else base.sizes, neg_ratio=neg_ratio or None,
                seeds=list(range(seeds)) if seeds else base.seeds, arms=parse_list(arms), split=split,
                cv_folds=cv_folds, val_fraction=val_fraction, finetune=ft, scratch=None,
                n_bootstrap=base.n_bootstrap if n_bootstrap is None else n_bootstrap,
                allow_seen_labels=allow_seen_labels)
            if threads:
                import torch

                torch.set_num_threads(threads)
            model, info = load_foundation_model(source)
            data = labelled_data(names, info, ptbxl, store, manifest, task, train_folds, val_folds, test_folds,
                                 progress)
            console.print(f"comparing {', '.join(config.arms)} on {names}: sizes {config.sizes}, seeds "
                          f"{config.seeds}, split {config.split}; output {out}")
            bar = _progress(progress)
            result, paths = run_comparison((model, info), data, config, out, log=console.print, progress=bar,
                                           command=command_line(ctx), foundation_name=source or "default")
        from ecgfm.transfer.report import checks_text, markdown_table

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
