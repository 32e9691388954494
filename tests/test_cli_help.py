"""Every command of ``ecgfm`` (and every subcommand of a group) shows a runnable example in its ``--help``."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ecgfm.cli.main import COMMANDS, app, load_command

runner = CliRunner(env={"COLUMNS": "200"})


def leaf_commands() -> list[list[str]]:
    """The argument paths of every runnable command: ``["predict"]``, ``["data", "summary"]``, ..."""
    paths = []
    for name in COMMANDS:
        command = load_command(name)
        if getattr(command, "commands", None):  # a group (typer's own click classes, not click.Group)
            paths.extend([name, sub] for sub in command.commands)
        else:
            paths.append([name])
    return paths


def test_every_registered_command_loads():
    assert len(leaf_commands()) >= len(COMMANDS)


@pytest.mark.parametrize("path", leaf_commands(), ids=" ".join)
def test_help_shows_an_example(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Example: ecgfm {' '.join(path)}" in result.output, result.output
