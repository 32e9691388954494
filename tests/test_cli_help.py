"""Every command of ``ecgfm`` (and every subcommand of a group) shows a runnable example in its ``--help``; the root
``--help`` and ``--version`` answer without importing any command (no torch)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import REPO_ROOT
from ecgfm.cli.main import COMMANDS, app, load_command
from ecgfm.version import __version__

runner = CliRunner(env={"COLUMNS": "200"})


def leaf_paths(name: str) -> list[list[str]]:
    """The argument paths of the runnable commands under ``name``: ``[["predict"]]``, ``[["data", "summary"], ...]``."""
    command = load_command(name)
    assert command is not None, f"{name}: its module registers no command of that name"
    if getattr(command, "commands", None):  # a group (typer's own click classes, not click.Group)
        return [[name, sub] for sub in command.commands]
    return [[name]]


# One test per command (not one collection-time import of them all), so a broken command module fails its own test.
@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_an_example(name):
    for path in leaf_paths(name):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert f"Example: ecgfm {' '.join(path)}" in result.output, result.output


def test_version_option_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"ecgfm {__version__}"


def test_root_help_lists_every_command_without_importing_any():
    """``ecgfm --help`` names every command from the table alone: no command module and no torch get imported."""
    code = ("import json, sys\n"
            "from ecgfm.cli.main import app\n"
            "try:\n"
            "    app(['--help'], prog_name='ecgfm')\n"
            "except SystemExit as exc:\n"
            "    code = exc.code\n"
            "print('MODULES=' + json.dumps([m for m in sys.modules if m == 'torch' or m.startswith('torch.')\n"
            "                               or (m.startswith('ecgfm.cli.') and m.endswith('_cmd'))]))\n"
            "print('EXIT=' + str(code))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert json.loads(next(line for line in lines if line.startswith("MODULES="))[8:]) == []
    assert "EXIT=0" in lines
    for name in COMMANDS:
        assert name in done.stdout, f"{name} missing from ecgfm --help"


@pytest.mark.parametrize("name", ["predict", "evaluate", "embed", "explain", "finetune", "compare", "pretrain", "serve"])
def test_every_command_running_a_model_takes_the_same_device_and_thread_options(name):
    text = runner.invoke(app, [name, "--help"]).output
    assert "--threads" in text and ("--device" in text or name == "serve"), name
