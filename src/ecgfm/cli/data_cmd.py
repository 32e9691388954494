"""``ecgfm data ...``: inspect datasets (PTB-XL summary)."""
from __future__ import annotations

import json

import typer
from rich.table import Table

from ecgfm.cli.common import console, user_errors
from ecgfm.labels.ptbxl import TASKS


def summary_tables(summary: dict) -> list[Table]:
    """Rich tables for a :meth:`ecgfm.datasets.ptbxl.PTBXL.summary` dict: rates, folds/splits, label counts."""
    rates = Table(title=f"PTB-XL records in {summary['root']}")
    rates.add_column("records")
    rates.add_column("count", justify="right")
    for label, key in (("500 Hz only", "records_500hz_only"), ("100 Hz only", "records_100hz_only"),
                       ("both rates", "records_both_rates"), ("missing files (neither rate)", "records_missing"),
                       ("any 500 Hz", "records_500hz"), ("any 100 Hz", "records_100hz"),
                       ("total (metadata rows)", "records"), ("patients", "patients")):
        rates.add_row(label, str(summary[key]))

    folds = Table(title="Records per fold and split (patient-disjoint folds)")
    folds.add_column("fold", justify="right")
    folds.add_column("split")
    folds.add_column("records", justify="right")
    for fold, count in summary["records_per_fold"].items():
        split = "train" if int(fold) <= 8 else "val" if int(fold) == 9 else "test"
        folds.add_row(str(fold), split, str(count))
    for split, count in summary["records_per_split"].items():
        folds.add_row("all", f"[bold]{split}[/]", f"[bold]{count}[/]")

    labels = Table(title=f"Label counts per split, task '{summary['task']}' (records with a signal file; "
                         "a statement with any likelihood, incl. 0, is positive)")
    for column, justify in (("label", "left"), ("description", "left"), ("train", "right"), ("val", "right"),
                            ("test", "right"), ("total", "right")):
        labels.add_column(column, justify=justify)
    for label, row in summary["label_counts"].items():
        labels.add_row(label, row["description"], *(str(row[c]) for c in ("train", "val", "test", "total")))
    return [rates, folds, labels]


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("summary")
    def summary(
        path: str = typer.Argument(None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)."),
        task: str = typer.Option("all", "--task", help=f"Label task for the counts: {', '.join(TASKS)}."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    ) -> None:
        """Summarise a PTB-XL folder: records per rate, missing files, patients, folds/splits, label counts.

        Example: ecgfm data summary ../shared/data/ptbxl --task superdiagnostic
        """
        from ecgfm.datasets.ptbxl import PTBXL

        with user_errors():
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
            result = PTBXL(path).summary(task)
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        for table in summary_tables(result):
            console.print(table)
