"""``ecgfm data summary``: tables and JSON, checked against the metadata CSV; --help example; clear errors."""
import json

import pytest
from typer.testing import CliRunner

from ecgfm.cli.main import app
from test_ptbxl import expected_summary

runner = CliRunner()


def test_help_has_an_example():
    result = runner.invoke(app, ["data", "summary", "--help"])
    assert result.exit_code == 0
    assert "Example: ecgfm data summary" in result.output and "--json" in result.output


def test_json_matches_the_csv(fake_ptbxl):
    result = runner.invoke(app, ["data", "summary", str(fake_ptbxl), "--json", "--task", "rhythm"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    expected, *_ = expected_summary(fake_ptbxl)
    expected["records_per_fold"] = {str(k): v for k, v in expected["records_per_fold"].items()}  # JSON keys
    assert {k: summary[k] for k in expected} == expected
    assert summary["task"] == "rhythm"
    assert summary["label_counts"] == {
        "SR": {"description": "sinus rhythm", "train": 5, "val": 1, "test": 1, "total": 7},
        "AFIB": {"description": "atrial fibrillation", "train": 1, "val": 1, "test": 0, "total": 2},
    }


def test_tables_show_rates_folds_and_labels(fake_ptbxl):
    result = runner.invoke(app, ["data", "summary", str(fake_ptbxl), "--task", "superdiagnostic"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for row in ("500 Hz only", "100 Hz only", "both rates", "missing files", "patients"):
        assert row in out
    assert "myocardial infarction" in out and "conduction disturbance" in out
    assert "Label counts per split, task 'superdiagnostic'" in out


def test_path_from_environment(fake_ptbxl, monkeypatch):
    monkeypatch.setenv("ECGFM_PTBXL_DIR", str(fake_ptbxl))
    result = runner.invoke(app, ["data", "summary", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["records"] == 10


@pytest.mark.parametrize("args, message", [
    (["data", "summary", "/nonexistent/ptbxl"], "ptbxl_database.csv not found"),
    (["data", "summary", "{root}", "--task", "everything"], "unknown task 'everything'"),
])
def test_errors_exit_2_with_a_message(fake_ptbxl, args, message):
    result = runner.invoke(app, [a.format(root=fake_ptbxl) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.ptbxl
def test_real_json_matches_the_csv(ptbxl_dir):
    result = runner.invoke(app, ["data", "summary", str(ptbxl_dir), "--json"])
    assert result.exit_code == 0
    summary = json.loads(result.output)
    expected, *_ = expected_summary(ptbxl_dir)
    expected["records_per_fold"] = {str(k): v for k, v in expected["records_per_fold"].items()}
    assert {k: summary[k] for k in expected} == expected
    assert summary["statements_present"] == 70 and summary["label_counts"]["SR"]["total"] > 3000
