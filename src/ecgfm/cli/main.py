"""The ``ecgfm`` command line: a thin Typer shell over the Python API.

Each command lives in its own module under ``ecgfm.cli`` with a ``register(app)`` function. A module is imported only
when its command runs or shows its own ``--help``; ``ecgfm --help`` lists the commands from the table below without
importing any of them (no torch), so it answers at once.
"""
from __future__ import annotations

import importlib
import click
import typer
from typer.core import TyperGroup

from ecgfm.version import __version__

#: Command name -> (the module that registers it, one-line summary), in the order ``ecgfm --help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("ecgfm.cli.demo_cmd", "Run the paper's pipeline on PTB-XL end to end and write one HTML report."),
    "data": ("ecgfm.cli.data_cmd", "Check a PTB-XL folder or download it."),
    "info": ("ecgfm.cli.info_cmd", "Show what ECG files hold: format, leads, rate, amplitudes, statements."),
    "predict": ("ecgfm.cli.predict_cmd", "Predict findings for ECG files of any supported format."),
    "explain": ("ecgfm.cli.explain_cmd", "Show which leads and moments drive each finding (figures + JSON)."),
    "plot": ("ecgfm.cli.plot_cmd", "Draw the standard 12-lead printout (25 mm/s, 10 mm/mV) as PNG, PDF or SVG."),
    "pretrain": ("ecgfm.cli.pretrain_cmd", "Pre-train a foundation model (a recipe) on labelled ECGs."),
    "models": ("ecgfm.cli.models_cmd", "List the shipped weights and the registered architectures."),
    "evaluate": ("ecgfm.cli.evaluate_cmd", "Evaluate a model like a clinical paper: AUC, sensitivity, "
                                           "specificity with 95% CIs."),
    "compare-models": ("ecgfm.cli.evaluate_cmd", "Compare two models' predictions label by label (DeLong, "
                                                 "bootstrap)."),
    "finetune": ("ecgfm.cli.finetune_cmd", "Fine-tune a foundation model for new labels from few examples."),
    "compare": ("ecgfm.cli.compare_cmd", "Fine-tuned vs from-scratch vs embeddings on novel labels, by size."),
    "embed": ("ecgfm.cli.embed_cmd", "Write one embedding vector per ECG."),
    "ingest": ("ecgfm.cli.ingest_cmd", "Convert many ECG files into a compressed training store."),
    "serve": ("ecgfm.cli.serve_cmd", "Serve predictions and explanations over HTTP."),
    "export": ("ecgfm.cli.export_cmd", "Export a model to ONNX."),
    "release": ("ecgfm.cli.release_cmd", "Release a trained model: validation thresholds, test metrics, model "
                                         "card."),
}


def load_command(name: str) -> click.Command | None:
    """Import the module behind ``name`` and return its click command."""
    entry = COMMANDS.get(name)
    if entry is None:
        return None
    holder = typer.Typer()
    importlib.import_module(entry[0]).register(holder)
    holder.callback()(lambda: None)  # force a group even when the module registers one command
    return typer.main.get_command(holder).commands.get(name)


class LazyCommand(click.Command):
    """A command known by name and summary only; its module is imported when it parses arguments."""

    def __init__(self, name: str, summary: str):
        super().__init__(name, help=summary, short_help=summary)

    def make_context(self, info_name, args, parent=None, **extra):
        return load_command(self.name).make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    """A command group listing its commands from :data:`COMMANDS`, importing each only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        return LazyCommand(name, COMMANDS[name][1]) if name in COMMANDS else None


app = typer.Typer(
    name="ecgfm",
    cls=LazyGroup,
    help="ECG foundation models: read ECGs, pre-train, evaluate, fine-tune for rare diagnoses, predict and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ecgfm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """ECG foundation models: read ECGs, pre-train, evaluate, fine-tune for rare diagnoses, predict and serve.

    Every command has --help with an example.
    """


if __name__ == "__main__":  # pragma: no cover
    app()
