"""End to end through the command line: ``ecgfm finetune`` -> ``ecgfm predict``, and ``ecgfm compare`` (resumed) on a
manifest of synthetic WFDB records, with a small saved foundation model."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ecgfm.cli.main import app
from ecgfm.datasets.synthetic import write_synthetic_wfdb
from ecgfm.models import ModelInfo, create, load, save
from ecgfm.signal import Pipeline

runner = CliRunner()


def flat(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """60 synthetic 10-s records at 100 Hz (2 per patient) with a patient-level split, and a tiny foundation
    pre-trained on nothing but SR/LVOLT labels (random weights: the commands' mechanics are under test here)."""
    root = tmp_path_factory.mktemp("cli")
    table = write_synthetic_wfdb(root / "ecgs", 60, seed=1, fs=100.0)
    patient = table["patient_id"].str[-2:].astype(int)
    table["split"] = ["test" if p % 5 == 0 else "val" if p % 5 == 1 else "train" for p in patient]
    table["labels"] = [";".join(labs) for labs in table["labels"]]
    table["path"] = "ecgs/" + table["path"]
    table.to_csv(root / "manifest.csv", index=False)
    torch.manual_seed(0)
    model = create("resnet1d", num_labels=2, widths=(8, 8), depths=(1, 1), stem_width=8, head_hidden=16)
    model.info = ModelInfo.from_model(model, ["SR", "LVOLT"], fs=100.0, window=250, stride=125,
                                      preprocess=Pipeline.default(fs=100.0).to_dict())
    save(model, root / "foundation")
    return root


def test_help_has_examples():
    for command in ("finetune", "compare"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and f"Example: ecgfm {command} --model" in flat(result)


def test_finetune_then_predict(workspace, tmp_path):
    run = tmp_path / "ft"
    args = ["finetune", "--model", str(workspace / "foundation"), "--labels", "STACH,SBRAD", "--manifest",
            str(workspace / "manifest.csv"), "--out", str(run), "--set", "epochs=2", "--set", "warmup_epochs=1",
            "--set", "batch_size=8", "--threads", "1", "--device", "cpu", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = load(run).info  # a run folder: its model/
    assert info.labels == ["STACH", "SBRAD"] and info.preprocess == Pipeline.default(fs=100.0).to_dict()
    assert info.data["train"]["records"] == 36 and info.data["val"]["records"] == 12
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["val_auc"]) == {"STACH", "SBRAD"}
    assert runner.invoke(app, args).exit_code == 0  # re-running a finished run returns it
    out = tmp_path / "pred.csv"
    predicted = runner.invoke(app, ["predict", str(workspace / "ecgs"), "--model", str(run),
                                    "--out", str(out), "--no-progress"])
    assert predicted.exit_code == 0, predicted.output
    assert {"STACH", "SBRAD"} <= set(" ".join(pd.read_csv(out).columns).replace("_", " ").split())
    evaluated = runner.invoke(app, ["evaluate", "--model", str(run), "--manifest",
                                    str(workspace / "manifest.csv"), "--out", str(tmp_path / "eval"),
                                    "--bootstrap", "20"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {row["label"] for row in metrics["labels"]} <= {"STACH", "SBRAD"} and metrics["labels"]


def test_compare_writes_report_and_resumes(workspace, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--model", str(workspace / "foundation"), "--labels", "STACH", "--manifest",
            str(workspace / "manifest.csv"), "--out", str(out), "--sizes", "3,all", "--seeds", "1",
            "--set", "finetune.train.epochs=1", "--set", "neg_ratio=2", "--set", "n_bootstrap=50", "--threads", "1",
            "--device", "cpu", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("report.html", "table.md", "data_efficiency.png", "compare.json", "summary.csv", "per_seed.csv"):
        assert (out / name).exists(), name
    assert "| STACH | STACH | 3 |" in result.output and "report:" in flat(result)
    document = json.loads((out / "compare.json").read_text())
    assert document["command"].startswith("ecgfm compare") and document["config"]["sizes"] == [3, "all"]
    cells = sorted(p.stat().st_mtime_ns for p in (out / "cells").rglob("*.npz"))
    assert len(cells) == 6
    assert runner.invoke(app, args).exit_code == 0
    assert sorted(p.stat().st_mtime_ns for p in (out / "cells").rglob("*.npz")) == cells  # nothing retrained


def test_compare_refuses_labels_the_foundation_knows(workspace, tmp_path):
    result = runner.invoke(app, ["compare", "--model", str(workspace / "foundation"), "--labels", "SR",
                                 "--manifest", str(workspace / "manifest.csv"), "--out", str(tmp_path / "x"),
                                 "--no-progress"])
    assert result.exit_code == 2 and "not novel labels" in flat(result)
