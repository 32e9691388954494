"""Channels-last execution (``ecgfm.models.layout``): the same network, parameters and results as the 1-D path."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ecgfm.datasets import from_arrays
from ecgfm.models import create, load
from ecgfm.models.ensemble import combine
from ecgfm.models.info import ModelInfo
from ecgfm.models.layout import Conv1dAs2d, set_channels_last
from ecgfm.training import TrainConfig, fit

SMALL = {
    "xresnet1d50": {"stem_widths": (8, 8, 16), "widths": (4, 4, 8, 8)},
    "xresnet1d18": {"stem_widths": (8, 8, 8), "widths": (8, 8, 16, 16)},
    "inception1d": {"depth": 3, "filters": 4, "bottleneck": 4},
}


def small(name: str, labels: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return create(name, labels, **SMALL[name])


def leaf_types(model: nn.Module) -> set[str]:
    return {type(m).__name__ for m in model.backbone.modules() if next(m.children(), None) is None}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_channels_last_computes_the_same_outputs_gradients_and_statistics(name):
    plain = small(name)
    twin = set_channels_last(copy.deepcopy(plain))
    assert twin.channels_last and "Conv1dAs2d" in leaf_types(twin) and "Conv1d" not in leaf_types(twin)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    x = torch.randn(6, 12, 300)
    plain.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(x), plain(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(twin.forward_features(x), plain.forward_features(x), atol=1e-4, rtol=1e-4)
    plain.train(), twin.train()
    torch.manual_seed(1)  # the same dropout masks in both
    plain(x).square().mean().backward()
    torch.manual_seed(1)
    twin(x).square().mean().backward()
    scale = max(p.grad.abs().max() for p in plain.parameters())
    for (key, p), q in zip(plain.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4 * float(scale), rtol=1e-3, msg=key)
    for (key, a), b in zip(plain.state_dict().items(), twin.state_dict().values()):  # BN running statistics
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=key)


def test_switching_back_restores_the_one_d_modules_exactly():
    model = small("xresnet1d50")
    x = torch.randn(2, 12, 250)
    model.eval()
    with torch.no_grad():
        before = model(x)
        set_channels_last(model)
        set_channels_last(model, False)
        after = model(x)
    assert not model.channels_last and "Conv1d" in leaf_types(model) and "Conv1dAs2d" not in leaf_types(model)
    assert torch.equal(before, after)


def test_models_with_layout_bound_blocks_refuse_with_a_reason():
    with pytest.raises(ValueError, match="ResNet1d does not support channels-last"):
        set_channels_last(create("resnet1d", 3, widths=[8, 16], depths=[1, 1], stem_width=8))


def test_an_ensemble_switches_every_member():
    members = []
    for seed, window in ((0, 200), (1, None)):
        torch.manual_seed(seed)
        net = create("xresnet1d18", 3, **SMALL["xresnet1d18"])
        net.info = ModelInfo.from_model(net, ["A", "B", "C"], fs=100.0, window=window)
        members.append(net)
    ensemble = combine(members)
    reference = copy.deepcopy(ensemble).eval()
    set_channels_last(ensemble).eval()
    assert all(member.channels_last for member in ensemble.members)
    x = torch.randn(2, 12, 400)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), reference(x), atol=1e-4, rtol=1e-4)


def _data(n: int = 48, length: int = 300):
    generator = torch.Generator().manual_seed(0)
    Y = (torch.rand(n, 3, generator=generator) < 0.4).float()
    t = torch.arange(length) / 100.0
    X = 0.3 * torch.randn(n, 12, length, generator=generator)
    for j, freq in enumerate((3.0, 7.0, 13.0)):
        X[:, j] += Y[:, j, None] * torch.sin(2 * torch.pi * freq * t)
    labels = ["A", "B", "C"]
    return from_arrays(X[:32].numpy(), Y[:32].numpy(), labels), from_arrays(X[32:].numpy(), Y[32:].numpy(), labels)


class Killed(Exception):
    pass


def test_fit_in_channels_last_mode_trains_alike_resumes_exactly_and_hands_back_a_one_d_model(tmp_path):
    train, val = _data()
    config = TrainConfig(epochs=2, batch_size=8, window=200, progress=False, num_threads=1, seed=0)
    plain = fit(small("xresnet1d18", 3), train, val, config)
    fast_config = TrainConfig(**{**config.to_dict(), "channels_last": True})
    fast = fit(small("xresnet1d18", 3), train, val, fast_config, run_dir=tmp_path / "straight")
    assert not fast.model.channels_last and "Conv1dAs2d" not in leaf_types(fast.model)
    # float rounding differs, the training does not
    assert fast.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"], rel=1e-3)
    loaded = load(tmp_path / "straight" / "best.pt")
    assert loaded.info.training["config"]["channels_last"] is True and not loaded.channels_last

    def kill(event, state):
        if event == "step" and state["epoch"] == 1 and state["step"] == 6:  # global step, mid second epoch
            raise Killed

    victim = small("xresnet1d18", 3)
    with pytest.raises(Killed):
        fit(victim, train, val, fast_config, run_dir=tmp_path / "killed", callbacks=[kill])
    assert not victim.channels_last  # a failed run does not leave the model switched
    resumed = fit(small("xresnet1d18", 3), train, val, fast_config, run_dir=tmp_path / "killed", resume=True)
    for key, value in fast.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in fast.history]


def test_conv_twin_keeps_isinstance_and_rejects_non_zero_padding():
    model = set_channels_last(small("xresnet1d18"))
    conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv1d))
    assert isinstance(conv, Conv1dAs2d)
    set_channels_last(model, False)
    conv.padding_mode = "circular"
    with pytest.raises(ValueError, match="zero padding"):
        set_channels_last(model)


def test_fit_refuses_an_unsupported_model_before_writing_and_handles_a_weight_average(tmp_path):
    train, val = _data()
    config = TrainConfig(epochs=1, batch_size=8, window=200, progress=False, num_threads=1, channels_last=True)
    resnet = create("resnet1d", 3, widths=[8, 16], depths=[1, 1], stem_width=8)
    with pytest.raises(ValueError, match="does not support channels-last"):
        fit(resnet, train, val, config, run_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    averaged = fit(small("xresnet1d18", 3), train, val, TrainConfig(**{**config.to_dict(), "ema_decay": 0.9}))
    assert not averaged.model.channels_last and averaged.best_score is not None
