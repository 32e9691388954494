"""Staged fine-tuning: which parameters train in which stage, at which rate, and running the stages with ``fit``.

A strategy is a sequence of :class:`Stage` s inside one epoch budget (:func:`plan_stages`): an optional frozen-body
head warm-up, for ``gradual`` one stage per newly unfrozen body group (ULMFiT), and a final stage. Trained body groups
get *discriminative* rates (``lr * body_lr_scale * layer_lr_decay**depth``, depth 0 at the top), and the pretrained
BatchNorm statistics can stay fixed (:func:`frozen_batchnorm`). With the probe head the fitted probe replaces the
warm-up (:func:`ecgfm.transfer.probe.fit_probe_head`). Each stage but the last records ``stage_done.json`` in its
folder, so a killed run resumes after the last finished stage (and ``fit`` resumes inside a stage).
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from scipy.special import expit
from torch import nn
from torch.utils.data import Dataset

from ecgfm.datasets import LabelledSet
from ecgfm.files import atomic_write_text
from ecgfm.models.hub import load_state
from ecgfm.models.windowing import predict_logits
from ecgfm.training import TrainConfig, fit, macro_auc, resolve_device
from ecgfm.transfer.config import WARMUP_LR, FinetuneConfig
from ecgfm.transfer.probe import fit_probe_head


def body_parameter_groups(model: nn.Module, n_groups: int, new_head: str = "fc") -> list[list[nn.Parameter]]:
    """The pretrained parameters in groups, input side first: ``n_groups`` contiguous groups of the backbone's
    top-level layers, then (``new_head="fc"``) the pretrained hidden layers of the head as the top group.

    Models without a ``backbone`` attribute give one group with every parameter outside the new head.
    """
    new_ids = {id(p) for p in head_parameters(model, new_head)}
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return [[p for p in model.parameters() if id(p) not in new_ids]]
    layers = [m for m in backbone.children() if any(True for _ in m.parameters())]
    chunks = np.array_split(np.arange(len(layers)), min(n_groups, max(len(layers), 1)))
    groups = [[p for i in chunk for p in layers[i].parameters()] for chunk in chunks if len(chunk)]
    grouped = {id(p) for g in groups for p in g}
    head_rest = [p for p in getattr(model, "head", nn.Module()).parameters() if id(p) not in new_ids]
    if head_rest:
        groups.append(head_rest)
        grouped |= {id(p) for p in head_rest}
    rest = [p for p in model.parameters() if id(p) not in grouped and id(p) not in new_ids]
    if rest:  # parameters outside the backbone and head (none in ecgfm models) train with the top group
        groups[-1].extend(rest)
    return groups


def head_parameters(model: nn.Module, new_head: str = "fc") -> list[nn.Parameter]:
    """The new parameters: the replaced final layer (``"fc"``) or the whole head (``"head"``, ``"probe"``)."""
    if new_head in ("head", "probe") and hasattr(model, "head"):
        return list(model.head.parameters())
    return list(model.get_classifier().parameters())


def pretrained_modules(model: nn.Module, new_head: str = "fc") -> list[nn.Module]:
    """The modules whose BatchNorm statistics stay fixed while fine-tuning: those from pre-training, and the probe
    head's BatchNorm (its statistics are the probe's feature standardisation)."""
    modules = [model.backbone] if hasattr(model, "backbone") else []
    if new_head in ("fc", "probe") and hasattr(model, "head") and hasattr(model.head, "pre_logits"):
        modules.append(model.head.pre_logits)
    return modules


@contextmanager
def frozen_batchnorm(module: nn.Module) -> Iterator[None]:
    """Keep every BatchNorm layer of ``module`` in eval mode (pretrained running statistics) even under ``.train()``.

    Few-example batches cannot re-estimate normalisation statistics; the trainer calls ``model.train()`` each epoch, so
    the layers' ``train`` method is replaced for the duration and restored afterwards.
    """
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.eval()
        layer.train = types.MethodType(lambda self, mode=True: self, layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.train


@contextmanager
def trainable(model: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Only ``params`` require gradients inside the block (the trainer optimises exactly those)."""
    chosen = {id(p) for p in params}
    before = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in before:
        p.requires_grad_(id(p) in chosen)
    try:
        yield
    finally:
        for p, flag in before:
            p.requires_grad_(flag)


def epoch_index(Y: np.ndarray, balance: str, min_samples: int, max_repeat: float = 50.0) -> np.ndarray:
    """Record order for one training epoch: positives repeated when oversampling, whole set tiled to ``min_samples``.

    Oversampling repeats a record by the largest negative/positive ratio among its positive labels (capped), so each
    label's positives are seen about as often as its negatives.
    """
    Y = np.asarray(Y, dtype=float)
    repeats = np.ones(len(Y), dtype=np.int64)
    if balance == "oversample":
        ratio = np.clip(np.round(np.nansum(Y == 0, axis=0) / np.maximum(np.nansum(Y == 1, axis=0), 1)), 1, max_repeat)
        with np.errstate(invalid="ignore"):
            repeats = np.where(Y == 1, ratio[None, :], 1).max(axis=1).astype(np.int64)
    index = np.repeat(np.arange(len(Y)), repeats)
    if min_samples and len(index) < min_samples:
        index = np.tile(index, math.ceil(min_samples / len(index)))
    return index


def training_view(data: LabelledSet, config: FinetuneConfig) -> Dataset:
    """``data`` as the trainer sees it in one epoch (oversampled and tiled by :func:`epoch_index`)."""
    return data.torch(epoch_index(data.Y, config.balance, config.min_epoch_samples))


@dataclass
class Stage:
    """One ``fit`` call: which body groups train (top ``n_unfrozen``), for how many epochs, at which head rate."""

    name: str
    epochs: int
    n_unfrozen: int  # body groups unfrozen from the top (0 = head only)
    lr: float
    schedule: str
    warmup_frac: float
    early_stopping: bool
    select: bool = False  # validate every epoch and keep the best one (no early stopping): the frozen-body warm-up


def plan_stages(config: FinetuneConfig, n_groups: int) -> list[Stage]:
    """The sequence of training stages of a strategy, summing to ``config.train.epochs``."""
    train = config.train
    if config.strategy in ("scratch", "linear"):
        n_unfrozen = n_groups if config.strategy == "scratch" else 0
        return [Stage("final", train.epochs, n_unfrozen, train.lr, train.schedule, train.warmup_frac, True)]
    stages: list[Stage] = []
    remaining = train.epochs
    warmup = 0 if config.uses_probe else min(config.warmup_epochs, remaining - 1)  # the probe replaces the warm-up
    if warmup > 0:
        stages.append(Stage("warmup", warmup, 0, WARMUP_LR, "constant", 0.0, False, select=True))
        remaining -= warmup
    if config.strategy == "gradual":
        for k in range(1, n_groups):
            epochs = min(config.unfreeze_epochs, remaining - 1)
            if epochs < 1:
                break
            stages.append(Stage(f"unfreeze-{k}", epochs, k, train.lr, "constant", 0.0, False))
            remaining -= epochs
    stages.append(Stage("final", remaining, n_groups, train.lr, train.schedule, train.warmup_frac, True))
    return stages


def stage_param_groups(model: nn.Module, config: FinetuneConfig, stage: Stage,
                       groups: list[list[nn.Parameter]]) -> tuple[list[dict[str, Any]], list[nn.Parameter]]:
    """Optimiser groups ``{"params", "lr_scale"}`` for a stage and the parameters it trains."""
    head = head_parameters(model, config.new_head)
    if config.strategy == "scratch":
        params = [p for g in groups for p in g] + head
        return [{"params": params, "lr_scale": 1.0}], params
    param_groups = [{"params": head, "lr_scale": 1.0}]
    trained = list(head)
    unfrozen = groups[len(groups) - stage.n_unfrozen:] if stage.n_unfrozen else []
    for depth, group in enumerate(reversed(unfrozen)):  # depth 0 = the top body group
        param_groups.append({"params": group, "lr_scale": config.body_lr_scale * config.layer_lr_decay ** depth})
        trained.extend(group)
    return param_groups, trained


def stage_train_config(config: FinetuneConfig, stage: Stage, model: nn.Module, seed: int) -> TrainConfig:
    """The ``fit`` options of a stage: the shared ``config.train`` with the stage's budget and rate, the model's own
    windows, and loss weighting from ``balance``."""
    info = model.info
    return dataclasses.replace(
        config.train, epochs=stage.epochs, lr=stage.lr, schedule=stage.schedule, warmup_frac=stage.warmup_frac,
        window=info.window, stride=info.stride, aggregate=info.aggregate,
        class_weights="balanced" if config.balance == "pos_weight" else None,
        patience=config.train.patience if stage.early_stopping else None, seed=seed)


def validation_score(model: nn.Module, val_set: Dataset, config: FinetuneConfig) -> float:
    """The monitored validation score (macro-AUC) of ``model`` as it stands, with the model's own windowing."""
    logits = predict_logits(model, val_set, batch_size=config.train.eval_batch_size,
                            device=resolve_device(config.train.device))
    return macro_auc(val_set.Y, expit(logits))


def run_stages(model: nn.Module, train_set: Dataset, val_set: Dataset | None, config: FinetuneConfig,
               run_dir: Path | None, probe_data: LabelledSet | None = None) -> list[dict[str, Any]]:
    """Run every stage of the strategy on ``model`` (its ``info`` updated in place); returns the history.

    With the probe head, the probe is fitted on ``probe_data`` (the training records, once each) first. Otherwise the
    frozen-body warm-up is validated every epoch and its best epoch starts the next stage. With
    ``config.select_warmup``, the probe or warm-up model is also a candidate at the end: when fine-tuning the body never
    reaches a higher validation score, the head-only model is kept (early stopping with it as "epoch 0").
    ``model.info.training`` records ``selected_stage`` and ``stage_best_epochs``.
    """
    groups = body_parameter_groups(model, config.body_groups, config.new_head)
    history: list[dict[str, Any]] = []
    best_epochs: dict[str, int | None] = {}
    warm: tuple[float, dict[str, torch.Tensor]] | None = None
    final_score = None
    if config.uses_probe:
        if probe_data is None:
            raise ValueError("the probe head needs the training records (probe_data)")
        chosen_C = fit_probe_head(model, probe_data, config.train.seed, batch_size=config.train.eval_batch_size,
                                  device=resolve_device(config.train.device))
        probe_score = validation_score(model, val_set, config) if val_set is not None else None
        history.append({"stage": "probe", "epoch": 0, "val_macro_auc": probe_score,
                        "chosen_C": [None if not np.isfinite(c) else c for c in chosen_C]})
        best_epochs["probe"] = 0
        if probe_score is not None and np.isfinite(probe_score):
            warm = (float(probe_score), _state_copy(model))
    for i, stage in enumerate(plan_stages(config, len(groups))):
        stage_val = val_set if (stage.early_stopping or stage.select) else None
        stage_dir = None if run_dir is None else run_dir if stage.name == "final" else run_dir / "stages" / stage.name
        done = stage_dir / "stage_done.json" if stage_dir is not None and stage.name != "final" else None
        if done is not None and done.exists():  # finished before a restart: reuse its (best) weights
            model.load_state_dict(load_state(stage_dir / "best.pt")["model"])
            record = json.loads(done.read_text())
            history.extend(record["history"])
            best_epochs[stage.name] = record.get("best_epoch")
            if stage.select and stage_val is not None and record.get("best_score") is not None:
                warm = (record["best_score"], _state_copy(model))
            continue
        param_groups, trained = stage_param_groups(model, config, stage, groups)
        frozen_body = config.strategy != "scratch" and (config.freeze_bn or stage.n_unfrozen == 0)
        with ExitStack() as stack:
            stack.enter_context(trainable(model, trained))
            for module in pretrained_modules(model, config.new_head) if frozen_body else []:
                stack.enter_context(frozen_batchnorm(module))
            result = fit(model, train_set, stage_val, stage_train_config(config, stage, model, config.train.seed + i),
                         run_dir=stage_dir, resume=stage_dir is not None, param_groups=param_groups)
        best_epochs[stage.name] = result.best_epoch
        rows = [{"stage": stage.name, **row} for row in result.history]
        history.extend(rows)
        if stage.select and stage_val is not None and result.best_score is not None:
            warm = (float(result.best_score), _state_copy(model))
        if stage.name == "final" and stage_val is not None:
            final_score = result.best_score
        if done is not None:
            atomic_write_text(done, json.dumps({"stage": dataclasses.asdict(stage), "history": rows,
                                                "best_epoch": result.best_epoch,
                                                "best_score": None if stage_val is None else result.best_score}))
    selected = "final"
    if config.select_warmup and warm is not None and (final_score is None or warm[0] >= final_score):
        model.load_state_dict(warm[1])  # fine-tuning the body did not beat the head-only model on validation
        selected = "probe" if config.uses_probe else "warmup"
    info = model.info
    model.info = info.replace(training={**info.training, "selected_stage": selected, "stage_best_epochs": best_epochs})
    return history


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
