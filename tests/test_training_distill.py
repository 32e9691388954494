"""Distillation: soft targets, teacher logits computed once and cached, blended into the training split only."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.special import expit

from ecgfm.datasets import from_arrays
from ecgfm.models import ModelInfo, create
from ecgfm.models.leadsets import LEAD_SETS
from ecgfm.signal import Pipeline
from ecgfm.training import distill
from ecgfm.training.distill import Distillation, distil, soft_targets, teacher_logits
from ecgfm.training.trainer import init_head_bias, positive_weights

LABELS = ["NORM", "IMI", "AFIB"]


def _teacher(labels=LABELS) -> torch.nn.Module:
    torch.manual_seed(0)
    net = create("xresnet1d18", num_labels=len(labels), widths=(8, 8, 8, 8), stem_widths=(8, 8, 8)).eval()
    net.info = ModelInfo.from_model(net, labels, fs=100.0, preprocess=Pipeline.default(fs=100, seconds=2).to_dict())
    return net


def _data(masked: bool = False, n: int = 24):
    rng = np.random.default_rng(0)
    X = rng.normal(0, 0.3, (n, 12, 200)).astype(np.float32)
    pipeline = Pipeline.default(fs=100, seconds=2, lead_sets=LEAD_SETS if masked else None)
    if masked:
        X = np.concatenate([X, np.ones_like(X)], axis=1)
    Y = (rng.random((n, 3)) < 0.3).astype(np.float32)
    split = np.array(["train"] * 16 + ["val"] * 4 + ["test"] * 4)
    return from_arrays(X, Y, LABELS, preprocess=pipeline.to_dict(), split=split)


def test_soft_targets_blend_labels_and_tempered_teacher_probabilities():
    Y = np.array([[1.0, 0.0, np.nan]])
    logits = np.array([[2.0, -1.0, 0.5]])
    out = soft_targets(Y, logits, alpha=0.3, temperature=2.0)
    np.testing.assert_allclose(out, [[0.3 + 0.7 * expit(1.0), 0.7 * expit(-0.5), expit(0.25)]], rtol=1e-6)
    np.testing.assert_allclose(soft_targets(Y, logits, alpha=1.0)[:, :2], Y[:, :2])
    with pytest.raises(ValueError, match="alpha"):
        Distillation(alpha=1.5)


def test_teacher_logits_are_the_teacher_run_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path))
    teacher, data = _teacher(), _data()
    first = teacher_logits(teacher, data)
    with torch.no_grad():
        direct = teacher(torch.from_numpy(data.signals())).numpy()
    np.testing.assert_allclose(first, direct, atol=1e-4)
    assert len(list((tmp_path / "teacher").glob("logits-*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the cached logits should have been read")

    monkeypatch.setattr(distill, "record_logits", refuse)
    np.testing.assert_array_equal(teacher_logits(teacher, data), first)
    other = _teacher()
    with torch.no_grad():
        other.get_classifier().bias.add_(1.0)  # other weights: another cache entry, so the teacher runs again
    with pytest.raises(AssertionError, match="cached logits"):
        teacher_logits(other, data)


def test_teacher_reads_the_leads_of_data_with_presence_channels(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path))
    teacher = _teacher()
    np.testing.assert_allclose(teacher_logits(teacher, _data(masked=True)), teacher_logits(teacher, _data()),
                               atol=1e-6)
    reduced = _data(masked=True)
    reduced.X[0, 18:] = 0  # record 0 lacks its chest leads: the teacher cannot read it
    with pytest.raises(ValueError, match="lacks leads"):
        teacher_logits(teacher, reduced, cache=False)


def test_distil_blends_the_training_split_only_and_keeps_labels_the_teacher_lacks(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path))
    data = _data()
    teacher = _teacher(labels=["IMI", "NORM"])  # no AFIB, other order
    out = distil(data, Distillation(alpha=0.5), teacher=teacher)
    logits = teacher_logits(teacher, data)
    train = data.split == "train"
    np.testing.assert_allclose(out.Y[train, 0], 0.5 * data.Y[train, 0] + 0.5 * expit(logits[train, 1]), rtol=1e-6)
    np.testing.assert_allclose(out.Y[train, 1], 0.5 * data.Y[train, 1] + 0.5 * expit(logits[train, 0]), rtol=1e-6)
    np.testing.assert_array_equal(out.Y[:, 2], data.Y[:, 2])  # AFIB: the teacher has no opinion
    np.testing.assert_array_equal(out.Y[~train], data.Y[~train])  # validation and test keep their labels
    assert out.source["distillation"]["alpha"] == 0.5 and len(out.source["distillation"]["teacher_sha256"]) == 64


def test_a_teacher_that_knows_held_out_labels_is_refused():
    data = dataclasses.replace(_data(), source={"kind": "arrays", "excluded_labels": ["AFIB"]})
    with pytest.raises(ValueError, match=r"held-out labels \['AFIB'\]"):
        distil(data, Distillation(), teacher=_teacher())


def test_head_bias_and_class_weights_read_soft_targets_as_expected_prevalence():
    soft = np.array([[0.9, 0.1], [0.7, 0.6], [0.2, 0.3], [0.0, 0.2]], dtype=np.float32)
    net = create("xresnet1d18", num_labels=2, widths=(8, 8, 8, 8), stem_widths=(8, 8, 8))
    init_head_bias(net, soft)
    prevalence = soft.mean(axis=0)
    np.testing.assert_allclose(expit(net.get_classifier().bias.detach().numpy()), prevalence, rtol=1e-5)
    np.testing.assert_allclose(positive_weights(soft, "balanced", 50).numpy(),
                               (4 - soft.sum(0)) / soft.sum(0), rtol=1e-5)


def test_a_distilling_lead_set_recipe_trains_end_to_end(tmp_path, monkeypatch):
    from ecgfm.models import load, save
    from ecgfm.training.config import TrainConfig
    from ecgfm.training.pretrain import pretrain
    from ecgfm.training.recipes import Recipe

    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))
    save(_teacher(), tmp_path / "teacher")
    config = TrainConfig(epochs=2, batch_size=8, window=None, lead_drop=0.5, device_filter=0.5, baseline_mv=0.3,
                         emg_mv=0.05, lead_mix=0.3, lead_gain=0.05, progress=False, tensorboard=False)
    recipe = Recipe(name="tiny", model="xresnet1d18", config=config, lead_sets=LEAD_SETS,
                    model_kwargs={"widths": [8, 8, 8, 8], "stem_widths": [8, 8, 8]},
                    distill=Distillation(teacher="unused", alpha=0.5))
    result = pretrain(_data(masked=True), recipe, run_dir=tmp_path / "run", teacher=str(tmp_path / "teacher"),
                      num_threads=1)
    model = load(tmp_path / "run" / "pretrained")
    assert model.info.lead_mask and model.info.in_leads == 24 and result.model.info.training["epochs_run"] == 2
    assert model.info.data["distillation"]["teacher"] == str(tmp_path / "teacher")
    assert model(torch.zeros(2, 24, 200)).shape == (2, 3)
