"""``ecgfm predict`` end to end: outputs by extension, per-file failures, exit codes."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import file_mode, umask
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
    result = runner.invoke(app, ["predict", str(records), "--model", str(model_dir), "--out", str(out),
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
    (["--out", "x.xlsx"], "output format"),
    (["--model", "no/such/model"], "model not found"),
    (["--backend", "tf"], "unknown backend"),
])
def test_predict_usage_errors_exit_2(model_dir, records, args, message):
    args = ["predict", str(records), "--model", str(model_dir), *args] if "--model" not in args else \
        ["predict", str(records), *args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output


def _partial_run(model_dir, out, records, probability: float):
    """What a killed ``ecgfm predict --out OUT`` leaves: ``OUT.partial/`` with one chunk holding record a's row
    (its NORM probability replaced by ``probability``, so a re-predicted row would show)."""
    from dataclasses import replace

    from ecgfm.inference import Predictor
    from ecgfm.inference.outputs import PredictionWriter

    predictor = Predictor.from_pretrained(model_dir)
    key = hashlib.sha256(json.dumps(predictor.info.to_dict(), sort_keys=True).encode()).hexdigest()
    first = predictor.predict(records / "a.hea")
    writer = PredictionWriter(out, key, predictor.labels)
    writer.write(replace(first, probabilities={**first.probabilities, "NORM": probability}))
    writer.flush()  # never closed: the run was killed
    assert not out.exists() and len(list(out.with_name(out.name + ".partial").glob("part-*.jsonl"))) == 1


def test_predict_resumes_a_partial_run_and_writes_normal_files(model_dir, records, tmp_path):
    out = tmp_path / "x.csv"
    _partial_run(model_dir, out, records, probability=0.123456)
    with umask(0o022):
        result = runner.invoke(app, ["predict", str(records), "--model", str(model_dir), "--out", str(out),
                                     "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "resuming: 1 ECG(s) already in" in " ".join(result.output.split())
    table = pd.read_csv(out)
    assert list(table["record_id"]) == ["a", "b"]  # a from the partial run, b predicted now
    assert table.loc[0, "NORM"] == pytest.approx(0.123456)  # a was not predicted again
    assert not out.with_name("x.csv.partial").exists() and file_mode(out) == 0o644
    # rows written by another model are not continued: the run starts over
    other = tmp_path / "y.csv"
    _partial_run(model_dir, other, records, probability=0.5)
    marker = other.with_name("y.csv.partial") / "run.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "model": "another model"}))
    result = runner.invoke(app, ["predict", str(records), "--model", str(model_dir), "--out", str(other),
                                 "--no-progress"])
    assert result.exit_code == 0 and "resuming" not in result.output
    again = pd.read_csv(other)
    assert list(again["record_id"]) == ["a", "b"] and again.loc[0, "NORM"] != pytest.approx(0.5)
    np.testing.assert_allclose(again[LABELS].to_numpy()[1], table[LABELS].to_numpy()[1], atol=1e-6)


def test_predict_outputs_duration_and_notes_and_unique_record_ids(model_dir, tmp_path):
    write_wfdb(tmp_path / "site1", "x", fs=500, seed=3)
    write_wfdb(tmp_path / "site2", "x", fs=500, seconds=6, seed=4)  # the same name, and shorter than the input
    out = tmp_path / "p.json"
    result = runner.invoke(app, ["predict", str(tmp_path / "site1"), str(tmp_path / "site2"), "--model",
                                 str(model_dir), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert rows[0]["record_id"] == "x" and rows[1]["record_id"] == rows[1]["source"]  # told apart by their path
    assert [row["duration_s"] for row in rows] == [10.0, 6.0]
    assert rows[0]["notes"] == [] and "zero-padded" in rows[1]["notes"][0]


def test_predict_takes_a_wfdb_record_named_without_hea(model_dir, records, tmp_path):
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(records / "a"), "--model", str(model_dir), "--out", str(out),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out)["record_id"]) == ["a"]


def test_predict_nothing_found_exit_2(model_dir, tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "nothing*.hea"), "--model", str(model_dir)])
    assert result.exit_code == 2 and "no ECG files to predict" in result.output


def test_help_has_example():
    for command in ("predict", "serve", "export"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: ecgfm " + command in " ".join(result.output.split())
