"""``ecgfm predict``: findings for ECG files of any supported format, one row per ECG."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ecgfm.cli.common import console, err_console, fail, user_errors


def print_failures(failures, limit: int = 50) -> None:
    """A table of the files that failed and why (stderr), at most ``limit`` rows."""
    from rich.table import Table

    table = Table(title=f"{len(failures)} file(s) failed", title_justify="left", show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("reason", overflow="fold")
    for failure in failures[:limit]:
        table.add_row(failure.source, failure.reason)
    if len(failures) > limit:
        table.add_row(f"... and {len(failures) - limit} more", "(see --failures FILE for the full list)")
    err_console.print(table)


def print_predictions(report, limit: int = 100) -> None:
    """A compact table of the findings per ECG (stdout), for runs without ``--output``."""
    from rich.table import Table

    table = Table(title=f"{len(report.predictions)} ECG(s)", title_justify="left")
    table.add_column("record")
    table.add_column("findings (probability)", overflow="fold")
    for pred in report.predictions[:limit]:
        findings = ", ".join(f"{f.label} {f.probability:.2f} ({f.description})" for f in pred.findings) or "-"
        table.add_row(str(pred.record_id), findings)
    if len(report.predictions) > limit:
        table.add_row("...", f"{len(report.predictions) - limit} more (use --output FILE)")
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        paths: List[str] = typer.Argument(..., help="ECG files, folders (searched recursively) or glob patterns."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model folder (model.safetensors + "
                                            "config.json), .pt checkpoint or .onnx file; default: the shipped model."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results to .csv, .json or "
                                              ".parquet (by extension); default: a table on screen."),
        failures_file: Optional[Path] = typer.Option(None, "--failures", help="Also write the failed files with "
                                                     "their reasons to this CSV."),
        batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="ECGs per model call."),
        workers: int = typer.Option(2, "--workers", min=0, help="Workers reading and preprocessing files while "
                                    "the model runs (0: read inline)."),
        loader: str = typer.Option("thread", "--loader", help="Workers are threads or processes "
                                   "(a torch DataLoader)."),
        backend: str = typer.Option("torch", "--backend", help="torch or onnx (ONNX Runtime)."),
        device: str = typer.Option("cpu", "--device", help="torch device (torch backend only)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Intra-op threads for the model."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (stderr)."),
        report_html: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML page listing every "
                                                   "record with its top findings and a thumbnail, sortable by "
                                                   "finding, linking to PDF printouts written beside it "
                                                   "(<name>_files/; the first 200 records get thumbnails and "
                                                   "printouts)."),
    ) -> None:
        """Predict findings for ECGs: one row per ECG with every label's probability and the positive findings.

        Reads every supported format at any sampling rate and applies the model's own preprocessing and
        thresholds. Files that fail are listed with the reason; the rest are still predicted.
        Exit code: 0 all predicted, 1 some files failed, 2 usage error.

        Example: ecgfm predict ../shared/data/ptbxl/records100/00000 --output predictions.csv
        """
        from ecgfm.inference.predictor import Predictor, expand_items, output_format

        with user_errors():
            if output is not None:
                output_format(output)
            if backend not in ("torch", "onnx"):
                raise ValueError(f"unknown backend {backend!r}; choose torch or onnx")
            if loader not in ("thread", "process"):
                raise ValueError(f"unknown loader {loader!r}; choose thread or process")
            inputs, missing = expand_items(paths)
            if not inputs:
                print_failures(missing)
                fail("no ECG files to predict")
            predictor = Predictor.from_pretrained(model, device=device, backend=backend, num_threads=threads,
                                                  batch_size=batch_size, num_workers=workers)
        report = predictor.predict_many(inputs, progress=progress, loader=loader)
        report.failures[:0] = missing
        if output is not None:
            report.write(output)
            err_console.print(f"wrote {len(report.predictions)} prediction(s) to {output} "
                              f"({report.seconds:.1f} s)", highlight=False)
        else:
            print_predictions(report)
        if report_html is not None:
            from ecgfm.viewer.batch_report import write_report

            err_console.print(f"wrote {write_report(report, report_html)}", highlight=False)
        if failures_file is not None:  # written even when empty, so scripts can rely on it
            failures_file.parent.mkdir(parents=True, exist_ok=True)
            report.failures_frame().to_csv(failures_file, index=False)
        if report.failures:
            print_failures(report.failures)
            raise typer.Exit(code=1)
