"""End-to-end: ``ecgfm pretrain`` on a small PTB-XL-shaped folder, resume, ``ecgfm embed`` to parquet/npy/npz."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ecgfm.cli.main import app
from ecgfm.models import load
from ecgfm.training.pretrain import training_data

runner = CliRunner()


def flat(result) -> str:
    """The command's output with line wrapping undone (rich wraps long messages)."""
    return " ".join(result.output.split())


def pretrain_args(fake_ptbxl, out, *extra):
    return ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(out), "--min-count", "1", "--arch", "resnet1d_small",
            "--set", "epochs=2", "--set", "batch_size=4", "--threads", "1", "--no-progress", *extra]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))


def test_help_has_examples():
    for command in ("pretrain", "embed", "models"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: ecgfm " + command in flat(result)


def test_training_data_uses_folds_and_exclusions(fake_ptbxl, cache):
    data = training_data("xresnet1d50", ptbxl=fake_ptbxl, min_count=1, exclude=["PVC"], progress=False)
    assert "PVC" not in data.labels and "IMI" in data.labels
    # folds 1-8 / 9 / 10; record 10 (fold 10) has no signal file
    assert (len(data.part("train")), len(data.part("val")), len(data.part("test"))) == (6, 2, 1)
    assert data.part("train").positives()["IMI"] == 2 and data.source["kind"] == "ptbxl"
    assert data.preprocess["steps"][2] == {"name": "resample", "fs": 100.0} and data.fs == 100.0
    # label groups from scp_statements.csv's flags, restricted to the model's labels (PVC excluded above)
    assert sorted(data.label_groups["rhythm"]) == sorted({"SR", "AFIB"} & set(data.labels))
    assert "PVC" not in data.label_groups["form"] and set(data.label_groups["diagnostic"]) <= {
        "NORM", "IMI", "ASMI", "LVH", "CLBBB", "NDT"}
    x, y = data.part("train").torch()[0]
    assert x.shape == (12, 1000) and x.dtype == torch.float32 and y.shape == (len(data.labels),)
    chosen = training_data("xresnet1d50", ptbxl=fake_ptbxl, labels=["IMI", "NORM"], progress=False)
    assert chosen.labels == ["IMI", "NORM"]


def test_pretraining_records_the_held_out_labels(fake_ptbxl, cache):
    data = training_data("xresnet1d50", ptbxl=fake_ptbxl, min_count=1, exclude=["PVC"], progress=False)
    assert data.describe()["excluded_labels"] == ["PVC"]


def test_pretrain_resume_and_embed(fake_ptbxl, tmp_path, cache):
    run = tmp_path / "run"
    result = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--exclude-labels", "PVC"))
    assert result.exit_code == 0, result.output
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "pretrained"} <= {p.name for p in run.iterdir()}
    model = load(run / "best.pt")
    info = model.info
    assert info.arch == "resnet1d_small" and info.training["config"]["epochs"] == 2
    assert info.fs == 100.0 and info.window == 250 and info.stride == 125 and "PVC" not in info.labels
    assert info.data["dataset"] == "PTB-XL" and info.preprocess["steps"]
    assert info.label_descriptions["IMI"] == "inferior myocardial infarction"
    pretrained = load(run / "pretrained")
    x = torch.randn(1, 12, 1000)
    torch.testing.assert_close(pretrained(x), model(x))
    assert pretrained.info.labels == info.labels

    # a run folder is never overwritten silently; --resume on a finished run changes nothing
    again = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--exclude-labels", "PVC"))
    assert again.exit_code == 2 and "already holds a run" in flat(again)
    resumed = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--exclude-labels", "PVC", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    torch.testing.assert_close(load(run / "pretrained")(x), model(x))

    # embeddings of files: the same vectors as for the same record loaded with PTB-XL; a bad file is reported
    from ecgfm.datasets import load_labelled
    from ecgfm.inference.embed import embed_set

    record = fake_ptbxl / "records100" / "00000" / "00002_lr.hea"
    bad = tmp_path / "broken.hea"
    bad.write_text("not a header\n")
    npz = tmp_path / "emb.npz"
    files = runner.invoke(app, ["embed", str(record), str(bad), "--model", str(run / "best.pt"), "--out", str(npz)])
    assert files.exit_code == 1 and "broken.hea" in flat(files)
    stored = np.load(npz)
    assert list(stored["ids"]) == ["00002_lr"]  # the record name from the WFDB header
    assert stored["embeddings"].shape == (1, model.num_features)
    ptbxl = load_labelled(ptbxl=fake_ptbxl, labels=["IMI"], pipeline=model.info.pipeline(), progress=False)
    embedded = embed_set(model, ptbxl)
    assert len(embedded.ids) == 9 and embedded.columns["fold"][embedded.ids.index("9")] == 10
    row = embedded.vectors[embedded.ids.index("2")][None]
    np.testing.assert_allclose(stored["embeddings"], row, rtol=1e-4, atol=1e-5)

    npy = tmp_path / "emb.npy"
    done = runner.invoke(app, ["embed", str(record), "--model", str(run / "pretrained"), "--out", str(npy)])
    assert done.exit_code == 0, done.output
    assert np.load(npy).shape == (1, model.num_features)
    assert (tmp_path / "emb.ids.txt").read_text().strip() == "00002_lr"


def test_embed_a_labelled_folder_writes_one_row_per_record(fake_ptbxl, tmp_path, cache):
    from predict_fixtures import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "model")  # 100 Hz, 10 s: the fake PTB-XL records' own length
    out = tmp_path / "emb.parquet"
    embedded = runner.invoke(app, ["embed", "--data", str(fake_ptbxl), "--model", str(model_dir), "--out", str(out),
                                   "--no-progress"])
    assert embedded.exit_code == 0, embedded.output
    table = pd.read_parquet(out)
    features = [c for c in table.columns if c[0] == "f" and c[1:].isdigit()]  # f000.. (not "fold")
    assert len(table) == 9 and len(features) == load(model_dir).num_features  # records with a signal file
    assert {"id", "patient_id", "split", "fold"} <= set(table.columns)
    assert table.set_index("id").loc["9", "split"] == "test" and table.set_index("id").loc["9", "fold"] == 10
    assert np.isfinite(table[features].to_numpy()).all()
    record = fake_ptbxl / "records100" / "00000" / "00002_lr.hea"
    npz = tmp_path / "emb.npz"
    assert runner.invoke(app, ["embed", str(record), "--model", str(model_dir), "--out", str(npz)]).exit_code == 0
    np.testing.assert_allclose(np.load(npz)["embeddings"], table[table["id"] == "2"][features].to_numpy(),
                               rtol=1e-4, atol=1e-5)


def test_pretrain_with_a_weight_average_keeps_the_average(fake_ptbxl, tmp_path, cache):
    run = tmp_path / "run"
    result = runner.invoke(app, pretrain_args(fake_ptbxl, run, "--set", "ema_decay=0.9"))
    assert result.exit_code == 0, result.output
    assert load(run / "best.pt").info.training["config"]["ema_decay"] == 0.9
    last = torch.load(run / "last.pt", weights_only=True)
    assert set(last["ema"]) >= {"n_averaged"} and int(last["ema"]["n_averaged"]) == last["global_step"]


def test_pretrain_with_channels_last_convolutions_saves_a_plain_model(fake_ptbxl, tmp_path, cache):
    run = tmp_path / "run"
    args = ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(run), "--min-count", "1", "--arch", "xresnet1d18",
            "--set", "epochs=1", "--set", "batch_size=4", "--set", "channels_last=true", "--threads", "1",
            "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    best = load(run / "best.pt")
    assert best.info.training["config"]["channels_last"] is True  # recorded, so the run can be replayed
    model = load(run / "pretrained")  # the saved weights are the usual 1-D ones
    assert not model.channels_last and torch.isfinite(model(torch.randn(1, 12, 1000))).all()


def test_settings_change_the_recipe_and_leave_the_rest_to_it(fake_ptbxl, tmp_path, cache, monkeypatch):
    """``--config FILE`` then ``--set KEY=VALUE`` change a recipe's training options (in every member of an
    ensemble); what is not set stays the recipe's. ``--seed``/``--threads`` are runtime options of the run."""
    import ecgfm.training.pretrain as pretrain_module
    from ecgfm.training.recipes import get_recipe

    seen = []

    def capture(data, recipe, run_dir=None, resume=False, jobs=None, report=None, **runtime):
        seen.append((recipe, jobs, runtime))
        raise SystemExit(0)

    monkeypatch.setattr(pretrain_module, "pretrain", capture)
    config_file = tmp_path / "settings.json"
    config_file.write_text(json.dumps({"epochs": 3, "lr": 0.003}))  # default8 members stop by epoch 38
    base = ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(tmp_path / "r"), "--recipe", "default8",
            "--min-count", "1", "--threads", "1", "--seed", "3", "--no-progress"]
    for extra in ([], ["--set", "amp=false"], ["--config", str(config_file), "--set", "epochs=60"], ["--jobs", "1"]):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 0, result.output
    shipped = get_recipe("default8")
    assert seen[0][0] == shipped and seen[0][1] is None
    assert all(m.config.amp is False and m.config.channels_last for m in seen[1][0].members)
    assert [m.config.epochs for m in seen[2][0].members] == [60] * len(shipped.members)
    assert all(m.config.lr == 0.003 for m in seen[2][0].members)
    assert [m.config.window for m in seen[2][0].members] == [m.config.window for m in shipped.members]
    assert seen[3][1] == 1
    runtime = seen[0][2]
    assert runtime["seed"] == 3 and runtime["num_threads"] == 1 and runtime["progress"] is False


def test_pretrain_and_embed_reject_bad_arguments(fake_ptbxl, tmp_path, cache):
    bad_task = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--task", "nope"))
    assert bad_task.exit_code == 2 and "unknown PTB-XL task 'nope'" in flat(bad_task)
    bad_arch = runner.invoke(app, ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(tmp_path / "r"),
                                   "--arch", "nope", "--min-count", "1", "--no-progress"])
    assert bad_arch.exit_code == 2 and "unknown model" in flat(bad_arch)
    bad_recipe = runner.invoke(app, ["pretrain", "--ptbxl", str(fake_ptbxl), "--out", str(tmp_path / "r"),
                                     "--recipe", "nope", "--no-progress"])
    assert bad_recipe.exit_code == 2 and "unknown recipe 'nope'" in flat(bad_recipe)
    bad_exclusion = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--exclude-labels", "XYZ"))
    assert bad_exclusion.exit_code == 2 and "XYZ" in flat(bad_exclusion)
    bad_layout = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--set", "channels_last=true"))
    assert bad_layout.exit_code == 2 and "does not support channels-last" in flat(bad_layout)
    bad_ema = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--set", "ema_decay=1.5"))
    assert bad_ema.exit_code == 2 and "ema_decay must be in (0, 1)" in flat(bad_ema)
    bad_key = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--set", "epoch=3"))
    assert bad_key.exit_code == 2 and "unknown setting(s) ['epoch']" in flat(bad_key) and "epochs" in flat(bad_key)
    bad_set = runner.invoke(app, pretrain_args(fake_ptbxl, tmp_path / "r", "--set", "epochs"))
    assert bad_set.exit_code == 2 and "KEY=VALUE" in flat(bad_set)
    assert not (tmp_path / "r").exists()  # nothing was written for a refused command
    missing = runner.invoke(app, ["embed", "--data", str(fake_ptbxl), "--model", str(tmp_path / "none.pt"), "--out",
                                  str(tmp_path / "e.npy")])
    assert missing.exit_code == 2 and "none.pt" in flat(missing)
    bad_out = runner.invoke(app, ["embed", "--data", str(fake_ptbxl), "--model", str(tmp_path / "none.pt"), "--out",
                                  str(tmp_path / "e.txt")])
    assert bad_out.exit_code == 2 and ".parquet" in flat(bad_out)
    both = runner.invoke(app, ["embed", str(fake_ptbxl), "--data", str(fake_ptbxl), "--out", str(tmp_path / "e.npy")])
    assert both.exit_code == 2 and "one of the two" in flat(both)


def test_models_command_lists_shipped_weights_and_costs():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "default8" in flat(result) and "xresnet1d101" in flat(result) and "inception1d" in flat(result)
