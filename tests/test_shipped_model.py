"""The shipped foundation model: loads offline, and its predictions on PTB-XL fold 10 reproduce its stored metrics."""
from __future__ import annotations

import numpy as np
import pytest

import ecgfm
from ecgfm.models import default_weights_dir


def test_shipped_model_loads_offline_and_describes_itself():
    model, info = ecgfm.load_pretrained()
    assert info.arch in ecgfm.list_models()
    assert len(info.labels) == model.num_labels >= 40
    assert set(info.thresholds) == set(info.labels)
    assert info.preprocess["steps"], "the model must carry its preprocessing"
    assert all(info.label_descriptions.get(label) for label in info.labels)
    assert (default_weights_dir() / "model.safetensors").stat().st_size < 30e6
    summary = info.metrics["test"]["summary"]
    assert 0.5 < summary["macro_auc"]["value"] <= 1.0


def test_shipped_model_reproduces_its_fold10_metrics(ptbxl_dir, tmp_path, monkeypatch):
    from ecgfm.evaluation.model_eval import score_model
    from ecgfm.evaluation.metrics import roc_auc

    _, info = ecgfm.load_pretrained()
    stored = info.metrics["test"]["per_label"]
    scored, _, _ = score_model(None, ptbxl=ptbxl_dir, labels=list(stored), progress=False)
    test = scored["test"]
    for j, label in enumerate(test.arrays.label_names):
        auc = roc_auc(test.arrays.Y[:, j], test.scores[:, j])
        assert auc == pytest.approx(stored[label]["auc"], abs=1e-4), label
    macro = np.mean([stored[label]["auc"] for label in stored])
    assert macro == pytest.approx(info.metrics["test"]["summary"]["macro_auc"]["value"], abs=1e-9)
