"""Model registry, the common model interface, FLOP counting and model (de)serialisation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import ecgfm.models.checkpoint as checkpoint_module
from ecgfm.models import (ModelInfo, count_flops, count_params, create, list_models, load_checkpoint, load_pretrained,
                          save_pretrained)

# Small settings keep every architecture fast enough for a unit test.
TINY = {
    "resnet1d": {"widths": [8, 16], "depths": [1, 1], "stem_width": 8},
    "resnet1d_small": {},
    "xresnet1d18": {"widths": [8, 8, 8, 8], "stem_widths": [8, 8, 8]},
    "xresnet1d34": {"widths": [8, 8, 8, 8], "stem_widths": [8, 8, 8]},
    "xresnet1d50": {"widths": [4, 4, 4, 4], "stem_widths": [8, 8, 16]},
    "xresnet1d101": {"widths": [4, 4, 4, 4], "stem_widths": [8, 8, 16]},
    "inception1d": {"filters": 4, "bottleneck": 4},
    "ensemble": {"members": [
        {"arch": "resnet1d_small", "kwargs": {}, "window": 250, "stride": 125, "aggregate": "max"},
        {"arch": "xresnet1d18", "kwargs": {"widths": [8, 8, 8, 8], "stem_widths": [8, 8, 8]}, "window": None,
         "stride": None, "aggregate": "mean"}]},
}


def test_registry_lists_the_three_families():
    names = list_models()
    assert {"resnet1d", "xresnet1d50", "xresnet1d101", "inception1d"} <= set(names)
    assert list_models("xresnet1d*") == sorted(n for n in names if n.startswith("xresnet1d"))
    assert set(TINY) == set(names), "add new models to TINY so the interface test covers them"


def test_create_rejects_unknown_names_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create("nope", 3)
    with pytest.raises(ValueError, match="num_labels"):
        create("resnet1d", 0)
    with pytest.raises(ValueError, match="JSON"):
        create("resnet1d", 3, widths=[object()])


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_interface(name):
    torch.manual_seed(0)
    model = create(name, num_labels=5, in_leads=8, **TINY[name]).eval()
    assert model.arch_name == name and model.num_labels == 5
    for length in (250, 1000):
        x = torch.randn(3, 8, length)
        features = model.forward_features(x)
        assert features.shape == (3, model.num_features)
        logits = model(x)
        assert logits.shape == (3, 5)
        if name != "ensemble":  # an ensemble aggregates window logits, not window features (tested below)
            torch.testing.assert_close(logits, model.forward_head(features))
    assert model.forward_head(features, pre_logits=True).shape[0] == 3
    model.reset_classifier(2)
    assert model(torch.randn(2, 8, 300)).shape == (2, 2) and model.num_labels == 2
    with pytest.raises(ValueError, match="leads, samples"):
        model.forward_features(torch.randn(8, 300))


def test_models_train_a_step_and_gradients_reach_the_stem():
    model = create("resnet1d", 3, **TINY["resnet1d"])
    loss = nn.functional.binary_cross_entropy_with_logits(model(torch.randn(4, 12, 250)), torch.ones(4, 3))
    loss.backward()
    stem = next(model.backbone.parameters())
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_benchmark_configurations_match_strodthoff_2020():
    x101 = create("xresnet1d101", 71)
    blocks = [m for m in x101.backbone if m.__class__.__name__ == "XResBlock1d"]
    assert len(blocks) == 3 + 4 + 23 + 3
    assert x101.num_features == 2 * 256  # bottleneck 64 x expansion 4, concat pooling doubles
    inception = create("inception1d", 71)
    assert [c.kernel_size[0] for c in inception.backbone.blocks[0].convs] == [39, 19, 9]
    assert inception.num_features == 2 * 128
    head = x101.head.pre_logits  # BN, dropout 0.25, linear->128, ReLU, BN, dropout 0.5
    assert [type(m).__name__ for m in head] == ["BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout"]
    assert head[1].p == 0.25 and head[5].p == 0.5 and head[2].out_features == 128


def test_count_flops_matches_the_analytic_count_of_a_convolution():
    conv = nn.Conv1d(12, 8, kernel_size=5, padding=2, bias=False)
    # one multiply-add per (output channel, input channel, tap, output sample), counted as 2 FLOPs
    assert count_flops(conv, (1, 12, 1000)) == 2 * 8 * 12 * 5 * 1000
    model = create("resnet1d_small", 4)
    model.train()
    assert count_flops(model, (1, 12, 1000)) > 0 and model.training  # mode restored
    assert count_params(conv) == 8 * 12 * 5


def test_model_info_round_trip_keeps_unknown_keys():
    info = ModelInfo(arch="resnet1d", labels=["NORM", "IMI"], fs=100.0, thresholds={"NORM": 0.4})
    data = json.loads(json.dumps(info.to_dict()))
    data["future_field"] = 1
    back = ModelInfo.from_dict(data)
    assert back.labels == ["NORM", "IMI"] and back.thresholds == {"NORM": 0.4} and back.extra == {"future_field": 1}
    with pytest.raises(ValueError, match="thresholds"):
        ModelInfo(arch="resnet1d", labels=["NORM"], thresholds={"AFIB": 0.5})
    with pytest.raises(ValueError, match="duplicates"):
        ModelInfo(arch="resnet1d", labels=["NORM", "NORM"])


def test_save_and_load_pretrained_reproduce_outputs(tmp_path):
    torch.manual_seed(0)
    model = create("resnet1d", 2, **TINY["resnet1d"]).eval()
    info = ModelInfo.from_model(model, ["NORM", "AFIB"], fs=100.0, label_descriptions={"NORM": "normal ECG"})
    save_pretrained(model, info, tmp_path / "pretrained")
    assert sorted(p.name for p in (tmp_path / "pretrained").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "pretrained" / "config.json").read_text())
    assert config["arch"] == "resnet1d" and config["arch_kwargs"] == TINY["resnet1d"]
    loaded, loaded_info = load_pretrained(tmp_path / "pretrained")
    x = torch.randn(2, 12, 250)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded_info.labels == ["NORM", "AFIB"] and loaded_info.label_descriptions["NORM"] == "normal ECG"
    # load_checkpoint accepts the folder too
    again, _ = load_checkpoint(tmp_path / "pretrained")
    torch.testing.assert_close(again(x), model(x))


def test_save_pretrained_refuses_mismatched_info(tmp_path):
    model = create("resnet1d_small", 2)
    with pytest.raises(ValueError, match="labels"):
        save_pretrained(model, ModelInfo(arch="resnet1d_small", labels=["A", "B", "C"]), tmp_path)
    with pytest.raises(ValueError, match="describes"):
        save_pretrained(model, ModelInfo(arch="inception1d", labels=["A", "B"]), tmp_path)


def test_load_pretrained_default_location_without_weights_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "default_weights_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained()


def test_load_checkpoint_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not an ecgfm checkpoint"):
        load_checkpoint(foreign)


def test_ensemble_averages_member_logits_over_their_own_windows():
    from ecgfm.models.ensemble import combine
    from ecgfm.training.predict import predict_logits
    from ecgfm.training.data import ArrayDataset

    torch.manual_seed(0)
    crop = create("resnet1d_small", 3).eval()
    whole = create("xresnet1d18", 3, **TINY["xresnet1d18"]).eval()
    infos = [ModelInfo.from_model(crop, ["A", "B", "C"], window=250, stride=125, aggregate="max", fs=100.0),
             ModelInfo.from_model(whole, ["A", "B", "C"], window=None, aggregate="mean", fs=100.0)]
    ens, info = combine([(crop, infos[0]), (whole, infos[1])])
    assert info.arch == "ensemble" and info.window is None and ens.num_features == crop.num_features + whole.num_features
    x = torch.randn(4, 12, 1000)
    data = ArrayDataset(x.numpy(), np.zeros((4, 3), np.float32))
    l_crop = torch.from_numpy(predict_logits(crop, data, 250, 125, "max"))
    with torch.no_grad():
        l_whole = whole(x)
        torch.testing.assert_close(ens(x), (l_crop + l_whole) / 2, atol=1e-5, rtol=1e-4)
        assert ens.forward_features(x).shape == (4, ens.num_features)
        by_prob, _ = combine([(crop, infos[0]), (whole, infos[1])], average="prob")
        mean_prob = (torch.sigmoid(l_crop) + torch.sigmoid(l_whole)) / 2
        torch.testing.assert_close(torch.sigmoid(by_prob(x)), mean_prob, atol=1e-5, rtol=1e-4)
        assert by_prob.arch_kwargs["average"] == "prob" and ens.arch_kwargs["average"] == "logit"
    whole_only, _ = combine([(whole, infos[1]), (whole, infos[1])])
    with torch.no_grad():  # with whole-record members forward == forward_head(forward_features), as for any model
        torch.testing.assert_close(whole_only(x), whole_only.forward_head(whole_only.forward_features(x)))
        torch.testing.assert_close(whole_only(x), whole(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="same labels"):
        combine([(crop, infos[0]), (whole, infos[1].replace(labels=["A", "C", "B"]))])


def test_whole_record_labels_are_scored_by_the_whole_record_members_alone(tmp_path):
    from ecgfm.models import load_checkpoint, save_pretrained
    from ecgfm.models.ensemble import combine, vote_weights
    from ecgfm.training.data import ArrayDataset
    from ecgfm.training.predict import predict_logits

    torch.manual_seed(0)
    crop = create("resnet1d_small", 3).eval()
    whole_a = create("xresnet1d18", 3, **TINY["xresnet1d18"]).eval()
    whole_b = create("xresnet1d18", 3, **TINY["xresnet1d18"]).eval()
    labels = ["SR", "IMI", "SARRH"]
    infos = [ModelInfo.from_model(crop, labels, window=250, stride=125, aggregate="max", fs=100.0),
             ModelInfo.from_model(whole_a, labels, window=None, fs=100.0),
             ModelInfo.from_model(whole_b, labels, window=None, fs=100.0)]
    members = list(zip([crop, whole_a, whole_b], infos))
    ens, info = combine(members, whole_record_labels=["SARRH", "SR", "AFIB"])  # AFIB: not predicted, skipped
    assert ens.specs[0]["abstain"] == [0, 2] and "abstain" not in ens.specs[1]
    x = torch.randn(4, 12, 1000)
    l_crop = torch.from_numpy(predict_logits(crop, ArrayDataset(x.numpy(), np.zeros((4, 3), np.float32)), 250, 125))
    with torch.no_grad():
        l_a, l_b = whole_a(x), whole_b(x)
        expected = torch.stack([(l_a[:, 0] + l_b[:, 0]) / 2, (l_crop[:, 1] + l_a[:, 1] + l_b[:, 1]) / 3,
                                (l_a[:, 2] + l_b[:, 2]) / 2], dim=1)
        torch.testing.assert_close(ens(x), expected, atol=1e-5, rtol=1e-4)
        save_pretrained(ens, info, tmp_path / "routed")  # the routing travels with the weights
        again, _ = load_checkpoint(tmp_path / "routed")
        torch.testing.assert_close(again(x), ens(x))
        ens.reset_classifier(5)  # new labels: every member votes again
        assert all("abstain" not in spec for spec in ens.arch_kwargs["members"]) and ens(x).shape == (4, 5)
    no_whole, _ = combine([members[0], members[0]], whole_record_labels=["SR"])  # nobody reads whole records
    assert all("abstain" not in spec for spec in no_whole.specs)
    with pytest.raises(ValueError, match="no voting member"):
        vote_weights([{"abstain": [1]}, {"abstain": [1]}], 3)
    with pytest.raises(ValueError, match="outside"):
        vote_weights([{"abstain": [3]}], 3)
