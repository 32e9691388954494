"""``ecgfm predict`` end to end: outputs by extension, per-file failures, exit codes."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ecgfm.cli.main import app
from predict_fixtures import LABELS, make_tiny_model, write_wfdb

runner = CliRunner(env={"COLUMNS": "250"})  # wide tables: long temporary paths stay on one line


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def records(tmp_path):
    folder = tmp_path / "ecgs"
    write_wfdb(folder, "a", fs=500, seed=1)
    write_wfdb(folder / "more", "b", fs=100, seed=2)
    return folder


def test_predict_folder_to_csv_exit_0(model_dir, records, tmp_path):
    out, fails = tmp_path / "pred.csv", tmp_path / "fails.csv"
    result = runner.invoke(app, ["predict", str(records), "--model", str(model_dir), "--output", str(out),
                                 "--failures", str(fails), "--batch-size", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table["record_id"]) == ["a", "b"]
    assert set(LABELS) <= set(table.columns) and (table["n_findings"] >= 1).all()
    assert pd.read_csv(fails).empty  # written even when nothing failed


def test_predict_lists_failures_and_exits_1(model_dir, records, tmp_path):
    (records / "junk.hea").write_text("garbage\n")
    out, fails = tmp_path / "pred.json", tmp_path / "fails.csv"
    result = runner.invoke(app, ["predict", str(records), str(tmp_path / "missing.hea"), "--model", str(model_dir),
                                 "-o", str(out), "--failures", str(fails)])
    assert result.exit_code == 1, result.output
    assert [row["record_id"] for row in json.loads(out.read_text())] == ["a", "b"]
    failures = pd.read_csv(fails)
    assert sorted(failures["source"].str.split("/").str[-1]) == ["junk.hea", "missing.hea"]
    assert failures["reason"].str.len().min() > 5
    assert "2 file(s) failed" in result.output and "junk.hea" in result.output


def test_predict_table_on_screen_and_parquet(model_dir, records, tmp_path):
    result = runner.invoke(app, ["predict", str(records / "a.hea"), "--model", str(model_dir), "--no-progress"])
    assert result.exit_code == 0 and "NORM" in result.output and "normal ECG" in result.output
    out = tmp_path / "p.parquet"
    result = runner.invoke(app, ["predict", f"{records}/**/*.hea", "--model", str(model_dir), "-o", str(out),
                                 "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert np.all(pd.read_parquet(out)[LABELS].to_numpy() <= 1)


@pytest.mark.parametrize("args, message", [
    (["--output", "x.xlsx"], "output format"),
    (["--model", "no/such/model"], "model not found"),
    (["--backend", "tf"], "unknown backend"),
])
def test_predict_usage_errors_exit_2(model_dir, records, args, message):
    args = ["predict", str(records), "--model", str(model_dir), *args] if "--model" not in args else \
        ["predict", str(records), *args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output


def test_predict_nothing_found_exit_2(model_dir, tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "nothing*.hea"), "--model", str(model_dir)])
    assert result.exit_code == 2 and "no ECG files to predict" in result.output


def test_help_has_example():
    for command in ("predict", "serve", "export"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: ecgfm " + command in " ".join(result.output.split())
