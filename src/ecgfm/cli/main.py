"""The ``ecgfm`` command line: a thin Typer shell over the Python API.

Each command lives in its own module under ``ecgfm.cli`` and registers itself through ``register(app)``.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="ecgfm",
    help="ECG foundation models: read ECGs, pre-train, evaluate, fine-tune for rare diagnoses, predict and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, in the order their commands appear in ``ecgfm --help``.
COMMAND_MODULES = [
    "ecgfm.cli.data_cmd",
    "ecgfm.cli.ingest_cmd",
    "ecgfm.cli.pretrain_cmd",
    "ecgfm.cli.embed_cmd",
    "ecgfm.cli.info_cmd",
    "ecgfm.cli.finetune_cmd",
    "ecgfm.cli.compare_cmd",
    "ecgfm.cli.evaluate_cmd",
    "ecgfm.cli.predict_cmd",
    "ecgfm.cli.serve_cmd",
    "ecgfm.cli.export_cmd",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
