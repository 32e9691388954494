"""``ecgfm demo``: the paper's pipeline on PTB-XL in one command (see :mod:`ecgfm.demo`)."""
from __future__ import annotations

from pathlib import Path

import typer

from ecgfm.cli.common import console, user_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        ptbxl: Path = typer.Option(None, "--ptbxl", help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)."),
        out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder (re-running resumes)."),
        preset: str = typer.Option("quick", "--preset", help="quick (minutes on a CPU) or full (docs/results.md)."),
        download: bool = typer.Option(False, "--download/--no-download",
                                      help="Download PTB-XL (100 Hz, checksum-verified, resumable) if absent."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """Pre-train, evaluate, fine-tune versus scratch on held-out statements, explain one test ECG; one HTML report.

        Example: ecgfm demo --ptbxl ../shared/data/ptbxl --out runs/demo
        """
        from ecgfm.cli.evaluate_cmd import command_line
        from ecgfm.demo import run_demo

        with user_errors():
            report = run_demo(out=out, ptbxl=ptbxl, preset=preset, download=download, device=device,
                              log=lambda message: console.print(message, highlight=False),
                              command=command_line(ctx))
        console.print(f"open {report}")
