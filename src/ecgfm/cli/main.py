"""The ``ecgfm`` command line: a thin Typer shell over the Python API.

Each command lives in its own module under ``ecgfm.cli`` with a ``register(app)`` function. Modules are imported
only when their command runs (``ecgfm info`` does not pay for importing torch), through :class:`LazyGroup`.
"""
from __future__ import annotations

import importlib
import importlib.util

import click
import typer
from typer.core import TyperGroup

#: Command name -> the module that registers it, in the order ``ecgfm --help`` lists them.
COMMANDS: dict[str, str] = {
    "demo": "ecgfm.cli.demo_cmd",
    "data": "ecgfm.cli.data_cmd",
    "info": "ecgfm.cli.info_cmd",
    "predict": "ecgfm.cli.predict_cmd",
    "explain": "ecgfm.cli.explain_cmd",
    "plot": "ecgfm.cli.plot_cmd",
    "pretrain": "ecgfm.cli.pretrain_cmd",
    "models": "ecgfm.cli.pretrain_cmd",
    "evaluate": "ecgfm.cli.evaluate_cmd",
    "compare-models": "ecgfm.cli.evaluate_cmd",
    "finetune": "ecgfm.cli.finetune_cmd",
    "compare": "ecgfm.cli.compare_cmd",
    "embed": "ecgfm.cli.embed_cmd",
    "ingest": "ecgfm.cli.ingest_cmd",
    "serve": "ecgfm.cli.serve_cmd",
    "export": "ecgfm.cli.export_cmd",
}


def load_command(name: str) -> click.Command | None:
    """Import the module behind ``name`` and return its click command."""
    module = COMMANDS.get(name)
    if module is None:
        return None
    holder = typer.Typer()
    importlib.import_module(module).register(holder)
    holder.callback()(lambda: None)  # force a group even when the module registers one command
    return typer.main.get_command(holder).commands.get(name)


class LazyGroup(TyperGroup):
    """A command group that imports a command's module only when that command is used (or listed in --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if name in self.commands or importlib.util.find_spec(COMMANDS[name])]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands:
            command = load_command(name)
            if command is None:
                return None
            self.commands[name] = command
        return self.commands[name]


app = typer.Typer(
    name="ecgfm",
    cls=LazyGroup,
    help="ECG foundation models: read ECGs, pre-train, evaluate, fine-tune for rare diagnoses, predict and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """ECG foundation models: read ECGs, pre-train, evaluate, fine-tune for rare diagnoses, predict and serve."""


if __name__ == "__main__":  # pragma: no cover
    app()
