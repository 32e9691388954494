"""The training loop, its pieces (loss, crops, windows, metric) and resumable checkpoints, on synthetic ECG-like data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ecgfm.datasets import from_arrays
from ecgfm.evaluation.metrics import macro_auc, per_label_auc
from ecgfm.models import create, load
from ecgfm.models.windowing import predict_logits, sliding_windows, window_starts
from ecgfm.signal import Pipeline
from ecgfm.training import RandomCropDataset, TrainConfig, fit, masked_bce_with_logits
from ecgfm.training.trainer import positive_weights

TINY = {"widths": [8, 16], "depths": [1, 1], "stem_width": 8, "kernel_size": 5, "stem_kernel_size": 7}


LABELS = ["a", "b", "c"]
#: What the synthetic signals stand for: 12 standard leads at 100 Hz (4-s records).
PREPROCESS = Pipeline.default(fs=100.0, seconds=4.0).to_dict()


def synthetic_set(n: int = 96, length: int = 400, seed: int = 0):
    """Noise ECGs where label j adds a sinusoid of its own frequency to lead j (learnable in a few epochs), as one
    LabelledSet: the first two thirds ``train``, the rest ``val``."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    t = np.arange(length) / 100.0
    X = rng.normal(0, 0.3, (n, 12, length)).astype(np.float32)
    for j, freq in enumerate((3.0, 7.0, 13.0)):
        X[:, j, :] += Y[:, j, None] * np.sin(2 * np.pi * freq * t).astype(np.float32)
    split = np.where(np.arange(n) < n * 2 // 3, "train", "val")
    return from_arrays(X, Y, LABELS, preprocess=PREPROCESS, split=split)


def synthetic(n: int = 96, length: int = 400, seed: int = 0):
    """The train and val parts of :func:`synthetic_set`, each with signals of its own (``X`` holds just its records)."""
    data = synthetic_set(n, length, seed)
    return tuple(from_arrays(data.signals(0, len(data))[data.split == s], data.Y[data.split == s], LABELS,
                             preprocess=PREPROCESS, split=s) for s in ("train", "val"))


def quick_config(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, lr=1e-2, window=200, progress=False, num_threads=1, seed=0)
    return TrainConfig(**{**base, **overrides})


def new_model(labels: int = 3):
    torch.manual_seed(0)
    return create("resnet1d", labels, **TINY)


# ---------------------------------------------------------------- pieces


def test_masked_bce_ignores_unknown_labels_and_matches_torch():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    known = ~torch.isnan(targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])
    torch.testing.assert_close(masked_bce_with_logits(logits, targets), expected)


def test_positive_weights():
    Y = np.array([[1, 0], [0, 0], [0, 1], [0, np.nan]], dtype=np.float32)
    np.testing.assert_allclose(positive_weights(Y, "balanced", 50).numpy(), [3.0, 2.0])
    np.testing.assert_allclose(positive_weights(Y, "sqrt", 50).numpy(), [np.sqrt(3), np.sqrt(2)], rtol=1e-6)
    assert positive_weights(Y, None, 50) is None
    assert positive_weights(np.zeros((100, 1), np.float32), "balanced", 50).item() == 50  # no positives: capped


def test_macro_auc_matches_sklearn_and_skips_single_class_labels():
    rng = np.random.default_rng(1)
    y = (rng.random((50, 3)) < 0.5).astype(float)
    s = rng.random((50, 3)) + y * 0.3
    assert macro_auc(y, s) == pytest.approx(roc_auc_score(y, s, average="macro"))
    y_one_class = y.copy()
    y_one_class[:, 2] = 0
    aucs = per_label_auc(y_one_class, s)
    assert np.isnan(aucs[2]) and macro_auc(y_one_class, s) == pytest.approx(np.mean(aucs[:2]))
    y_nan = y.copy()
    y_nan[:10, 0] = np.nan
    assert per_label_auc(y_nan, s)[0] == pytest.approx(roc_auc_score(y[10:, 0], s[10:, 0]))
    assert np.isnan(per_label_auc(y, s, min_positives=1000)).all()


def test_random_crops_are_deterministic_per_seed_epoch_and_index():
    data = from_arrays(np.arange(2 * 12 * 50, dtype=np.float32).reshape(2, 12, 50), np.zeros((2, 1)), ["x"]).torch()
    crops = RandomCropDataset(data, window=20, seed=3)
    first = [crops[i][0] for i in (0, 1)]
    assert all(x.shape == (12, 20) for x in first)
    torch.testing.assert_close(crops[1][0], first[1])  # same epoch, same item: same crop
    starts = set()
    for epoch in range(10):
        crops.set_epoch(epoch)
        starts.add(int(crops[0][0][0, 0]))
    assert len(starts) > 1  # crops move between epochs
    short = RandomCropDataset(from_arrays(np.ones((1, 12, 5), np.float32), np.zeros((1, 1)), ["x"]).torch(), window=8)
    assert short[0][0].shape == (12, 8) and short[0][0][:, 5:].abs().sum() == 0  # zero-padded at the end


def test_sliding_windows_cover_the_whole_record():
    assert window_starts(1000, 250, 125) == list(range(0, 751, 125))
    assert window_starts(1010, 250, 125)[-1] == 760  # last window flush with the end
    assert window_starts(100, 250, 125) == [0]
    x = torch.arange(2 * 12 * 1000, dtype=torch.float32).reshape(2, 12, 1000)
    w = sliding_windows(x, 250, 125)
    assert w.shape == (2, 7, 12, 250)
    torch.testing.assert_close(w[1, 3], x[1, :, 375:625])


def test_predict_logits_aggregates_window_logits_by_max_or_mean():
    model = new_model().eval()
    train, _ = synthetic(n=6)
    x = torch.from_numpy(train.X[:2])
    windows = sliding_windows(x, 200, 100)  # (2, 3, 12, 200)
    with torch.no_grad():
        per_window = model(windows.flatten(0, 1)).reshape(2, 3, -1)
    subset = train.subset([0, 1]).torch()
    np.testing.assert_allclose(predict_logits(model, subset, 200, 100, "max"), per_window.amax(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(predict_logits(model, subset, 200, 100, "mean"), per_window.mean(1).numpy(), atol=1e-5)
    # without window arguments the model's own info decides; a model without info is run on whole records
    from ecgfm.models import ModelInfo

    with torch.no_grad():
        whole = model(x).numpy()
    np.testing.assert_allclose(predict_logits(model, subset), whole, atol=1e-5)
    model.info = ModelInfo.from_model(model, LABELS, window=200, stride=100, aggregate="mean")
    np.testing.assert_allclose(predict_logits(model, subset), per_window.mean(1).numpy(), atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="aggregate"):
        TrainConfig(aggregate="median")
    assert TrainConfig(window=250).test_stride == 125 and TrainConfig(window=None).test_stride is None
    assert TrainConfig.from_dict(TrainConfig(lr=0.1).to_dict()).lr == 0.1
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"learning_rate": 0.1})


# ---------------------------------------------------------------- the loop


def test_fit_learns_and_writes_a_self_describing_run(tmp_path):
    train, val = synthetic()
    result = fit(new_model(), train, val, quick_config(epochs=6, schedule="cosine"), run_dir=tmp_path)
    assert result.best_score > 0.9, result.history
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "metrics.jsonl", "last.pt", "best.pt"}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "val_macro_auc", "lr", "train_ecgs_per_s", "elapsed_s"} <= set(rows[0])
    model = load(tmp_path / "best.pt")
    info = model.info
    assert info.arch == "resnet1d" and info.arch_kwargs == TINY and info.window == 200 and info.stride == 100
    assert info.training["config"]["epochs"] == 6 and info.training["best_epoch"] == result.best_epoch
    assert result.info is result.model.info
    np.testing.assert_allclose(predict_logits(model, val.torch()), predict_logits(result.model, val.torch(), 200),
                               atol=1e-6)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["metrics"]["best_val_macro_auc"] == pytest.approx(result.best_score)


def test_fit_without_run_dir_or_validation_and_with_options():
    train, _ = synthetic(n=48)
    cfg = quick_config(epochs=2, class_weights="sqrt", grad_accum=2, max_grad_norm=1.0, amp=True, window=None,
                       schedule="constant")
    result = fit(new_model(), train, None, cfg)  # bf16 autocast on CPU, whole records, no validation
    assert len(result.history) == 2 and result.best_epoch == 2 and result.run_dir is None
    torch_data = fit(new_model(), train.torch(), None, quick_config(epochs=1, window=None))  # a plain torch Dataset
    assert len(torch_data.history) == 1


class Killed(Exception):
    """Raised from a callback to simulate the process dying."""


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_run(a_model, a_history, b_model, b_history):
    for key, value in _weights(a_model).items():
        assert torch.equal(value, b_model.state_dict()[key]), key
    deterministic = ("epoch", "step", "train_loss", "lr", "val_loss", "val_macro_auc")
    assert [{k: r[k] for k in deterministic} for r in a_history] == [{k: r[k] for k in deterministic} for r in b_history]


@pytest.mark.parametrize("kill_at,ema_decay,augment", [
    ("epoch_end", None, {}), ("mid_epoch", None, {}), ("mid_epoch", 0.8, {}),
    ("mid_epoch", None, {"scale_jitter": 0.1, "noise_mv": 0.05, "mixup": 0.4}),
])
def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path, kill_at, ema_decay, augment):
    train, val = synthetic()
    cfg = quick_config(epochs=3, ema_decay=ema_decay, **augment)
    straight = fit(new_model(), train, val, cfg, run_dir=tmp_path / "straight")

    def kill(event, state):
        if kill_at == "epoch_end" and event == "epoch" and state["epoch"] == 1:
            raise Killed
        if kill_at == "mid_epoch" and event == "step" and state["epoch"] == 1 and state["step"] == 6:
            raise Killed  # in the second epoch (0-based 1), after some optimiser steps

    with pytest.raises(Killed):
        fit(new_model(), train, val, cfg, run_dir=tmp_path / "killed", callbacks=[kill])
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["epoch"] == 1
    torch.manual_seed(123)  # the resumed process starts with a different global RNG state
    resumed = fit(new_model(), train, val, cfg, run_dir=tmp_path / "killed", resume=True)
    _assert_same_run(straight.model, straight.history, resumed.model, resumed.history)
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_weight_average_is_the_ema_of_the_trained_weights_and_is_what_is_kept(tmp_path):
    train, _ = synthetic(n=64)
    decay = 0.6
    model = new_model()
    raw_after_step = []

    def record(event, state):
        if event == "step":
            raw_after_step.append(_weights(model))

    result = fit(model, train, None, quick_config(epochs=2, ema_decay=decay), run_dir=tmp_path, callbacks=[record])
    assert len(raw_after_step) >= 4
    expected = dict(raw_after_step[0])  # the average starts as a copy of the first updated weights
    for weights in raw_after_step[1:]:
        for key, value in weights.items():
            if value.is_floating_point():  # parameters and BatchNorm running statistics
                expected[key] = decay * expected[key] + (1 - decay) * value
    kept = result.model.state_dict()
    for key, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(kept[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # best.pt holds the average, last.pt the raw weights training continues from (and the average to resume it)
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    key = next(k for k, v in expected.items() if v.is_floating_point() and v.ndim > 1)
    assert torch.equal(best[key], kept[key])
    assert torch.equal(last["model"][key], raw_after_step[-1][key]) and not torch.equal(last["model"][key], best[key])
    assert "ema" in last
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_weight_average_is_what_validation_scores():
    train, val = synthetic(n=64)
    result = fit(new_model(), train, val, quick_config(epochs=2, ema_decay=0.5))
    best_row = result.history[result.best_epoch - 1]
    logits = predict_logits(result.model, val.torch(), 200, 100, "max")
    assert macro_auc(val.Y, logits) == pytest.approx(best_row["val_macro_auc"], abs=1e-12)


def test_workers_do_not_change_the_result():
    train, val = synthetic(n=48)
    a = fit(new_model(), train, val, quick_config(epochs=1))
    b = fit(new_model(), train, val, quick_config(epochs=1, workers=2))
    _assert_same_run(a.model, a.history, b.model, b.history)


def test_augmentation_changes_training_and_runs_without_crops():
    train, val = synthetic(n=48)
    plain = fit(new_model(), train, val, quick_config(epochs=1, window=None))
    mixed = fit(new_model(), train, val, quick_config(epochs=1, window=None, mixup=0.4, noise_mv=0.05))
    assert plain.history[0]["train_loss"] != mixed.history[0]["train_loss"]
    assert mixed.info.training["config"]["mixup"] == 0.4
    with pytest.raises(ValueError, match="mixup must be >= 0"):
        TrainConfig(mixup=-1)


def test_resume_guards(tmp_path):
    train, val = synthetic(n=48)
    fit(new_model(), train, val, quick_config(epochs=1), run_dir=tmp_path)
    with pytest.raises(ValueError, match="options differ.*noise_mv"):
        fit(new_model(), train, val, quick_config(epochs=1, noise_mv=0.1), run_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        fit(new_model(), train, val, quick_config(epochs=1), run_dir=tmp_path)
    with pytest.raises(ValueError, match="options differ.*lr"):
        fit(new_model(), train, val, quick_config(epochs=1, lr=0.1), run_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="labels have 3 columns"):
        fit(new_model(labels=4), train, val, quick_config(epochs=1))


def test_early_stopping_on_noise_labels():
    train, val = synthetic(n=60)
    rng = np.random.default_rng(0)
    noise = from_arrays(val.X, (rng.random(val.Y.shape) < 0.5).astype(np.float32), LABELS)
    result = fit(new_model(), train, noise, quick_config(epochs=12, patience=2))
    assert result.stopped_early and result.stop_reason == "early_stopping" and len(result.history) < 12
    assert len(result.history) - result.best_epoch == 2  # stopped exactly `patience` epochs after the best one


def test_stop_epoch_replays_a_stopped_run_with_the_full_schedule(tmp_path):
    train, val = synthetic(n=48)
    full = fit(new_model(), train, val, quick_config(epochs=3))
    stopped = fit(new_model(), train, val, quick_config(epochs=3, stop_epoch=2), run_dir=tmp_path)
    assert stopped.stop_reason == "stop_epoch" and len(stopped.history) == 2
    assert stopped.history == [{**row, "elapsed_s": mine["elapsed_s"], "val_seconds": mine["val_seconds"],
                                "train_ecgs_per_s": mine["train_ecgs_per_s"]}
                               for row, mine in zip(full.history[:2], stopped.history)]  # same schedule, same epochs
    resumed = fit(new_model(), train, val, quick_config(epochs=3, stop_epoch=2), run_dir=tmp_path, resume=True)
    assert len(resumed.history) == 2  # a resumed run stays stopped
    with pytest.raises(ValueError, match="stop_epoch"):
        TrainConfig(epochs=3, stop_epoch=4)


def test_time_limit_stops_before_an_epoch_that_would_overrun():
    train, val = synthetic(n=48)
    result = fit(new_model(), train, val, quick_config(epochs=50, time_limit_s=1e-6))
    assert len(result.history) == 1 and result.stop_reason == "time_limit" and not result.stopped_early
    assert fit(new_model(), train, val, quick_config(epochs=1)).stop_reason == "completed"


def test_head_bias_starts_at_the_label_log_odds():
    from ecgfm.training.trainer import init_head_bias

    model = new_model()
    Y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, np.nan], [0, 0, 1]], dtype=np.float32)
    init_head_bias(model, Y)
    prevalence = torch.sigmoid(model.get_classifier().bias.detach()).numpy()
    np.testing.assert_allclose(prevalence, [0.25, 1e-4, 2 / 3], rtol=1e-4)


def test_labels_of_a_subset_are_the_subset_rows():
    from torch.utils.data import Subset

    from ecgfm.training.data import RandomCropDataset, labels_of

    Y = np.eye(5, dtype=np.float32)
    data = from_arrays(np.zeros((5, 12, 100), np.float32), Y, list("vwxyz"))
    full = data.torch()
    np.testing.assert_array_equal(labels_of(Subset(full, [3, 1])), Y[[3, 1]])
    np.testing.assert_array_equal(labels_of(RandomCropDataset(Subset(full, [4]), 50, seed=0)), Y[[4]])
    np.testing.assert_array_equal(labels_of(data.torch(np.array([2, 2, 0]))), Y[[2, 2, 0]])  # repeated records
    np.testing.assert_array_equal(labels_of(data.subset([4, 0]).torch()), Y[[4, 0]])


def test_pretrain_recipe_trains_members_and_combines_them(tmp_path):
    from ecgfm.training.pretrain import pretrain
    from ecgfm.training.recipes import Member, Recipe

    data = synthetic_set()
    val = data.part("val").torch()
    recipe = Recipe(name="tiny-ensemble", model="ensemble", members=(
        Member("crops", "resnet1d", quick_config(epochs=2, window=200), TINY),
        Member("whole", "resnet1d", quick_config(epochs=2, window=None), TINY)))
    result = pretrain(data, recipe, run_dir=tmp_path, seed=0)
    assert all((tmp_path / m / "best.pt").exists() for m in ("crops", "whole"))
    model = load(tmp_path / "best.pt")
    info = model.info
    assert info.arch == "ensemble" and info.window is None and info.extra["recipe"] == "tiny-ensemble"
    assert info.metrics["val_macro_auc"] == pytest.approx(result.best_score)
    assert info.labels == LABELS and info.fs == 100.0 and info.preprocess == PREPROCESS
    assert info.data["records"] == {"train": 64, "val": 32, "test": 0}
    crops, whole = load(tmp_path / "crops" / "best.pt"), load(tmp_path / "whole" / "best.pt")
    assert crops.info.training["config"]["seed"] == 0 and whole.info.training["config"]["seed"] == 1
    member_mean = (torch.from_numpy(predict_logits(crops, val, 200, 100, "max"))
                   + torch.from_numpy(predict_logits(whole, val, None))) / 2  # members' logits averaged
    torch.testing.assert_close(torch.from_numpy(predict_logits(model, val)), member_mean, atol=1e-5, rtol=1e-4)
    saved = load(tmp_path / "pretrained")  # the saved model folder: the same ensemble
    torch.testing.assert_close(torch.from_numpy(predict_logits(saved, val)), member_mean, atol=1e-5, rtol=1e-4)
    again = pretrain(data, recipe, run_dir=tmp_path, resume=True, seed=0)  # finished: nothing retrained
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key


def test_pretrain_a_single_network_recipe(tmp_path):
    from ecgfm.training.pretrain import pretrain
    from ecgfm.training.recipes import custom_recipe

    data = synthetic_set(n=48)
    recipe = custom_recipe("resnet1d", TINY, **{**quick_config(epochs=2).to_dict()})
    result = pretrain(data, recipe, run_dir=tmp_path, seed=0)
    assert result.best_epoch is not None and result.best_score == result.model.info.metrics["best_val_macro_auc"]
    saved = load(tmp_path / "pretrained")
    assert saved.info.arch == "resnet1d" and saved.info.arch_kwargs == TINY and saved.info.window == 200
    val = data.part("val").torch()
    np.testing.assert_allclose(predict_logits(saved, val), predict_logits(result.model, val), atol=1e-6)


def test_members_trained_side_by_side_equal_members_trained_one_after_another(tmp_path):
    """jobs=2 on 2 threads gives each member 1 thread: the same runs as training them in turn on 1 thread."""
    from ecgfm.training.members import TrainingClock
    from ecgfm.training.pretrain import pretrain
    from ecgfm.training.recipes import Member, Recipe

    data = synthetic_set()
    recipe = Recipe(name="tiny-pair", model="ensemble", members=(
        Member("crops", "resnet1d", quick_config(epochs=2, window=200), TINY),
        Member("whole", "resnet1d", quick_config(epochs=2, window=None), TINY)))
    in_turn = pretrain(data, recipe, run_dir=tmp_path / "in-turn", seed=0, num_threads=1)
    lines = []
    together = pretrain(data, recipe, run_dir=tmp_path / "together", seed=0, num_threads=2, jobs=2,
                        report=lines.append)
    assert sorted(line.split()[1] for line in lines) == ["crops", "whole"]
    for key, value in in_turn.model.state_dict().items():
        assert torch.equal(value, together.model.state_dict()[key]), key
    member_config = load(tmp_path / "together" / "whole" / "best.pt").info.training["config"]
    assert member_config["num_threads"] == 1 and member_config["seed"] == 1
    assert [m["config"]["num_threads"] for m in together.info.training["members"]] == [1, 1]
    clock = TrainingClock.read(tmp_path / "together")
    assert clock["invocations"][0]["jobs"] == 2 and clock["wall_s"] > 0
    resumed = pretrain(data, recipe, run_dir=tmp_path / "together", seed=0, num_threads=2, jobs=2, resume=True)
    assert len(TrainingClock.read(tmp_path / "together")["invocations"]) == 2  # a resumed invocation adds its time
    for key, value in together.model.state_dict().items():  # finished members are reloaded, not trained again
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert len(resumed.info.training["members"]) == 2


def test_a_failing_member_does_not_stop_the_others(tmp_path, monkeypatch):
    from ecgfm.training.pretrain import pretrain
    from ecgfm.training.recipes import Member, Recipe

    data = synthetic_set()
    recipe = Recipe(name="tiny-broken", model="ensemble", jobs=2, members=(
        Member("fine", "resnet1d", quick_config(epochs=1), TINY),
        Member("broken", "resnet1d", quick_config(epochs=1, channels_last=True), TINY)))  # resnet1d refuses it
    with pytest.raises(RuntimeError, match="1 of 2 members failed.*broken: ValueError.*channels"):
        pretrain(data, recipe, run_dir=tmp_path, seed=0, num_threads=2)
    assert (tmp_path / "fine" / "pretrained" / "model.safetensors").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="torchrun"):
        pretrain(data, recipe, run_dir=tmp_path / "ddp", seed=0, num_threads=2)


def test_load_reads_the_model_of_a_pretrain_run_folder(tmp_path):
    from ecgfm.training.pretrain import pretrain
    from ecgfm.training.recipes import custom_recipe

    data = synthetic_set(n=48)
    result = pretrain(data, custom_recipe("resnet1d", TINY, **quick_config(epochs=1).to_dict()), run_dir=tmp_path)
    val = data.part("val").torch()
    np.testing.assert_allclose(predict_logits(load(tmp_path), val), predict_logits(result.model, val), atol=1e-6)


def test_resuming_a_finished_run_keeps_its_record(tmp_path):
    train, val = synthetic(n=48)
    first = fit(new_model(), train, val, quick_config(epochs=1), run_dir=tmp_path)
    again = fit(new_model(), train, val, quick_config(epochs=1), run_dir=tmp_path, resume=True)
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key
    assert again.info.training["epochs_run"] == 1 and again.info.training["best_epoch"] == 1
    assert again.info.metrics == first.info.metrics
    assert json.loads((tmp_path / "config.json").read_text())["training"]["epochs_run"] == 1
