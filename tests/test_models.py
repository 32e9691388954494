"""Model registry, the common model interface, FLOP counting and model (de)serialisation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import file_mode, umask
from ecgfm.models import ModelInfo, count_flops, count_params, create, list_models, load, save

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


def test_save_and_load_reproduce_outputs_and_check_the_weights(tmp_path):
    torch.manual_seed(0)
    model = create("resnet1d", 2, **TINY["resnet1d"]).eval()
    model.info = ModelInfo.from_model(model, ["NORM", "AFIB"], fs=100.0, label_descriptions={"NORM": "normal ECG"})
    with umask(0o022):
        save(model, tmp_path / "pretrained")
    assert sorted(p.name for p in (tmp_path / "pretrained").iterdir()) == ["config.json", "model.safetensors"]
    # the usual permissions (0o666 minus the umask), not mkstemp's private 0o600
    assert {p.name: file_mode(p) for p in (tmp_path / "pretrained").iterdir()} == {"config.json": 0o644,
                                                                                  "model.safetensors": 0o644}
    config = json.loads((tmp_path / "pretrained" / "config.json").read_text())
    assert config["arch"] == "resnet1d" and config["arch_kwargs"] == TINY["resnet1d"]
    assert len(config["extra"]["weights_sha256"]) == 64
    loaded = load(tmp_path / "pretrained")
    x = torch.randn(2, 12, 250)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.info.labels == ["NORM", "AFIB"] and loaded.info.label_descriptions["NORM"] == "normal ECG"
    assert load(tmp_path).info.labels == ["NORM", "AFIB"]  # a run folder holding pretrained/
    weights = tmp_path / "pretrained" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the weights
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors: checksum mismatch"):
        load(tmp_path / "pretrained")


def test_save_refuses_mismatched_info(tmp_path):
    model = create("resnet1d_small", 2)
    model.info = ModelInfo(arch="resnet1d_small", labels=["A", "B", "C"])
    with pytest.raises(ValueError, match="labels"):
        save(model, tmp_path)
    model.info = ModelInfo(arch="inception1d", labels=["A", "B"])
    with pytest.raises(ValueError, match="describes"):
        save(model, tmp_path)


def test_shipped_weights_are_named_and_describe_themselves():
    from ecgfm.models import get_weights, list_pretrained

    names = list_pretrained()
    assert names and get_weights("pretrained") is get_weights(names[0])
    assert get_weights().transforms().fs == get_weights().info.fs
    with pytest.raises(ValueError, match="no shipped weights named 'nope'"):
        get_weights("nope")


def test_load_rejects_missing_foreign_and_corrupt_files(tmp_path):
    from ecgfm.models.hub import checkpoint_state

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="no model here"):
        load(tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not an ecgfm checkpoint"):
        load(foreign)
    model = create("resnet1d_small", 2)
    model.info = ModelInfo.from_model(model, ["A", "B"])
    state = checkpoint_state(model)
    state["model"]["head.fc.bias"] = state["model"]["head.fc.bias"] + 1  # a changed weight, the checksum kept
    torch.save(state, tmp_path / "flipped.pt")
    with pytest.raises(ValueError, match="flipped.pt: checksum mismatch"):
        load(tmp_path / "flipped.pt")
    good = tmp_path / "good.pt"
    torch.save(checkpoint_state(model), good)
    good.write_bytes(good.read_bytes()[:-100])  # truncated
    with pytest.raises(ValueError, match="good.pt: not a readable ecgfm checkpoint"):
        load(good)


def test_ensemble_averages_member_logits_over_their_own_windows():
    from ecgfm.datasets import from_arrays
    from ecgfm.models.ensemble import combine
    from ecgfm.models.windowing import predict_logits

    torch.manual_seed(0)
    crop = create("resnet1d_small", 3).eval()
    whole = create("xresnet1d18", 3, **TINY["xresnet1d18"]).eval()
    crop.info = ModelInfo.from_model(crop, ["A", "B", "C"], window=250, stride=125, aggregate="max", fs=100.0)
    whole.info = ModelInfo.from_model(whole, ["A", "B", "C"], window=None, aggregate="mean", fs=100.0)
    ens = combine([crop, whole])
    info = ens.info
    assert info.arch == "ensemble" and info.window is None and ens.num_features == crop.num_features + whole.num_features
    x = torch.randn(4, 12, 1000)
    data = from_arrays(x.numpy(), np.zeros((4, 3)), ["A", "B", "C"])
    l_crop = torch.from_numpy(predict_logits(crop, data.torch()))
    with torch.no_grad():
        l_whole = whole(x)
        torch.testing.assert_close(ens(x), (l_crop + l_whole) / 2, atol=1e-5, rtol=1e-4)
        assert ens.forward_features(x).shape == (4, ens.num_features)
        by_prob = combine([crop, whole], average="prob")
        mean_prob = (torch.sigmoid(l_crop) + torch.sigmoid(l_whole)) / 2
        torch.testing.assert_close(torch.sigmoid(by_prob(x)), mean_prob, atol=1e-5, rtol=1e-4)
        assert by_prob.arch_kwargs["average"] == "prob" and ens.arch_kwargs["average"] == "logit"
    whole_only = combine([whole, whole])
    with torch.no_grad():  # with whole-record members forward == forward_head(forward_features), as for any model
        torch.testing.assert_close(whole_only(x), whole_only.forward_head(whole_only.forward_features(x)))
        torch.testing.assert_close(whole_only(x), whole(x), atol=1e-5, rtol=1e-4)
    whole.info = whole.info.replace(labels=["A", "C", "B"])
    with pytest.raises(ValueError, match="same labels"):
        combine([crop, whole])


def test_whole_record_labels_are_scored_by_the_whole_record_members_alone(tmp_path):
    from ecgfm.datasets import from_arrays
    from ecgfm.models.ensemble import combine, vote_weights
    from ecgfm.models.windowing import predict_logits

    torch.manual_seed(0)
    crop = create("resnet1d_small", 3).eval()
    whole_a = create("xresnet1d18", 3, **TINY["xresnet1d18"]).eval()
    whole_b = create("xresnet1d18", 3, **TINY["xresnet1d18"]).eval()
    labels = ["SR", "IMI", "SARRH"]
    crop.info = ModelInfo.from_model(crop, labels, window=250, stride=125, aggregate="max", fs=100.0)
    whole_a.info = ModelInfo.from_model(whole_a, labels, window=None, fs=100.0)
    whole_b.info = ModelInfo.from_model(whole_b, labels, window=None, fs=100.0)
    members = [crop, whole_a, whole_b]
    ens = combine(members, whole_record_labels=["SARRH", "SR", "AFIB"])  # AFIB: not predicted, skipped
    assert ens.specs[0]["abstain"] == [0, 2] and "abstain" not in ens.specs[1]
    x = torch.randn(4, 12, 1000)
    l_crop = torch.from_numpy(predict_logits(crop, from_arrays(x.numpy(), np.zeros((4, 3)), labels).torch()))
    with torch.no_grad():
        l_a, l_b = whole_a(x), whole_b(x)
        expected = torch.stack([(l_a[:, 0] + l_b[:, 0]) / 2, (l_crop[:, 1] + l_a[:, 1] + l_b[:, 1]) / 3,
                                (l_a[:, 2] + l_b[:, 2]) / 2], dim=1)
        torch.testing.assert_close(ens(x), expected, atol=1e-5, rtol=1e-4)
        save(ens, tmp_path / "routed")  # the routing travels with the weights
        again = load(tmp_path / "routed")
        torch.testing.assert_close(again(x), ens(x))
        ens.reset_classifier(5)  # new labels: every member votes again
        assert all("abstain" not in spec for spec in ens.arch_kwargs["members"]) and ens(x).shape == (4, 5)
    no_whole = combine([members[0], members[0]], whole_record_labels=["SR"])  # nobody reads whole records
    assert all("abstain" not in spec for spec in no_whole.specs)
    with pytest.raises(ValueError, match="no voting member"):
        vote_weights([{"abstain": [1]}, {"abstain": [1]}], 3)
    with pytest.raises(ValueError, match="outside"):
        vote_weights([{"abstain": [3]}], 3)
