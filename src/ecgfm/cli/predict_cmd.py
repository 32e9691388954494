"""``ecgfm predict``: findings for ECG files of any supported format, one row per ECG."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from ecgfm.cli.common import console, err_console, fail, user_errors
from ecgfm.cli.options import Device, Model, Progress, Threads, Workers


def print_failures(failures, limit: int = 50) -> None:
    """A table of the files that failed and why (stderr), at most ``limit`` rows."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(failures)} file(s) failed", title_justify="left", show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("reason", overflow="fold")
    for failure in failures[:limit]:
        table.add_row(escape(failure.source), escape(failure.reason))
    if len(failures) > limit:
        table.add_row(f"... and {len(failures) - limit} more", "(see --failures FILE for the full list)")
    err_console.print(table)


def print_predictions(predictions, limit: int = 100) -> None:
    """A compact table of the findings per ECG (stdout), for runs without ``--out``."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(predictions)} ECG(s)", title_justify="left")
    table.add_column("record")
    table.add_column("findings (probability)", overflow="fold")
    for pred in predictions[:limit]:
        findings = ", ".join(f"{f.label} {f.probability:.2f} ({f.description})" for f in pred.findings) or "-"
        if pred.abstained:
            findings = f"withheld: {pred.abstained}"
        elif pred.quality_ok is False:
            findings += f" [quality: {'; '.join(pred.quality['problems'])}]"
        notes = f" [{'; '.join(pred.notes)}]" if pred.notes else ""
        table.add_row(escape(str(pred.record_id)), escape(findings + notes))  # file text is not rich markup
    if len(predictions) > limit:
        table.add_row("...", f"{len(predictions) - limit} more (use --out FILE)")
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        paths: List[str] = typer.Argument(..., help="ECG files, folders (searched recursively), glob patterns, or "
                                                    "WFDB record names without .hea."),
        model: Model = "pretrained",
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write one row per ECG to .csv, .json or "
                                           ".parquet (by extension), streamed as it goes; re-running the same "
                                           "command after a kill resumes. Default: a table on screen."),
        failures_file: Optional[Path] = typer.Option(None, "--failures", help="Also write the failed files with "
                                                     "their reasons to this CSV."),
        batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="ECG segments per model call."),
        workers: Workers = 2,
        loader: str = typer.Option("thread", "--loader", help="Workers are threads or processes."),
        backend: str = typer.Option("torch", "--backend", help="torch or onnx (ONNX Runtime)."),
        threshold: Optional[str] = typer.Option(None, "--threshold", help="Operating point: a rule fitted on the "
                                                "model's validation records (f1, youden, 'sens>=0.9', 'spec>=0.95', "
                                                "'ppv>=0.8'), one number, or a JSON/CSV file of label -> threshold; "
                                                "default: the model's own thresholds."),
        on_poor_quality: str = typer.Option("flag", "--on-poor-quality", help="A record failing a signal-quality "
                                            "check: flag (findings plus the problems), abstain (findings withheld, "
                                            "with the reason) or error (the record fails)."),
        device: Device = "auto",
        threads: Threads = None,
        progress: Progress = True,
        report_html: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML page listing every "
                                                   "record with its top findings and a thumbnail, sortable by "
                                                   "finding, linking to PDF printouts written beside it "
                                                   "(<name>_files/; the first 200 records get thumbnails and "
                                                   "printouts)."),
    ) -> None:
        """Predict findings for ECGs: one row per ECG with every label's probability and the positive findings.

        Reads every supported format at any sampling rate and length (long records are read over their whole length
        in the model's input-sized segments) and applies the model's own preprocessing and thresholds. Files that
        fail are listed with the reason; the rest are still predicted.
        Exit code: 0 all predicted, 1 some files failed, 2 usage error.

        Example: ecgfm predict ../shared/data/ptbxl/records100/00000 --out predictions.csv
        """
        from ecgfm.files import check_writable
        from ecgfm.inference import Predictor
        from ecgfm.inference.outputs import PredictionWriter, output_format
        from ecgfm.inference.predictor import expand_items

        with user_errors():
            for path in (out, failures_file, report_html):
                if path is not None:
                    check_writable(path)
            if out is not None:
                output_format(out)
            if loader not in ("thread", "process"):
                raise ValueError(f"unknown loader {loader!r}; choose thread or process")
            inputs, missing = expand_items(paths)
            if not inputs:
                print_failures(missing)
                fail("no ECG files to predict")
            predictor = Predictor.from_pretrained(model, device=device, backend=backend, num_threads=threads,
                                                  batch_size=batch_size, num_workers=workers, threshold=threshold,
                                                  on_poor_quality=on_poor_quality)
        writer = None
        if out is not None:
            key = hashlib.sha256(json.dumps(predictor.info.to_dict(), sort_keys=True).encode()).hexdigest()
            writer = PredictionWriter(out, key, predictor.labels)
            if writer.done:
                err_console.print(f"resuming: {len(writer.done)} ECG(s) already in {writer.partial}", highlight=False)
                inputs = [item for item in inputs if os.path.abspath(str(item)) not in writer.done]
        failures, shown = list(missing), []
        results = predictor.iter_predict(inputs, loader=loader)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(inputs), unit="ECG", desc="predict")
        for result in results:
            if hasattr(result, "reason"):
                failures.append(result)
            else:
                if writer is not None:
                    writer.write(result)
                if writer is None or report_html is not None:  # kept only when shown or reported
                    shown.append(result)
        if writer is not None:
            err_console.print(f"wrote {writer.close()}", highlight=False)
        else:
            print_predictions(shown)
        if report_html is not None:
            from ecgfm.inference.outputs import PredictionReport
            from ecgfm.viewer.batch_report import write_report

            written = write_report(PredictionReport(predictions=shown, failures=failures), report_html)
            err_console.print(f"wrote {written}", highlight=False)
        if failures_file is not None:  # written even when empty, so scripts can rely on it
            from ecgfm.inference.outputs import PredictionReport

            PredictionReport(failures=failures).failures_frame().to_csv(failures_file, index=False)
        if failures:
            print_failures(failures)
            raise typer.Exit(code=1)
