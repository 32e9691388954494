"""End-to-end: ``ecgfm pretrain`` on a small PTB-XL-shaped folder, resume, ``ecgfm embed`` to parquet/npy/npz."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ecgfm.cli.main import app
from ecgfm.models import load_checkpoint, load_pretrained
from ecgfm.training.pretrain import ptbxl_training_data

runner = CliRunner()


def flat(result) -> str:
    """The command's output with line wrapping undone (rich wraps long messages)."""
    return " ".join(result.output.split())
TINY_KW = ["--model-kw", "widths=[8,16]", "--model-kw", "depths=[1,1]", "--model-kw", "stem_width=8"]


def pretrain_args(fake_ptbxl, out, *extra):
    return ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(out), "--min-count", "1", "--model", "resnet1d",
            *TINY_KW, "--epochs", "2", "--batch-size", "4", "--threads", "1", "--no-progress", *extra]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))


def test_help_has_examples():
    for command in ("pretrain", "embed", "models"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: ecgfm " + command in flat(result)


def test_ptbxl_training_data_uses_folds_and_exclusions(fake_ptbxl, cache):
    data = ptbxl_training_data(fake_ptbxl, min_count=1, exclude_labels=["PVC"], progress=False)
    assert "PVC" not in data.labels and "IMI" in data.labels
    assert len(data.train) == 6 and len(data.val) == 2  # folds 1-8 / 9; record 10 (fold 10) is test
    assert data.description["excluded_labels"] == ["PVC"] and data.description["train_positives"]["IMI"] == 2
    assert data.preprocess["steps"][2] == {"name": "resample", "fs": 100.0}
    # label groups from scp_statements.csv's flags, restricted to the model's labels (PVC excluded above)
    assert sorted(data.label_groups["rhythm"]) == sorted({"SR", "AFIB"} & set(data.labels))
    assert "PVC" not in data.label_groups["form"] and set(data.label_groups["diagnostic"]) <= {
        "NORM", "IMI", "ASMI", "LVH", "CLBBB", "NDT"}
    x, y = data.train[0]
    assert x.shape == (12, 1000) and x.dtype == torch.float32 and y.shape == (len(data.labels),)


def test_pretrain_resume_and_embed(fake_ptbxl, tmp_path, cache):
    run = tmp_path / "run"
    result = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--exclude-labels", "PVC"))
    assert result.exit_code == 0, result.output
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "pretrained"} <= {p.name for p in run.iterdir()}
    model, info = load_checkpoint(run / "best.pt")
    assert info.fs == 100.0 and info.window == 250 and info.stride == 125 and "PVC" not in info.labels
    assert info.data["dataset"] == "PTB-XL" and info.preprocess["steps"]
    assert info.label_descriptions["IMI"] == "inferior myocardial infarction"
    assert info.training["config"]["epochs"] == 2
    pretrained, _ = load_pretrained(run / "pretrained")
    x = torch.randn(1, 12, 1000)
    torch.testing.assert_close(pretrained(x), model(x))

    # a run folder is never overwritten silently; --resume on a finished run changes nothing
    again = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--exclude-labels", "PVC"))
    assert again.exit_code == 2 and "already holds a run" in flat(again)
    resumed = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--exclude-labels", "PVC", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2

    # embeddings of the whole PTB-XL folder: one row per record with a signal file
    out = tmp_path / "emb.parquet"
    embedded = runner.invoke(app, ["embed", str(run / "best.pt"), str(fake_ptbxl), "--out", str(out), "--no-progress"])
    assert embedded.exit_code == 0, embedded.output
    table = pd.read_parquet(out)
    features = [c for c in table.columns if c.startswith("f")]
    assert len(table) == 9 and len(features) == model.num_features
    assert {"id", "patient_id", "strat_fold"} <= set(table.columns)
    assert np.isfinite(table[features].to_numpy()).all()

    # embeddings of files: same vectors as for the same records in the PTB-XL run; a bad file is reported
    record = fake_ptbxl / "records100" / "00000" / "00002_lr.hea"
    bad = tmp_path / "broken.hea"
    bad.write_text("not a header\n")
    npz = tmp_path / "emb.npz"
    files = runner.invoke(app, ["embed", str(run / "best.pt"), str(record), str(bad), "--out", str(npz)])
    assert files.exit_code == 1 and "broken.hea" in flat(files)
    stored = np.load(npz)
    assert list(stored["ids"]) == ["00002_lr"]  # the record name from the WFDB header
    row = table[table["id"] == "2"][features].to_numpy()
    np.testing.assert_allclose(stored["embeddings"], row, rtol=1e-4, atol=1e-5)

    npy = tmp_path / "emb.npy"
    assert runner.invoke(app, ["embed", str(run / "pretrained"), str(record), "--out", str(npy)]).exit_code == 0
    assert np.load(npy).shape == (1, model.num_features)
    assert (tmp_path / "emb.ids.txt").read_text().strip()


def test_pretrain_with_a_weight_average_keeps_the_average(fake_ptbxl, tmp_path, cache):
    run = tmp_path / "run"
    result = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--ema-decay", "0.9"))
    assert result.exit_code == 0, result.output
    _, info = load_checkpoint(run / "best.pt")
    assert info.training["config"]["ema_decay"] == 0.9
    last = torch.load(run / "last.pt", weights_only=True)
    assert set(last["ema"]) >= {"n_averaged"} and int(last["ema"]["n_averaged"]) == last["global_step"]


def test_pretrain_with_channels_last_convolutions_saves_a_plain_model(fake_ptbxl, tmp_path, cache):
    run = tmp_path / "run"
    args = ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(run), "--min-count", "1", "--model", "xresnet1d18",
            "--model-kw", "stem_widths=[8,8,8]", "--model-kw", "widths=[8,8,8,8]", "--epochs", "1",
            "--batch-size", "4", "--threads", "1", "--no-progress", "--channels-last"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    _, info = load_checkpoint(run / "best.pt")
    assert info.training["config"]["channels_last"] is True  # recorded, so the run can be replayed
    model, _ = load_pretrained(run / "pretrained")  # the saved weights are the usual 1-D ones
    assert torch.isfinite(model.eval()(torch.randn(1, 12, 1000))).all()


def test_recipe_runtime_options_leave_unset_flags_to_the_recipe(fake_ptbxl, tmp_path, cache, monkeypatch):
    """``--amp``/``--no-amp`` (and ``--channels-last``) override a recipe's setting; left out, the recipe's stays."""
    import ecgfm.training.pretrain as pretrain_module
    import ecgfm.training.recipes as recipes
    from ecgfm.training.recipes import get_recipe

    seen = []

    def capture(data, recipe, run_dir=None, resume=False, **runtime):
        seen.append(runtime)
        raise SystemExit(0)

    monkeypatch.setattr(pretrain_module, "pretrain_recipe", capture)
    tiny = replace(get_recipe("xresnet1d50"), min_count=1)  # the fake folder has too few positives for 10
    monkeypatch.setattr(recipes, "get_recipe", lambda name: tiny)
    base = ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(tmp_path / "r"), "--recipe", "xresnet1d50",
            "--threads", "1", "--seed", "3", "--no-progress"]
    for extra in ([], ["--amp"], ["--no-amp"], ["--channels-last"]):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 0, result.output
    assert "amp" not in seen[0] and seen[1]["amp"] is True and seen[2]["amp"] is False
    assert "channels_last" not in seen[0] and seen[3]["channels_last"] is True
    assert seen[0]["seed"] == 3 and seen[0]["num_threads"] == 1


def test_pretrain_and_embed_reject_bad_arguments(fake_ptbxl, tmp_path, cache):
    bad_task = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--task", "nope"))
    assert bad_task.exit_code == 2 and "unknown task" in flat(bad_task)
    bad_model = runner.invoke(app, ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(tmp_path / "r"),
                                    "--model", "nope", "--min-count", "1", "--no-progress"])
    assert bad_model.exit_code == 2 and "unknown model" in flat(bad_model)
    bad_exclusion = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--exclude-labels", "XYZ"))
    assert bad_exclusion.exit_code == 2 and "XYZ" in flat(bad_exclusion)
    bad_layout = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--channels-last"))  # resnet1d
    assert bad_layout.exit_code == 2 and "does not support channels-last" in flat(bad_layout)
    bad_ema = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--ema-decay", "1.5"))
    assert bad_ema.exit_code == 2 and "ema_decay must be in (0, 1)" in flat(bad_ema)
    jobs_without_recipe = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--jobs", "2"))
    assert jobs_without_recipe.exit_code == 2 and "--jobs trains the members of an ensemble recipe" in flat(jobs_without_recipe)
    missing = runner.invoke(app, ["embed", str(tmp_path / "none.pt"), str(fake_ptbxl), "--out", str(tmp_path / "e.npy")])
    assert missing.exit_code == 2 and "none.pt" in flat(missing)
    bad_out = runner.invoke(app, ["embed", str(tmp_path / "none.pt"), str(fake_ptbxl), "--out", str(tmp_path / "e.txt")])
    assert bad_out.exit_code == 2 and ".parquet" in flat(bad_out)


def test_models_command_lists_costs():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "xresnet1d101" in flat(result) and "inception1d" in flat(result)
