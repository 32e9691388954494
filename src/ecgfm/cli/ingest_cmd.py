"""``ecgfm ingest``: build a training store from PTB-XL, a manifest, or a Challenge-style folder."""
from __future__ import annotations

import json

import typer
from rich.table import Table

from ecgfm.cli.common import console, err_console, user_errors


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_command(
        source: str = typer.Argument(..., help="PTB-XL folder, manifest (.csv/.tsv/.parquet) or Challenge-style "
                                               "folder of WFDB .hea files with '# Dx:' comments."),
        out: str = typer.Argument(..., help="Store folder to create (or to resume, if an ingest was interrupted)."),
        kind: str = typer.Option("auto", "--kind", help="Source kind: auto, ptbxl, manifest or challenge."),
        fs: float = typer.Option(100.0, "--fs", help="Sampling rate of the store (Hz)."),
        seconds: float = typer.Option(10.0, "--seconds", help="Record length (s): centre-cropped or zero-padded."),
        dtype: str = typer.Option("int16", "--dtype", help="int16 (exact to --uv-per-lsb) or float16 (mV)."),
        uv_per_lsb: float = typer.Option(1.0, "--uv-per-lsb", help="int16 resolution in microvolts per count "
                                                                   "(1 uV spans +-32.8 mV; clipping is counted)."),
        highpass: float = typer.Option(0.5, "--highpass", help="Baseline-wander high-pass cut-off (Hz); 0 = off."),
        lowpass: float = typer.Option(0.0, "--lowpass", help="Low-pass cut-off (Hz); 0 = off."),
        shard_size: int = typer.Option(256, "--shard-size", help="Records per shard file (unit of work and resume)."),
        workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (0 = all CPUs)."),
        task: str = typer.Option("all", "--task", help="PTB-XL label task (all, diagnostic, superdiagnostic, ...)."),
        labels: str = typer.Option("scp", "--labels", help="Challenge labels: scp (mapped from SNOMED) or snomed."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store built differently."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Convert ECG files into a compressed, chunked training store read on demand by StoreDataset.

        Parallel, resumable (re-run the same command after a kill: finished shards are kept) and idempotent.
        Files that cannot be read are listed in OUT/failures.csv with the reason; the rest are ingested.

        Example: ecgfm ingest ../shared/data/ptbxl /tmp/ptbxl-store --fs 100 --workers 2
        """
        from ecgfm.datasets.ingest import ingest
        from ecgfm.signal import Pipeline

        with user_errors():
            band = (highpass or None, lowpass or None)
            pipeline = Pipeline.default(fs=fs, seconds=seconds, bandpass=band if any(band) else None)
            report = ingest(source, out, pipeline=pipeline, dtype=dtype, uv_per_lsb=uv_per_lsb,
                            shard_size=shard_size, workers=workers or None, overwrite=overwrite,
                            progress=not quiet, task=task, challenge_labels=labels, kind=kind)
        if as_json:
            console.print_json(json.dumps(report.to_dict()))
            return
        table = Table(title=f"Store {report.store}")
        table.add_column("")
        table.add_column("value", justify="right")
        rows = [("records in source", report.records), ("written", report.written), ("failed", report.failed),
                ("shards done now / already done", f"{report.shards_processed} / {report.shards_skipped}"),
                ("records with clipped samples", report.clipped_records),
                ("records/s", f"{report.records_per_s:.0f}"), ("bytes per record", f"{report.bytes_per_record:.0f}"),
                ("signal size", f"{report.signal_bytes / 1e6:.1f} MB")]
        for name, value in rows:
            table.add_row(name, str(value))
        console.print(table)
        if report.failed:
            err_console.print(f"[yellow]{report.failed} file(s) failed; see {report.store}/failures.csv[/]")
