"""Fine-tuning a foundation for new labels: strategies, discriminative rates, frozen BatchNorm, saved models, resume."""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

import ecgfm.transfer.stages as stages
from ecgfm.datasets import LabelledSet, from_arrays
from ecgfm.models import ModelInfo, build_model, create, load
from ecgfm.models.windowing import extract_features
from ecgfm.transfer.config import WARMUP_LR, FinetuneConfig
from ecgfm.transfer.finetune import finetune, finetuned_info, load_foundation, predict_proba
from ecgfm.transfer.probe import EmbeddingProbe, attach_linear_head, fit_probe_head
from ecgfm.transfer.splits import check_patient_disjoint, inner_validation_split
from ecgfm.transfer.stages import body_parameter_groups, epoch_index, frozen_batchnorm, plan_stages

PREPROCESS = {"steps": [{"name": "resample", "fs": 100.0}]}
TINY = dict(widths=(8, 8), depths=(1, 1), stem_width=8, head_hidden=16)


def tiny_foundation(labels=("OLD1", "OLD2"), seed=0) -> nn.Module:
    """A small resnet1d 'foundation' (random weights) carrying the info a pre-trained one carries."""
    torch.manual_seed(seed)
    model = create("resnet1d", num_labels=len(labels), **TINY)
    model.info = ModelInfo.from_model(model, list(labels), label_descriptions={n: n.lower() for n in labels},
                                      fs=100.0, window=100, stride=50, preprocess=PREPROCESS,
                                      data={"excluded_labels": ["NEW1"]})
    return model.eval()


def novel_dataset(n_patients=90, seed=0, prevalence=(0.25, 0.3)) -> LabelledSet:
    """Two records per patient, 12 x 200 samples; NEW1 adds a 3 Hz wave, NEW2 shifts leads I-aVF (both learnable)."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(n_patients), 2).astype(str)
    patient_labels = (rng.random((n_patients, 2)) < prevalence).astype(np.float32)
    Y = np.repeat(patient_labels, 2, axis=0)
    X = rng.normal(0, 0.3, (len(Y), 12, 200)).astype(np.float32)
    t = np.arange(200) / 100
    X[Y[:, 0] == 1] += (0.6 * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    X[Y[:, 1] == 1, :6] += 0.4
    folds = (np.arange(len(Y)) // 2) % 10 + 1
    return from_arrays(X, Y, ["NEW1", "NEW2"], preprocess=PREPROCESS, ids=np.arange(len(Y)), patient_ids=pids,
                       folds=folds, label_descriptions={"NEW1": "first new finding", "NEW2": "second"})


def quick(strategy="full", **kw) -> FinetuneConfig:
    """A tiny budget; the SGD warm-up head (``new_head="fc"``) unless a test asks for the probe; one recipe (no
    whole-body candidate) unless a test asks for it."""
    return FinetuneConfig.for_strategy(strategy, **{"epochs": 3, "patience": None, "warmup_epochs": 1,
                                                    "min_epoch_samples": 32, "batch_size": 16, "device": "cpu",
                                                    "new_head": "fc", "whole_body": False, **kw})


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_plan_stages_fill_the_budget():
    for strategy in ("full", "linear", "gradual", "scratch"):
        for epochs in (1, 2, 5, 12):
            for new_head in ("fc", "probe"):
                config = FinetuneConfig.for_strategy(strategy, epochs=epochs, warmup_epochs=3, new_head=new_head)
                planned = plan_stages(config, n_groups=4)
                assert sum(s.epochs for s in planned) == epochs and all(s.epochs >= 1 for s in planned)
                assert planned[-1].name == "final" and planned[-1].early_stopping
                assert all(s.name != "warmup" for s in planned) or not config.uses_probe  # the probe replaces it
    assert [s.name for s in plan_stages(FinetuneConfig.for_strategy(epochs=10), 4)] == ["final"]  # probe, fine-tune
    gradual = plan_stages(FinetuneConfig.for_strategy("gradual", epochs=10, warmup_epochs=2, unfreeze_epochs=1,
                                                      new_head="fc"), 4)
    assert [(s.name, s.n_unfrozen) for s in gradual] == [("warmup", 0), ("unfreeze-1", 1), ("unfreeze-2", 2),
                                                         ("unfreeze-3", 3), ("final", 4)]
    assert gradual[0].lr == WARMUP_LR
    scratch = plan_stages(FinetuneConfig(strategy="scratch"), 4)[0]
    assert (scratch.schedule, scratch.lr, scratch.warmup_frac) == ("onecycle", 1e-2, 0.3)  # the pre-training recipe


def test_training_defaults_follow_the_strategy():
    """Full and gradual fine-tuning start at a tenth of the pre-training rate; linear probes and scratch at it."""
    for strategy, lr, schedule in (("full", 1e-3, "cosine"), ("gradual", 1e-3, "cosine"), ("linear", 1e-2, "cosine"),
                                   ("scratch", 1e-2, "onecycle")):
        train = FinetuneConfig(strategy=strategy).train
        assert (train.lr, train.schedule, train.epochs, train.patience, train.batch_size) == (lr, schedule, 30, 8, 32)
        assert FinetuneConfig.for_strategy(strategy, epochs=5).train.lr == lr
    config = FinetuneConfig.for_strategy("full", lr=3e-3, mixup=0.2, body_lr_scale=0.5)
    assert (config.train.lr, config.train.mixup, config.body_lr_scale) == (3e-3, 0.2, 0.5)


def test_config_round_trip_refuses_unknown_options():
    config = FinetuneConfig.for_strategy(lr=3e-3, scale_jitter=0.1)
    assert FinetuneConfig.from_dict(config.to_dict()) == config
    assert FinetuneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown fine-tuning options: \\['learning_rate'\\]"):
        FinetuneConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="unknown fine-tuning options: \\['learning_rate'\\]"):
        FinetuneConfig.for_strategy(learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown training options: \\['learning_rate'\\]"):
        FinetuneConfig.from_dict({"train": {"learning_rate": 0.1}})


def test_body_groups_cover_every_pretrained_parameter_once():
    model = tiny_foundation()
    for new_head, new in (("fc", model.head.fc.parameters()), ("head", model.head.parameters())):
        new = {id(p) for p in new}
        groups = body_parameter_groups(model, 4, new_head)
        ids = [id(p) for g in groups for p in g]
        assert len(ids) == len(set(ids))
        assert set(ids) | new == {id(p) for p in model.parameters()} and not set(ids) & new
        first_layer = next(model.backbone.children())
        assert {id(p) for p in first_layer.parameters()} <= {id(p) for p in groups[0]}  # input side first
    top = body_parameter_groups(model, 4, "fc")[-1]  # the head's pretrained hidden layer is the top group
    assert {id(p) for p in top} == {id(p) for p in model.head.pre_logits.parameters()}


def test_frozen_batchnorm_keeps_statistics_through_train_mode():
    model = tiny_foundation()
    bn = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm1d)]
    before = [m.running_mean.clone() for m in bn]
    with frozen_batchnorm(model.backbone):
        model.train()
        assert not any(m.training for m in bn) and model.head.pre_logits[0].training
        model(torch.randn(8, 12, 100))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bn))
    model.train()
    assert all(m.training for m in bn)  # restored afterwards


def test_epoch_index_oversamples_and_tiles():
    Y = np.array([[1], [0], [0], [0], [0], [0], [0], [0], [0]], dtype=float)
    index = epoch_index(Y, "oversample", 0)
    assert np.sum(index == 0) == 8 and len(index) == 16  # 8 negatives : 1 positive -> positive x8
    assert len(epoch_index(Y, "pos_weight", 40)) == 45 and set(epoch_index(Y, "none", 0)) == set(range(9))


def test_inner_validation_split_is_patient_level_and_has_positives():
    data = novel_dataset()
    train, val = inner_validation_split(data.Y, data.patient_ids, 0.2, seed=0)
    check_patient_disjoint(train, val, data.patient_ids)
    assert len(train) + len(val) == len(data) and data.Y[val].sum(axis=0).min() > 0


def test_linear_probe_trains_only_the_head():
    model = tiny_foundation()
    data = novel_dataset()
    result = finetune(model, data.subset(np.arange(120)), data.subset(np.arange(120, 180)), quick(strategy="linear"))
    new, old = dict(result.model.named_parameters()), dict(model.named_parameters())
    for name, param in old.items():
        if name.startswith("backbone."):
            assert torch.equal(param, new[name]), name
    for name, buf in model.named_buffers():  # frozen body: BatchNorm statistics unchanged too (head's included)
        if "running" in name:
            assert torch.equal(buf, dict(result.model.named_buffers())[name]), name
    assert torch.equal(old["head.pre_logits.2.weight"], new["head.pre_logits.2.weight"])  # pretrained hidden layer
    assert result.model.get_classifier().out_features == 2
    whole = finetune(model, data.subset(np.arange(120)), data.subset(np.arange(120, 180)),
                     quick(strategy="linear", new_head="head"))
    assert not torch.equal(old["head.pre_logits.2.weight"], dict(whole.model.named_parameters())["head.pre_logits.2.weight"])


def test_full_finetune_uses_warmup_then_discriminative_rates(monkeypatch):
    calls = []
    real_fit = stages.fit

    def recording_fit(model, train_set, val_set, config, **kw):
        calls.append((config, [(g["lr_scale"], len(g["params"])) for g in kw["param_groups"]],
                      {id(p) for g in kw["param_groups"] for p in g["params"]}, model))
        return real_fit(model, train_set, val_set, config, **kw)

    monkeypatch.setattr(stages, "fit", recording_fit)
    model = tiny_foundation()
    data = novel_dataset()
    finetune(model, data.subset(np.arange(120)), data.subset(np.arange(120, 180)),
             quick(epochs=3, warmup_epochs=1, body_groups=3, body_lr_scale=0.1, layer_lr_decay=0.5))
    (warm_cfg, warm_groups, warm_ids, tuned), (final_cfg, final_groups, final_ids, _) = calls
    assert warm_cfg.lr == WARMUP_LR and warm_cfg.epochs == 1 and warm_cfg.patience is None
    assert warm_ids == {id(p) for p in tuned.head.fc.parameters()}
    assert final_cfg.lr == 1e-3 and final_cfg.epochs == 2 and final_cfg.schedule == "cosine"
    # new layer, then the head's pretrained hidden layer, then the backbone groups towards the input
    assert [scale for scale, _ in final_groups] == pytest.approx([1.0, 0.1, 0.05, 0.025, 0.0125])
    assert final_ids == {id(p) for p in tuned.parameters()}


def test_augmentation_reaches_every_trained_stage(monkeypatch):
    configs = []
    real_fit = stages.fit

    def recording_fit(model, train_set, val_set, config, **kw):
        configs.append(config)
        return real_fit(model, train_set, val_set, config, **kw)

    monkeypatch.setattr(stages, "fit", recording_fit)
    data = novel_dataset()
    finetune(tiny_foundation(), data.subset(np.arange(120)), data.subset(np.arange(120, 180)),
             quick(epochs=2, warmup_epochs=1, new_head="fc", mixup=0.2, noise_mv=0.01))
    assert len(configs) == 2 and all(c.mixup == 0.2 and c.noise_mv == 0.01 and c.scale_jitter == 0 for c in configs)
    with pytest.raises(ValueError, match="scale_jitter, noise_mv and mixup must be >= 0"):
        FinetuneConfig.for_strategy(mixup=-0.1)


def test_param_groups_reach_the_optimizer():
    from ecgfm.training.trainer import build_optimizer

    model = tiny_foundation()
    head, body = list(model.head.parameters()), [p for p in model.backbone.parameters()]
    opt = build_optimizer(model, 1e-3, 0.01, [{"params": head, "lr_scale": 1.0}, {"params": body, "lr_scale": 0.1}])
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == pytest.approx([1e-4, 1e-3])
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.01}  # no decay on biases / BN


def test_finetuned_model_is_saved_for_predict_and_evaluate(tmp_path):
    model = tiny_foundation()
    data = novel_dataset()
    run = tmp_path / "run"
    result = finetune(model, data.subset(np.arange(140)), data.subset(np.arange(140, 180)), quick(), run)
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "model", "summary.json", "finetune.json"} <= \
        {p.name for p in run.iterdir()}
    saved, folder = load(run / "best.pt"), load(run / "model")
    saved_info, folder_info = saved.info, folder.info
    assert saved_info.labels == folder_info.labels == ["NEW1", "NEW2"]
    assert saved_info.label_descriptions == {"NEW1": "first new finding", "NEW2": "second"}
    assert saved_info.preprocess == PREPROCESS and (saved_info.window, saved_info.stride) == (100, 50)
    assert set(saved_info.thresholds) == {"NEW1", "NEW2"} and saved_info.metrics["threshold_source"] == "validation set"
    assert saved_info.data["foundation"]["labels"] == ["OLD1", "OLD2"]
    assert saved_info.training["finetune"]["strategy"] == "full"
    assert saved_info == folder_info.replace(extra=saved_info.extra) == result.info
    p1, p2 = predict_proba(saved, data), predict_proba(folder, data)
    np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p1, predict_proba(result.model, data), rtol=1e-5, atol=1e-6)
    # a finished run is returned as is, and other options in the same folder are refused
    again = finetune(model, data.subset(np.arange(140)), data.subset(np.arange(140, 180)), quick(), run)
    assert again.val_auc == pytest.approx(result.val_auc) and again.info.thresholds == result.info.thresholds
    with pytest.raises(ValueError, match="config differ"):
        finetune(model, data.subset(np.arange(140)), data.subset(np.arange(140, 180)), quick(lr=0.5), run)


class Crash(RuntimeError):
    pass


def test_killed_finetune_resumes_to_the_same_model(tmp_path, monkeypatch):
    model = tiny_foundation()
    data = novel_dataset()
    train, val = data.subset(np.arange(140)), data.subset(np.arange(140, 180))
    config = quick(epochs=4, warmup_epochs=1)
    reference = finetune(model, train, val, config, tmp_path / "reference")

    real_fit = stages.fit

    def crashing_fit(*args, **kw):  # die after the first epoch of the final stage, like a kill
        def crash(event, row):
            if event == "epoch" and kw["run_dir"] == tmp_path / "killed":
                raise Crash()
        return real_fit(*args, callbacks=[crash], **kw)

    monkeypatch.setattr(stages, "fit", crashing_fit)
    with pytest.raises(Crash):
        finetune(model, train, val, config, tmp_path / "killed")
    assert (tmp_path / "killed" / "stages" / "warmup" / "stage_done.json").exists()
    assert not (tmp_path / "killed" / "summary.json").exists()
    monkeypatch.setattr(stages, "fit", real_fit)
    resumed = finetune(model, train, val, config, tmp_path / "killed")
    history = json.loads((tmp_path / "killed" / "summary.json").read_text())["history"]
    assert [row["stage"] for row in history] == ["warmup", "final", "final", "final"]
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_scratch_and_full_learn_new_labels():
    model = tiny_foundation()
    data = novel_dataset(n_patients=120)
    train, test = data.subset(np.arange(180)), data.subset(np.arange(180, 240))
    # The tiny "foundation" has random weights, so fine-tuning gets the pre-training rate here (the default 1e-3 / 1e-4
    # assumes features worth keeping).
    for strategy, rate in (("scratch", {}), ("full", {"lr": 1e-2})):
        result = finetune(model, train, None, quick(strategy=strategy, epochs=5, val_fraction=0.25, body_lr_scale=1.0,
                                                    **rate))
        proba = predict_proba(result.model, test)
        from sklearn.metrics import roc_auc_score

        aucs = [roc_auc_score(test.Y[:, j], proba[:, j]) for j in range(2)]
        assert min(aucs) > 0.8, (strategy, aucs)


def test_cross_validation_without_validation_set(tmp_path):
    model = tiny_foundation()
    data = novel_dataset(n_patients=60)
    result = finetune(model, data, None, quick(cv_folds=2, epochs=2), tmp_path / "cv")
    cv = result.info.data["cv"]
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2 and 1 <= cv["refit_epochs"] <= 2
    assert result.info.metrics["threshold_source"] == "out-of-fold predictions"
    assert set(result.val_auc) == {"NEW1", "NEW2"} and (tmp_path / "cv" / "cv" / "fold-1").is_dir()


def test_preprocessing_mismatch_is_refused():
    model = tiny_foundation()
    data = novel_dataset()
    data.preprocess = {"steps": [{"name": "resample", "fs": 500.0}]}
    with pytest.raises(ValueError, match="preprocessed differently"):
        finetune(model, data, None, quick())


def test_head_only_warmup_is_kept_when_body_finetuning_does_not_beat_it():
    model = tiny_foundation()
    data = novel_dataset()
    train, val = data.subset(np.arange(140)), data.subset(np.arange(140, 180))
    wrecked = quick(epochs=3, warmup_epochs=1, lr=50.0, body_lr_scale=1.0, patience=None)  # the body stage diverges
    kept = finetune(model, train, val, wrecked)
    assert kept.info.training["selected_stage"] == "warmup"
    for name, param in model.named_parameters():  # the warm-up never touches the body
        if name.startswith("backbone."):
            assert torch.equal(param, dict(kept.model.named_parameters())[name]), name
    warm_best = max(r["val_macro_auc"] for r in kept.history if r["stage"] == "warmup")
    assert kept.val_auc and np.mean(list(kept.val_auc.values())) == pytest.approx(warm_best, abs=1e-6)
    forced = finetune(model, train, val, dataclasses.replace(wrecked, select_warmup=False))
    assert forced.info.training["selected_stage"] == "final"
    assert not torch.equal(forced.model.backbone[0][0].weight, model.backbone[0][0].weight)


# ---------------------------------------------------------------------------------------------- the probe head (LP-FT)


def test_probe_head_reproduces_the_embeddings_route_exactly():
    """Before any gradient step the network predicts what the scikit-learn probe on window-averaged embeddings does."""
    model = tiny_foundation()
    data = novel_dataset(n_patients=60)
    data.Y[::7, 1] = np.nan  # a label unknown for some records: its regression sees other rows than the first's
    new_info = finetuned_info(model.info, data, FinetuneConfig())
    assert new_info.aggregate == "mean" and new_info.arch_kwargs["head_hidden"] == 0
    net = attach_linear_head(copy.deepcopy(model), 2)
    net.info = new_info
    chosen = fit_probe_head(net, data, seed=0)
    assert all(c > 0 for c in chosen)
    net.eval()
    ours = predict_proba(net, data)
    Z = extract_features(model, data.torch())
    for j in range(2):
        reference = EmbeddingProbe(seed=0).fit(Z, data.Y[:, j], data.patient_ids).predict_proba(Z)[:, 0]
        np.testing.assert_allclose(ours[:, j], reference, rtol=1e-4, atol=1e-5)
    rebuilt = build_model(new_info)  # the checkpoint's architecture is the linear head
    rebuilt.load_state_dict(net.state_dict())


def test_probe_then_finetune_keeps_the_better_model_and_saves_it(tmp_path):
    model = tiny_foundation()
    data = novel_dataset(n_patients=100)
    result = finetune(model, data.subset(np.arange(140)), data.subset(np.arange(140, 200)),
                      quick(new_head="probe", epochs=3), run_dir=tmp_path / "run")
    assert result.history[0]["stage"] == "probe" and result.history[0]["val_macro_auc"] > 0.5
    stages = {row["stage"] for row in result.history}
    assert stages == {"probe", "final"}
    probe_score = result.history[0]["val_macro_auc"]
    final_best = max(r["val_macro_auc"] for r in result.history if r["stage"] == "final")
    expected = "probe" if probe_score >= final_best else "final"
    assert result.info.training["selected_stage"] == expected
    loaded = load(tmp_path / "run" / "model")
    assert loaded.info.arch_kwargs["head_hidden"] == 0 and loaded.info.aggregate == "mean"
    np.testing.assert_allclose(predict_proba(loaded, data), predict_proba(result.model, data), atol=1e-6)


def test_probe_linear_strategy_leaves_the_backbone_untouched():
    model = tiny_foundation()
    data = novel_dataset(n_patients=80)
    old = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("backbone.")}
    result = finetune(model, data.subset(np.arange(120)), data.subset(np.arange(120, 160)),
                      quick(strategy="linear", new_head="probe"))
    for name, value in result.model.state_dict().items():
        if name.startswith("backbone."):
            assert torch.equal(value, old[name]), name


def test_probe_with_cross_validation(tmp_path):
    model = tiny_foundation()
    data = novel_dataset(n_patients=60)
    result = finetune(model, data, None, quick(new_head="probe", cv_folds=3, epochs=2), run_dir=tmp_path)
    cv = result.info.data["cv"]
    assert len(cv["per_fold"]) == 3 and cv["refit_strategy"] in ("probe", "full")
    assert set(result.info.thresholds) == {"NEW1", "NEW2"}
    # fine-tuning that cannot move (lr 1e-9) never beats the probe: the probe is refitted on all records, CV thresholds
    kept = finetune(model, data, None, quick(new_head="probe", cv_folds=3, epochs=2, lr=1e-9))
    assert kept.info.data["cv"]["refit_strategy"] == "probe" and kept.history[-1]["stage"] == "probe"
    assert kept.info.metrics["threshold_source"] == "out-of-fold predictions" and len(kept.info.thresholds) == 2


def test_an_ensemble_foundation_fine_tunes_its_first_member():
    from ecgfm.models.ensemble import combine, member

    first, second = tiny_foundation(seed=0), tiny_foundation(seed=1)
    ensemble = combine([first, second])
    chosen = member(ensemble, 1)
    assert chosen.info.arch == "resnet1d" and chosen.info.window == 100 and chosen.info.extra["ensemble_member"] == 1
    assert all(torch.equal(a, b) for a, b in zip(chosen.state_dict().values(), second.state_dict().values()))
    used = load_foundation(ensemble)
    assert used.info.arch == "resnet1d" and used.info.extra["ensemble_member"] == 0
    assert all(torch.equal(a, b) for a, b in zip(used.state_dict().values(), first.state_dict().values()))
    data = novel_dataset(n_patients=60)
    result = finetune(ensemble, data.subset(np.arange(80)), data.subset(np.arange(80, 120)), quick())
    assert result.info.arch == "resnet1d" and result.model.num_labels == 2
    assert result.info.extra["ensemble_member"] == 0
    with pytest.raises(IndexError):
        member(ensemble, 2)


def test_too_few_validation_positives_keeps_the_probe_fitted_on_every_record(tmp_path):
    """With < 5 inner-validation positives no body step is taken: the model is the probe fitted on all the training
    records (the embeddings route exactly), with thresholds from out-of-fold predictions."""
    model = tiny_foundation()
    data = novel_dataset(n_patients=60, prevalence=(0.17, 0.3)).select_labels(["NEW1"])
    old = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("backbone.")}
    result = finetune(model, data, None, FinetuneConfig.for_strategy(epochs=3, device="cpu", min_epoch_samples=32),
                      run_dir=tmp_path / "run")
    assert "positive(s) of NEW1" in result.info.training["probe_only"]
    assert result.info.training["selected_stage"] == "probe" and [r["stage"] for r in result.history] == ["probe"]
    assert result.info.data["train"]["records"] == len(data)  # no records spent on validation
    for name, value in result.model.state_dict().items():
        if name.startswith("backbone."):
            assert torch.equal(value, old[name]), name
    Z = extract_features(model, data.torch())
    reference = EmbeddingProbe(seed=0).fit(Z, data.Y[:, 0], data.patient_ids).predict_proba(Z)[:, 0]
    np.testing.assert_allclose(predict_proba(result.model, data)[:, 0], reference, rtol=1e-4, atol=1e-5)
    assert result.info.metrics["threshold_source"] == "out-of-fold predictions" and "NEW1" in result.info.thresholds
    assert 0.0 < result.info.thresholds["NEW1"] < 1.0


def test_min_val_positives_decides_between_probe_only_and_fine_tuning():
    model = tiny_foundation()
    data = novel_dataset(n_patients=80)
    train, val = data.subset(np.arange(120)), data.subset(np.arange(120, 160))
    n_val_pos = int(np.nansum(val.Y == 1, axis=0).min())
    config = quick(new_head="probe", epochs=2)
    tuned = finetune(model, train, val, dataclasses.replace(config, min_val_positives=n_val_pos))
    assert "probe_only" not in tuned.info.training and any(r["stage"] == "final" for r in tuned.history)
    kept = finetune(model, train, val, dataclasses.replace(config, min_val_positives=n_val_pos + 1))
    assert kept.info.training["selected_stage"] == "probe" and kept.info.data["train"]["records"] == len(train)
    assert kept.info.metrics["threshold_source"] == "validation set"  # an independent set: thresholds from it
    joined = finetune(model, train, val, dataclasses.replace(config, min_val_positives=n_val_pos + 1),
                      val_from_train=True)  # ecgfm compare's inner hold-out joins the probe's training records
    assert joined.info.data["train"]["records"] == len(train) + len(val)
    assert joined.info.metrics["threshold_source"] == "out-of-fold predictions"
    fc = finetune(model, train, val, quick(epochs=2, min_val_positives=1000))  # no probe: the rule is off
    assert "probe_only" not in fc.info.training


def test_labelled_sets_concatenate():
    """compare's inner hold-out joins the probe's training records: train + val of the same data, in order."""
    data = novel_dataset(n_patients=10)
    joined = data.subset(np.arange(5)).concat(data.subset(np.arange(5, 20)))
    np.testing.assert_array_equal(joined.signals(), data.signals())
    np.testing.assert_array_equal(joined.patient_ids, data.patient_ids)
    np.testing.assert_array_equal(joined.Y, data.Y)
    with pytest.raises(ValueError, match="same labels"):
        data.concat(data.select_labels(["NEW2"]))
    with pytest.raises(ValueError, match="same data"):
        data.concat(novel_dataset(n_patients=10))


def test_the_whole_body_candidate_is_trained_and_kept_only_when_it_validates_better(tmp_path, monkeypatch):
    """A brief event is what a lightly tuned body misses: the whole network at the pre-training recipe is trained on the
    same records, and the better of the two on validation is the model (ties keep the fine-tuned one)."""
    from ecgfm.transfer import finetune as finetune_module
    from ecgfm.transfer.config import SCRATCH_RECIPE, whole_body_config

    alt = whole_body_config(quick(new_head="probe", whole_body=True))
    assert (alt.new_head, alt.body_lr_scale, alt.layer_lr_decay, alt.freeze_bn, alt.aggregate) == (
        "head", 1.0, 1.0, False, None) and alt.train.lr == SCRATCH_RECIPE["lr"] and not alt.whole_body
    data = novel_dataset()
    train, val = data.subset(np.flatnonzero(data.folds <= 8)), data.subset(np.flatnonzero(data.folds > 8))
    config = quick(new_head="probe", whole_body=True, min_val_positives=0)
    result = finetune(tiny_foundation(), train, val, config, run_dir=tmp_path / "run")
    scores = result.info.training["candidates_val_macro_auc"]
    kept = result.info.training["selected_recipe"]
    assert kept == ("whole body" if scores["whole body"] > scores["fine-tuned"] else "fine-tuned")
    assert any(row.get("candidate") == "whole body" for row in result.history)
    assert (tmp_path / "run" / "whole-body").is_dir() and load(tmp_path / "run" / "model").info.labels == ["NEW1", "NEW2"]
    scored = iter([0.9, 0.9])  # a tie keeps the fine-tuned model
    monkeypatch.setattr(finetune_module, "validation_score", lambda *args: next(scored))
    tied = finetune(tiny_foundation(), train, val, config)
    assert tied.info.training["selected_recipe"] == "fine-tuned" and tied.info.aggregate == "mean"
    scored = iter([0.7, 0.9])
    better = finetune(tiny_foundation(), train, val, config)
    assert better.info.training["selected_recipe"] == "whole body" and better.info.aggregate == "max"
