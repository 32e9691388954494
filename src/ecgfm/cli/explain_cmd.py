"""``ecgfm explain``: which leads and moments of each ECG drive the model's findings (figures + JSON)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer

from ecgfm.cli.common import console, err_console, fail, user_errors
from ecgfm.cli.options import Device, Labels, Model, Progress, Threads, match_labels
from ecgfm.explain.attribution import DEFAULT_STEPS, FIGURE_FORMATS, safe_stem


def print_explanations(rows: list[tuple[str, object]]) -> None:
    """One line per explained label: probability, the leads pushing hardest towards it, the strongest moment."""
    from rich.table import Table

    table = Table(title=f"{len({r for r, _ in rows})} ECG(s) explained", title_justify="left")
    for column in ("record", "label", "p", "leads pushing towards it (logit)", "strongest 0.4 s"):
        table.add_column(column, overflow="fold")
    for record, explanation in rows:
        for item in explanation.labels:
            contribution = item.lead_contribution
            leads = ", ".join(f"{lead} {contribution[lead]:+.2f}" for lead in item.top_leads())
            segments = item.segments(explanation.fs, n=1)
            moment = f"{segments[0]['start_s']:.2f}-{segments[0]['end_s']:.2f} s" if segments else "-"
            table.add_row(record, f"{item.label} ({item.description})", f"{item.probability:.2f}", leads, moment)
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_command(
        paths: List[str] = typer.Argument(..., help="ECG files, folders (searched recursively) or glob patterns."),
        out: Path = typer.Option(Path("explanations"), "--out", "-o", help="Folder for the figures and JSON."),
        model: Model = "pretrained",
        labels: Labels = None,
        method: str = typer.Option("integrated-gradients", "--method", help="integrated-gradients (per lead and "
                                   "sample) or lead-occlusion (per lead)."),
        steps: int = typer.Option(DEFAULT_STEPS, "--steps", min=2, help="Integrated-gradients steps (more: more exact, "
                                  "slower)."),
        max_labels: int = typer.Option(3, "--max-labels", min=1, help="Without --label: explain at most this "
                                       "many findings per ECG, most probable first."),
        figure_format: str = typer.Option("png", "--format", help="Figure format: png, svg or pdf."),
        arrays: bool = typer.Option(False, "--arrays", help="Also write each ECG's input and attribution maps "
                                    "(.npz: signal, attribution[labels, leads, samples], labels, leads, fs)."),
        device: Device = "auto",
        threads: Threads = None,
        progress: Progress = True,
    ) -> None:
        """Explain predictions: per ECG, a 12-lead figure per finding shaded by what drove it, and a JSON summary.

        Without --labels, each ECG's positive findings are explained (at most --max-labels, most probable first).

        Attributions are computed on the model's input (after its own preprocessing) through the whole
        prediction path, relative to a flat 0-mV ECG: each lead's sum is its contribution to the finding's logit.
        Files that fail are listed with the reason; the rest are still explained.
        Exit code: 0 all explained, 1 some files failed, 2 usage error.

        Example: ecgfm explain ../shared/data/ptbxl/records100/00000/00008_lr.hea --out explanations
        """
        from tqdm import tqdm

        from ecgfm.cli.predict_cmd import print_failures
        from ecgfm.explain import METHODS, explain
        from ecgfm.inference.predictor import Failure, Predictor, expand_items

        with user_errors():
            if method not in METHODS:
                raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
            if figure_format not in FIGURE_FORMATS:
                raise ValueError(f"unknown figure format {figure_format!r}; choose one of "
                                 f"{', '.join(FIGURE_FORMATS)}")
            inputs, failures = expand_items(paths)
            if not inputs:
                print_failures(failures)
                fail("no ECG files to explain")
            predictor = Predictor.from_pretrained(model, device=device, num_threads=threads)
            labels = match_labels(labels, predictor.labels) or None
        out.mkdir(parents=True, exist_ok=True)
        rows, stems = [], set()
        for item in tqdm(inputs, desc="explain", unit="ECG", disable=not progress or len(inputs) < 2,
                         file=sys.stderr):
            try:
                explanation = explain(item, predictor, labels=labels, method=method, steps=steps,
                                      max_labels=max_labels)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch; the reason is reported
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                failures.append(Failure(str(item), reason))
                continue
            stem = safe_stem(explanation.record_id or Path(str(item)).stem)
            base, k = stem, 1
            while stem in stems:  # two inputs with the same record id: keep both
                k += 1
                stem = f"{base}-{k}"
            stems.add(stem)
            explanation.write(out, stem, figure_format=figure_format, arrays=arrays)
            rows.append((stem, explanation))
        if rows:
            print_explanations(rows)
            err_console.print(f"wrote {len(rows)} explanation(s) to {out}", highlight=False)
        if failures:
            print_failures(failures)
            raise typer.Exit(code=1)
