"""Fine-tune a foundation model for labels it never saw, from a few examples (or train the same network from scratch).

Strategies (``FinetuneConfig.strategy``):

- ``full`` (default, as in Hu et al. 2025): every layer trains. The recipe that holds up at tiny sizes is "linear probe,
  then fine-tune" (LP-FT, Kumar et al., ICLR 2022) inside one epoch budget: (1) the new head starts as a fitted linear
  probe instead of random weights, so random initial gradients never reach (and distort) the pretrained filters;
  (2) all layers train with *discriminative* learning rates (the new head at ``lr``, the pretrained layers at
  ``lr * body_lr_scale`` shrinking by ``layer_lr_decay`` per group towards the input) and the pretrained BatchNorm
  statistics kept (``freeze_bn``: a few dozen ECGs cannot re-estimate them). Early stopping on the inner validation
  AUC picks the epoch, and the probe is kept when fine-tuning the body never beats it (``select_warmup``).
  When the validation set holds fewer than ``min_val_positives`` (5) positives of some label, its AUC cannot tell
  a fine-tuned body from the probe (with 2 positives, each decides half of the AUC), so no body step is taken: the probe
  is the model, refitted on every training record when validation was an inner split, with thresholds from its
  out-of-fold predictions (``min_val_positives=0`` turns this off). 5 is the evaluation's own rule for scoring an AUC.
  K-fold CV (``cv_folds``) is exempt: it decides by majority over the folds, whose validation records cover all the
  training positives.

  The probe (``new_head="probe"``, the default) is the embeddings route of :mod:`ecgfm.transfer.embeddings_baseline`
  built into the network: a standardised, class-balanced logistic regression on the pooled embedding averaged over
  the sliding windows, its ``C`` chosen by inner patient-level cross-validated AUC (scikit-learn). The new head is
  ``BatchNorm (running statistics = the scaler's mean and variance) -> dropout -> linear (= the regression)`` and
  window logits are averaged, so before any gradient step the network predicts exactly what the probe predicts.
  ``new_head="fc"`` instead keeps the foundation's 128-unit hidden layer and warms up a fresh final layer with
  ``warmup_epochs`` of SGD on the frozen body; ``"head"`` re-learns the whole pretrained head that way.
- ``linear``: a linear probe; the pretrained network stays frozen and only the new head trains (from the fitted probe).
- ``gradual``: ULMFiT-style gradual unfreezing; after the head warm-up, body groups unfreeze one at a time from the
  top (``unfreeze_epochs`` each), then everything trains with discriminative rates.
- ``scratch``: the same architecture, freshly initialised, trained with the pre-training recipe (one-cycle, lr 1e-2)
  on the same data and the same epoch budget: the comparison arm of ``ecgfm compare``.

Small-data care: positives are up-weighted in the loss (``balance="pos_weight"``) or oversampled (``"oversample"``);
every epoch shows at least ``min_epoch_samples`` crops (tiny sets are repeated, each repeat a different random crop) so
the budget in optimiser steps does not collapse at 10 examples; without a validation set an inner patient-level split is
held out (``val_fraction``), or K-fold cross-validation picks the epoch count and thresholds (``cv_folds``).

The result is an ordinary ecgfm model: ``best.pt`` / ``config.json`` in the run directory and a ``model/`` folder
(``save_pretrained``) carrying the foundation's preprocessing, the new labels with descriptions, and validation
thresholds, so ``ecgfm predict`` and ``ecgfm evaluate`` take it as is.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ecgfm.datasets.arrays import ArraySet
from ecgfm.evaluation.thresholds import choose_thresholds
from ecgfm.models import ModelInfo, build_model, load_checkpoint, save_pretrained
from ecgfm.models.base import ConcatPoolHead
from ecgfm.models.checkpoint import atomic_write_bytes, torch_save_atomic
from ecgfm.training import TrainConfig, extract_features, fit, macro_auc, per_label_auc, predict_logits
from ecgfm.training.config import options_from_dict
from ecgfm.training.trainer import resolve_device
from ecgfm.transfer.embeddings_baseline import EmbeddingProbe, patient_stratified_folds
from ecgfm.transfer.splits import check_patient_disjoint, cv_folds

STRATEGIES = ("full", "linear", "gradual", "scratch")
NEW_HEADS = ("probe", "fc", "head")
BALANCE_MODES = ("pos_weight", "oversample", "none")
#: Peak learning rate of the head per strategy when ``lr`` is not given. The pre-training recipe uses 1e-2; fine-tuning
#: the whole network at that rate erases much of what was pretrained once a few dozen examples pull on it, so full and
#: gradual fine-tuning use a tenth of it (and a further tenth in the body, see ``body_lr_scale``).
DEFAULT_LR = {"full": 1e-3, "gradual": 1e-3, "linear": 1e-2, "scratch": 1e-2}
#: Learning rate of the frozen-body head warm-up (a fresh head needs the pre-training rate to move quickly).
WARMUP_LR = 1e-2


@dataclass
class FinetuneConfig:
    """How to adapt a foundation to new labels (see the module docstring for the strategies and the defaults)."""

    strategy: str = "full"
    epochs: int = 30  # total epoch budget, warm-up and unfreezing stages included (the same for every strategy)
    patience: int | None = 8  # early stopping: epochs without a better validation score (None = run all epochs)
    batch_size: int = 32
    lr: float | None = None  # head peak learning rate; None = DEFAULT_LR[strategy]
    body_lr_scale: float = 0.1  # body learning rate relative to the head's (discriminative rates; full/gradual)
    layer_lr_decay: float = 0.5  # further factor per body group towards the input
    body_groups: int = 4  # contiguous groups the backbone is split into for decay and gradual unfreezing
    warmup_epochs: int = 3  # frozen-body epochs fitting only the new head before unfreezing (full/gradual)
    unfreeze_epochs: int = 1  # epochs per newly unfrozen group (gradual)
    freeze_bn: bool = True  # keep the pretrained BatchNorm statistics of the body while fine-tuning
    aggregate: str | None = None  # combine window logits by "max" or "mean"; None = "mean" with the probe head, else
    # as the foundation does
    new_head: str = "probe"  # the new head: "probe" (linear on the pooled embedding, initialised by a fitted logistic
    # regression; replaces the SGD warm-up), "fc" (a fresh final layer after the foundation's pretrained hidden layer,
    # which joins the body; SGD warm-up) or "head" (the foundation's whole head re-learnt at the head rate)
    select_warmup: bool = True  # keep the head-only warm-up model if fine-tuning the body does not beat it on validation
    min_val_positives: int = 5  # with the probe head: fewer validation positives (any label) than this and the body
    # is not fine-tuned at all; the probe is kept (refitted on every training record when validation was an inner split)
    balance: str = "pos_weight"  # "pos_weight" (loss weight neg/pos per label) | "oversample" | "none"
    max_pos_weight: float = 50.0
    min_epoch_samples: int = 512  # repeat tiny training sets so an epoch shows at least this many crops
    weight_decay: float = 1e-2
    # batch augmentation of the gradient-trained stages (ecgfm.training.augment; the fitted probe sees raw records);
    # off by default: neither gain + noise nor mixup helped on the fold-9 tuning split (docs/results.md)
    mixup: float = 0.0
    scale_jitter: float = 0.0
    noise_mv: float = 0.0
    schedule: str | None = None  # None = "cosine" when fine-tuning, "onecycle" (pre-training recipe) for scratch
    warmup_frac: float = 0.1  # learning-rate warm-up fraction of each stage (scratch: 0.3, the pre-training value)
    monitor: str = "val_macro_auc"
    threshold_rule: str = "youden"
    val_fraction: float = 0.2  # inner validation share when no validation set is given (and cv_folds is None)
    cv_folds: int | None = None  # K-fold CV on the training data instead of an inner split (final model refit on all)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    eval_batch_size: int = 256
    progress: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}"),
            (self.balance in BALANCE_MODES, f"balance must be one of {', '.join(BALANCE_MODES)}"),
            (self.new_head in NEW_HEADS, f"new_head must be one of {', '.join(NEW_HEADS)}"),
            (self.aggregate in (None, "max", "mean"), "aggregate must be None, 'max' or 'mean'"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.lr is None or self.lr > 0, "lr must be > 0"),
            (self.body_lr_scale > 0 and self.layer_lr_decay > 0, "body_lr_scale and layer_lr_decay must be > 0"),
            (self.body_groups >= 1, "body_groups must be >= 1"),
            (self.warmup_epochs >= 0 and self.unfreeze_epochs >= 1, "warmup_epochs >= 0, unfreeze_epochs >= 1"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (self.cv_folds is None or self.cv_folds >= 2, "cv_folds must be >= 2"),
            (self.min_epoch_samples >= 0, "min_epoch_samples must be >= 0"),
            (self.min_val_positives >= 0, "min_val_positives must be >= 0"),
            (min(self.mixup, self.scale_jitter, self.noise_mv) >= 0, "mixup, scale_jitter and noise_mv must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"FinetuneConfig: {message}")

    @property
    def uses_probe(self) -> bool:
        """Whether the new head is a fitted linear probe (every strategy except scratch, with ``new_head="probe"``)."""
        return self.new_head == "probe" and self.strategy != "scratch"

    @property
    def head_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.strategy]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        return options_from_dict(cls, data, "fine-tuning")


@dataclass
class FinetuneResult:
    """The fine-tuned model (best validation weights), its info (labels, thresholds, metrics) and per-stage history."""

    model: nn.Module
    info: ModelInfo
    history: list[dict[str, Any]] = field(default_factory=list)
    val_auc: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None


# --------------------------------------------------------------------------------------------------- data helpers


class IndexedArrays(Dataset):
    """Rows ``index`` of arrays ``X`` (N, leads, T) and ``Y`` (N, L) as a Dataset, without copying ``X``.

    ``X`` may be a read-only memory map; an index may repeat (oversampling, epoch padding). ``Y`` is materialised so
    the trainer can read all labels at once.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, index: np.ndarray):
        self.X, self.index = X, np.asarray(index, dtype=np.int64)
        self.Y = np.ascontiguousarray(np.asarray(Y, dtype=np.float32)[self.index])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.array(self.X[self.index[i]], dtype=np.float32)  # copy: memory maps are read-only
        return torch.from_numpy(x), torch.from_numpy(self.Y[i])


def epoch_index(Y: np.ndarray, balance: str, min_samples: int, max_repeat: float = 50.0) -> np.ndarray:
    """Record order for one training epoch: positives repeated when oversampling, whole set tiled to ``min_samples``.

    Oversampling repeats a record by the largest negative/positive ratio among its positive labels (capped), so each
    label's positives are seen about as often as its negatives.
    """
    Y = np.asarray(Y, dtype=float)
    repeats = np.ones(len(Y), dtype=np.int64)
    if balance == "oversample":
        pos = np.nansum(Y == 1, axis=0)
        neg = np.nansum(Y == 0, axis=0)
        ratio = np.clip(np.round(neg / np.maximum(pos, 1)), 1, max_repeat)
        with np.errstate(invalid="ignore"):
            per_record = np.where(Y == 1, ratio[None, :], 1).max(axis=1)
        repeats = per_record.astype(np.int64)
    index = np.repeat(np.arange(len(Y)), repeats)
    if min_samples and len(index) < min_samples:
        index = np.tile(index, math.ceil(min_samples / len(index)))
    return index


def inner_validation_split(Y: np.ndarray, patient_ids: np.ndarray, fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient-level split of a training set into (train, validation) record indices, stratified by the rarest label."""
    Y = np.asarray(Y, dtype=float)
    if fraction <= 0:
        return np.arange(len(Y)), np.array([], dtype=int)
    counts = np.nansum(Y == 1, axis=0)
    usable = np.flatnonzero(counts > 0)
    rarest = usable[np.argmin(counts[usable])] if len(usable) else 0
    n_splits = max(2, int(round(1.0 / fraction)))
    try:
        fold = next(iter(cv_folds(Y[:, rarest], patient_ids, n_splits=n_splits, seed=seed)))
    except ValueError:  # fewer positive patients than folds: plain patient-level random split
        pids = np.asarray(patient_ids).astype(str)
        patients = np.random.default_rng(seed).permutation(np.unique(pids))
        val_patients = patients[: max(1, int(round(fraction * len(patients))))]
        val = np.flatnonzero(np.isin(pids, val_patients))
        return np.setdiff1d(np.arange(len(Y)), val), val
    return np.sort(fold.pool), np.sort(fold.test)


def has_both_classes(Y: np.ndarray) -> bool:
    """Whether at least one label has a positive and a negative (otherwise validation AUC is undefined)."""
    Y = np.asarray(Y, dtype=float)
    return bool(np.any((np.nansum(Y == 1, axis=0) > 0) & (np.nansum(Y == 0, axis=0) > 0)))


# --------------------------------------------------------------------------------------------------- model helpers


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


def attach_linear_head(model: nn.Module, num_labels: int) -> nn.Module:
    """Replace the model's head by a linear one on the pooled embedding (``ConcatPoolHead(hidden=0)``) in place.

    ``arch_kwargs`` records ``head_hidden=0`` so checkpoints rebuild the same network.
    """
    old = model.head
    drop_rate = float(getattr(old, "drop_rate", 0.5))
    model.head = ConcatPoolHead(model.num_features, int(num_labels), hidden=0, drop_rate=drop_rate)
    model.num_labels = int(num_labels)
    model.arch_kwargs = {**getattr(model, "arch_kwargs", {}), "head_hidden": 0}
    return model


def probe_features(model: nn.Module, info: ModelInfo, data: ArraySet, config: FinetuneConfig) -> np.ndarray:
    """The probe's input: ``forward_features`` averaged over the model's sliding windows, ``(N, F)`` float64."""
    return extract_features(model, IndexedArrays(data.X, data.Y, np.arange(len(data))), info.window, info.stride,
                            batch_size=config.eval_batch_size, device=resolve_device(config.device)).astype(np.float64)


def fit_probe_head(model: nn.Module, info: ModelInfo, data: ArraySet, config: FinetuneConfig,
                   features: np.ndarray | None = None) -> list[float]:
    """Set the linear head to the embeddings-route logistic regression fitted on ``data``; returns the chosen ``C``s.

    The embedding is ``forward_features`` averaged over the model's sliding windows. The head's BatchNorm standardises
    with the statistics of all of ``data`` (running variance ``scale**2 - eps``, so BN divides by exactly ``scale``);
    each label's regression, fitted on its own standardisation (its labelled records), is rewritten for that common
    one. With ``aggregate="mean"`` the network then reproduces the probe's logits, because averaging window logits of
    an affine head equals the head applied to the averaged embedding. Labels with a single class in ``data`` keep zero
    weights (a constant prediction).
    """
    Z = probe_features(model, info, data, config) if features is None else features
    mean = Z.mean(axis=0)
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0  # StandardScaler's convention for constant features
    bn, fc = model.head.pre_logits[0], model.head.fc
    Y = np.asarray(data.Y, dtype=float)
    chosen = [float("nan")] * Y.shape[1]
    weights, biases = np.zeros((Y.shape[1], Z.shape[1])), np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        if not has_both_classes(Y[:, [j]]):
            continue
        probe = EmbeddingProbe(inner_folds=5, seed=config.seed).fit(Z, Y[:, j], data.patient_ids)
        scaler, regression = probe.models_[0][0], probe.models_[0][-1]
        w = regression.coef_[0] / scaler.scale_  # per raw embedding unit
        weights[j] = w * scale
        biases[j] = regression.intercept_[0] + w @ (mean - scaler.mean_)
        chosen[j] = probe.chosen_C[0]
    with torch.no_grad():
        fc.weight.copy_(torch.as_tensor(weights, dtype=fc.weight.dtype))
        fc.bias.copy_(torch.as_tensor(biases, dtype=fc.bias.dtype))
        bn.running_mean.copy_(torch.as_tensor(mean, dtype=bn.running_mean.dtype))
        bn.running_var.copy_(torch.as_tensor(np.maximum(np.square(scale) - bn.eps, 0.0), dtype=bn.running_var.dtype))
        bn.weight.fill_(1.0)
        bn.bias.zero_()
    return chosen


def validation_score(model: nn.Module, info: ModelInfo, val_set: Dataset, config: FinetuneConfig) -> float:
    """The monitored validation score (macro-AUC) of ``model`` as it stands, with the model's own windowing."""
    logits = predict_logits(model, val_set, info.window, info.stride, info.aggregate,
                            batch_size=config.eval_batch_size, device=resolve_device(config.device))
    return macro_auc(val_set.Y, 1.0 / (1.0 + np.exp(-logits)))


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


# --------------------------------------------------------------------------------------------------- stages


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
    """The sequence of training stages of a strategy, summing to ``config.epochs``."""
    schedule = config.schedule or ("onecycle" if config.strategy == "scratch" else "cosine")
    if config.strategy == "scratch":
        return [Stage("final", config.epochs, n_groups, config.head_lr, schedule,
                      0.3 if config.schedule is None else config.warmup_frac, True)]
    if config.strategy == "linear":
        return [Stage("final", config.epochs, 0, config.head_lr, schedule, config.warmup_frac, True)]
    stages: list[Stage] = []
    remaining = config.epochs
    warmup = 0 if config.uses_probe else min(config.warmup_epochs, remaining - 1)  # the probe replaces the warm-up
    if warmup > 0:
        stages.append(Stage("warmup", warmup, 0, WARMUP_LR, "constant", 0.0, False, select=True))
        remaining -= warmup
    if config.strategy == "gradual":
        for k in range(1, n_groups):
            epochs = min(config.unfreeze_epochs, remaining - 1)
            if epochs < 1:
                break
            stages.append(Stage(f"unfreeze-{k}", epochs, k, config.head_lr, "constant", 0.0, False))
            remaining -= epochs
    stages.append(Stage("final", remaining, n_groups, config.head_lr, schedule, config.warmup_frac, True))
    return stages


def _stage_param_groups(model: nn.Module, config: FinetuneConfig, stage: Stage,
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


def _train_config(config: FinetuneConfig, stage: Stage, info: ModelInfo, seed: int) -> TrainConfig:
    return TrainConfig(
        epochs=stage.epochs, batch_size=config.batch_size, lr=stage.lr, weight_decay=config.weight_decay,
        schedule=stage.schedule, warmup_frac=stage.warmup_frac, window=info.window,
        stride=info.stride, aggregate=info.aggregate,
        class_weights="balanced" if config.balance == "pos_weight" else None, max_pos_weight=config.max_pos_weight,
        patience=config.patience if stage.early_stopping else None, monitor=config.monitor, device=config.device,
        mixup=config.mixup, scale_jitter=config.scale_jitter, noise_mv=config.noise_mv,
        seed=seed, eval_batch_size=config.eval_batch_size, num_threads=config.num_threads,
        progress=config.progress, tensorboard=False,
    )


def _run_stages(model: nn.Module, info: ModelInfo, train_set: Dataset, val_set: Dataset | None,
                config: FinetuneConfig, run_dir: Path | None, epochs: int | None = None,
                probe_data: ArraySet | None = None) -> tuple[ModelInfo, list]:
    """Run every stage of the strategy (optionally with a different total epoch budget); returns info and history.

    With the probe head, the probe is fitted on ``probe_data`` (the training records, once each) first. Otherwise the
    frozen-body warm-up is validated every epoch and its best epoch starts the next stage. With
    ``config.select_warmup``, the probe or warm-up model is also a candidate at the end: when fine-tuning the body never
    reaches a higher validation score, the head-only model is kept (early stopping with it as "epoch 0").
    """
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    groups = body_parameter_groups(model, config.body_groups, config.new_head)
    history: list[dict[str, Any]] = []
    best_epochs: dict[str, int | None] = {}
    warm: tuple[float, dict[str, torch.Tensor]] | None = None
    final_score = None
    if config.uses_probe:
        if probe_data is None:
            raise ValueError("the probe head needs the training records (probe_data)")
        chosen_C = fit_probe_head(model, info, probe_data, config)
        probe_score = validation_score(model, info, val_set, config) if val_set is not None else None
        history.append({"stage": "probe", "epoch": 0, "val_macro_auc": probe_score,
                        "chosen_C": [None if not np.isfinite(c) else c for c in chosen_C]})
        best_epochs["probe"] = 0
        if probe_score is not None and np.isfinite(probe_score):
            warm = (float(probe_score), _state_copy(model))
    for i, stage in enumerate(plan_stages(config, len(groups))):
        stage_val = val_set if (stage.early_stopping or stage.select) else None
        stage_dir = None
        result = None
        if run_dir is not None:
            stage_dir = run_dir if stage.name == "final" else run_dir / "stages" / stage.name
            done = stage_dir / "stage_done.json"
            if stage.name != "final" and done.exists():  # finished before a restart: reuse its (best) weights
                model.load_state_dict(torch.load(stage_dir / "best.pt", map_location="cpu", weights_only=True)["model"])
                record = json.loads(done.read_text())
                history.extend(record["history"])
                best_epochs[stage.name] = record.get("best_epoch")
                if stage.select and stage_val is not None and record.get("best_score") is not None:
                    warm = (record["best_score"], _state_copy(model))
                continue
        param_groups, trained = _stage_param_groups(model, config, stage, groups)
        frozen_body = config.strategy != "scratch" and (config.freeze_bn or stage.n_unfrozen == 0)
        with ExitStack() as stack:
            stack.enter_context(trainable(model, trained))
            if frozen_body:
                for module in pretrained_modules(model, config.new_head):
                    stack.enter_context(frozen_batchnorm(module))
            result = fit(model, train_set, stage_val, _train_config(config, stage, info, config.seed + i),
                         run_dir=stage_dir, info=info, resume=stage_dir is not None, param_groups=param_groups)
        info = result.info
        best_epochs[stage.name] = result.best_epoch
        rows = [{"stage": stage.name, **row} for row in result.history]
        history.extend(rows)
        if stage.select and stage_val is not None and result.best_score is not None:
            warm = (float(result.best_score), _state_copy(model))
        if stage.name == "final" and stage_val is not None:
            final_score = result.best_score
        if stage_dir is not None and stage.name != "final":
            text = json.dumps({"stage": dataclasses.asdict(stage), "history": rows, "best_epoch": result.best_epoch,
                               "best_score": None if stage_val is None else result.best_score})
            atomic_write_bytes(stage_dir / "stage_done.json", lambda tmp: Path(tmp).write_text(text))
    selected = "final"
    if config.select_warmup and warm is not None and (final_score is None or warm[0] >= final_score):
        model.load_state_dict(warm[1])  # fine-tuning the body did not beat the head-only model on validation
        selected = "probe" if config.uses_probe else "warmup"
    info = info.replace(training={**info.training, "selected_stage": selected, "stage_best_epochs": best_epochs})
    return info, history


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------------- public API


def load_foundation(source: str | Path | tuple[nn.Module, ModelInfo]) -> tuple[nn.Module, ModelInfo]:
    """A foundation model from a checkpoint (``best.pt``), a pretrained folder, or an in-memory ``(model, info)``.

    An ensemble (such as the shipped model) contributes its first member, a single network: transfer learning
    fine-tunes one backbone (the shipped ensemble's first member is its ``xresnet1d50`` on 2.5-s crops).
    """
    model, info = source if isinstance(source, tuple) else load_checkpoint(source)
    if info.arch == "ensemble":
        from ecgfm.models.ensemble import member

        model, info = member(model, info, 0)
    return model, info


def finetuned_info(foundation: ModelInfo, data: ArraySet, config: FinetuneConfig,
                   foundation_source: str | None = None) -> ModelInfo:
    """The new model's self-description: the foundation's architecture and preprocessing, the new labels."""
    seen = [label for label in data.label_names if label in foundation.labels]
    probe = config.uses_probe
    return foundation.replace(
        labels=list(data.label_names), aggregate=config.aggregate or ("mean" if probe else foundation.aggregate),
        arch_kwargs={**foundation.arch_kwargs, "head_hidden": 0} if probe else dict(foundation.arch_kwargs),
        label_descriptions={n: data.label_descriptions.get(n, n) for n in data.label_names},
        thresholds={}, metrics={},
        training={"finetune": config.to_dict(), "foundation_training": foundation.training},
        data={"foundation": {"source": foundation_source, "arch": foundation.arch, "labels": foundation.labels,
                             "data": foundation.data},
              "labels_seen_by_foundation": seen},
    )


def _check_preprocessing(foundation: ModelInfo, data: ArraySet) -> None:
    """Refuse data preprocessed differently from the foundation (a silent mismatch ruins transfer)."""
    if foundation.preprocess and data.preprocess and foundation.preprocess != data.preprocess:
        raise ValueError("the fine-tuning data were preprocessed differently from the foundation model: "
                         f"foundation {foundation.preprocess} vs data {data.preprocess}; load the data with the "
                         "foundation's preprocessing spec (info.preprocess)")


def finetune(foundation: str | Path | tuple[nn.Module, ModelInfo], train: ArraySet, val: ArraySet | None = None,
             config: FinetuneConfig | None = None, run_dir: str | Path | None = None,
             resume: bool = True, val_from_train: bool = False) -> FinetuneResult:
    """Adapt ``foundation`` to ``train.label_names`` (binary or multi-label) and return the best model.

    ``val`` (optional) drives early stopping and thresholds; without it an inner patient-level split of ``train`` is
    held out, or K-fold CV is run when ``config.cv_folds`` is set. ``strategy="scratch"`` re-initialises the network
    (the comparison arm). With ``run_dir`` every stage checkpoints atomically and a re-run resumes where it stopped.
    ``val_from_train`` says ``val`` was held out of the training data only to steer training (as ``ecgfm compare``
    does): when it has too few positives to steer (``config.min_val_positives``), the probe is fitted on train + val.
    """
    config = config or FinetuneConfig()
    base_model, base_info = load_foundation(foundation)
    _check_preprocessing(base_info, train)
    source = None if isinstance(foundation, tuple) else str(foundation)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        _prepare_run_dir(run_dir, config, train, val, resume)
        summary = run_dir / "summary.json"
        if summary.exists():  # finished run: return it without retraining
            model, info = load_checkpoint(run_dir / "best.pt")
            return FinetuneResult(model, info, json.loads(summary.read_text()).get("history", []),
                                  json.loads(summary.read_text()).get("val_auc", {}), run_dir)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    info = finetuned_info(base_info, train, config, source)

    if config.cv_folds and val is None:
        return _finetune_cv(base_model, info, train, config, run_dir)

    inner = val is None
    all_train = train
    if inner:
        tr, va = inner_validation_split(train.Y, train.patient_ids, config.val_fraction, config.seed)
        train, val = train.subset(tr), train.subset(va)
    too_few = too_few_validation_positives(val, config)
    if too_few and (inner or val_from_train):  # every training record fits the probe; thresholds out-of-fold
        return _probe_only(base_model, info, all_train if inner else train.concat(val), None, config, run_dir, too_few)
    if too_few:
        return _probe_only(base_model, info, train, val, config, run_dir, too_few)
    check_patient_disjoint(np.arange(len(train)), np.arange(len(train), len(train) + len(val)),
                           np.concatenate([train.patient_ids, val.patient_ids]), "training and validation sets")
    model = _fresh_model(base_model, info, config)
    val_set = IndexedArrays(val.X, val.Y, np.arange(len(val))) if len(val) and has_both_classes(val.Y) else None
    train_set = IndexedArrays(train.X, train.Y, epoch_index(train.Y, config.balance, config.min_epoch_samples))
    info = info.replace(data={**info.data, **_data_summary(train, val)})
    info, history = _run_stages(model, info, train_set, val_set, config, run_dir, probe_data=train)
    return _finish(model, info, history, val, config, run_dir)


def too_few_validation_positives(val: ArraySet, config: FinetuneConfig) -> str | None:
    """Why validation cannot choose between the probe and a fine-tuned body (``None`` when it can, or without a probe)."""
    if not config.uses_probe or config.min_val_positives <= 0:
        return None
    counts = np.nansum(np.asarray(val.Y, dtype=float) == 1, axis=0) if len(val) else np.zeros(len(val.label_names))
    fewest = int(np.argmin(counts))
    if counts[fewest] >= config.min_val_positives:
        return None
    return (f"validation holds {int(counts[fewest])} positive(s) of {val.label_names[fewest]} "
            f"(< min_val_positives={config.min_val_positives}): the probe is kept, the body is not fine-tuned")


def probe_out_of_fold(Z: np.ndarray, data: ArraySet, config: FinetuneConfig, n_splits: int = 5) -> np.ndarray:
    """Out-of-fold probe probabilities ``(N, L)`` over patient-level stratified folds (NaN where a label has too few
    positive patients to split), for thresholds of a probe fitted on every record."""
    Y = np.asarray(data.Y, dtype=float)
    oof = np.full(Y.shape, np.nan)
    groups = np.asarray(data.patient_ids).astype(str)
    for j in range(Y.shape[1]):
        known = np.flatnonzero(~np.isnan(Y[:, j]))
        y = Y[known, j].astype(int)
        if len(np.unique(y)) < 2:
            continue
        for fit_idx, test_idx in patient_stratified_folds(y, groups[known], n_splits, config.seed) or []:
            if len(np.unique(y[fit_idx])) < 2:
                continue
            probe = EmbeddingProbe(inner_folds=5, seed=config.seed).fit(Z[known[fit_idx]], y[fit_idx],
                                                                        groups[known[fit_idx]])
            oof[known[test_idx], j] = probe.predict_proba(Z[known[test_idx]])[:, 0]
    return oof


def _probe_only(base_model: nn.Module, info: ModelInfo, train: ArraySet, val: ArraySet | None,
                config: FinetuneConfig, run_dir: Path | None, reason: str,
                oof: tuple[np.ndarray, np.ndarray] | None = None, history: list | None = None) -> FinetuneResult:
    """The probe fitted on ``train`` as the final model (no gradient step). Thresholds come from ``val``, from ``oof``
    predictions given (K-fold CV), or from the probe's own out-of-fold predictions; ``history`` is prepended."""
    model = _fresh_model(base_model, info, config)
    Z = probe_features(model, info, train, config)
    chosen_C = fit_probe_head(model, info, train, config, features=Z)
    if val is None and oof is None:
        scores = probe_out_of_fold(Z, train, config)
        oof = (np.where(np.isnan(scores), np.nan, train.Y), scores)
    info = info.replace(data={**info.data, **_data_summary(train, val)},
                        training={**info.training, "selected_stage": "probe", "stage_best_epochs": {"probe": 0},
                                  "probe_only": reason})
    final = [{"stage": "probe", "epoch": 0, "reason": reason,
              "chosen_C": [c if np.isfinite(c) else None for c in chosen_C]}]
    return _finish(model, info, list(history or []) + final, val, config, run_dir, oof=oof)


def _fresh_model(base_model: nn.Module, info: ModelInfo, config: FinetuneConfig) -> nn.Module:
    """The foundation with a new head (or, for ``scratch``, the same architecture freshly initialised)."""
    if config.strategy == "scratch":
        torch.manual_seed(config.seed)
        return build_model(info)
    model = copy.deepcopy(base_model).cpu()
    torch.manual_seed(config.seed)
    if config.uses_probe:
        return attach_linear_head(model, info.num_labels)
    model.reset_classifier(info.num_labels)
    return model


def _data_summary(train: ArraySet, val: ArraySet | None) -> dict[str, Any]:
    def counts(data: ArraySet | None) -> dict[str, Any]:
        if data is None or not len(data):
            return {"records": 0, "patients": 0, "positives": {}}
        return {"records": int(len(data)), "patients": int(len(np.unique(data.patient_ids))),
                "positives": {n: int(np.nansum(data.Y[:, j] == 1)) for j, n in enumerate(data.label_names)}}

    return {"train": counts(train), "val": counts(val), "preprocess": train.preprocess}


def _finish(model: nn.Module, info: ModelInfo, history: list, val: ArraySet | None, config: FinetuneConfig,
            run_dir: Path | None, oof: tuple[np.ndarray, np.ndarray] | None = None) -> FinetuneResult:
    """Validation AUC and thresholds (from ``val``, or from out-of-fold predictions), then the saved model."""
    if oof is not None:
        y_val, p_val = oof
    elif val is not None and len(val):
        logits = predict_logits(model, IndexedArrays(val.X, val.Y, np.arange(len(val))), info.window, info.stride,
                                info.aggregate, batch_size=config.eval_batch_size, device=resolve_device(config.device))
        y_val, p_val = val.Y, 1.0 / (1.0 + np.exp(-logits))
    else:
        y_val = p_val = None
    val_auc: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    if y_val is not None:
        aucs = per_label_auc(y_val, p_val)
        thr, _ = choose_thresholds(y_val, p_val, config.threshold_rule)
        val_auc = {n: float(a) for n, a in zip(info.labels, aucs)}
        thresholds = {n: float(t) for n, t in zip(info.labels, thr) if np.isfinite(t)}
    metrics = {**info.metrics, "val_auc": {k: (v if np.isfinite(v) else None) for k, v in val_auc.items()},
               "threshold_rule": config.threshold_rule,
               "threshold_source": "out-of-fold predictions" if oof is not None else "validation set"}
    info = info.replace(thresholds=thresholds, metrics=metrics)
    model.eval()
    if run_dir is not None:
        torch_save_atomic({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                           "info": info.to_dict()}, run_dir / "best.pt")
        text = json.dumps(info.to_dict(), indent=2)
        atomic_write_bytes(run_dir / "config.json", lambda tmp: Path(tmp).write_text(text))
        save_pretrained(model, info, run_dir / "model")
        summary = json.dumps({"val_auc": metrics["val_auc"], "thresholds": thresholds, "history": history}, indent=2)
        atomic_write_bytes(run_dir / "summary.json", lambda tmp: Path(tmp).write_text(summary))
    return FinetuneResult(model, info, history, val_auc, run_dir)


def _finetune_cv(base_model: nn.Module, info: ModelInfo, train: ArraySet, config: FinetuneConfig,
                 run_dir: Path | None) -> FinetuneResult:
    """K-fold CV on the training data picks the epoch count (median best epoch) and thresholds (out-of-fold
    predictions); the final model is then refit on all the data for that many epochs.

    When most folds kept the head-only warm-up model (see :func:`_run_stages`), the refit trains only the head, with
    the warm-up's rate, for the median best warm-up epoch.
    """
    Y = train.Y
    counts = np.nansum(Y == 1, axis=0)
    rarest = int(np.argmin(np.where(counts > 0, counts, np.inf)))
    oof = np.full(Y.shape, np.nan)
    folds, history = [], []
    for k, fold in enumerate(cv_folds(Y[:, rarest], train.patient_ids, n_splits=config.cv_folds, seed=config.seed)):
        fold_dir = run_dir / "cv" / f"fold-{k}" if run_dir is not None else None
        tr, va = train.subset(fold.pool), train.subset(fold.test)
        model = _fresh_model(base_model, info, config)
        fold_info, fold_history = _run_stages(
            model, info, IndexedArrays(tr.X, tr.Y, epoch_index(tr.Y, config.balance, config.min_epoch_samples)),
            IndexedArrays(va.X, va.Y, np.arange(len(va))) if has_both_classes(va.Y) else None, config, fold_dir,
            probe_data=tr)
        logits = predict_logits(model, IndexedArrays(va.X, va.Y, np.arange(len(va))), info.window, info.stride,
                                info.aggregate, batch_size=config.eval_batch_size, device=resolve_device(config.device))
        oof[fold.test] = 1.0 / (1.0 + np.exp(-logits))
        n_groups = len(body_parameter_groups(model, config.body_groups, config.new_head))
        stages_before = sum(s.epochs for s in plan_stages(config, n_groups) if s.name != "final")
        best = fold_info.training["stage_best_epochs"]
        selected = fold_info.training["selected_stage"]
        if selected == "probe":
            effective = 0
        elif selected == "warmup":
            effective = best.get("warmup") or 1
        else:
            effective = stages_before + int(best.get("final") or 1)
        folds.append({"selected_stage": selected, "epochs": int(effective)})
        history.extend({"fold": k, **row} for row in fold_history)
    head_only = sum(f["selected_stage"] in ("warmup", "probe") for f in folds) > len(folds) / 2
    chosen = [f["epochs"] for f in folds if (f["selected_stage"] in ("warmup", "probe")) == head_only]
    epochs = max(1, int(np.median(chosen)))
    refit = dataclasses.replace(config, patience=None, select_warmup=False)
    if head_only and config.uses_probe:  # the probe alone, refitted on all the data: no gradient step
        info = info.replace(data={**info.data, "cv": {"folds": config.cv_folds, "per_fold": folds, "refit_epochs": 0,
                                                      "refit_strategy": "probe"}})
        return _probe_only(base_model, info, train, None, config, run_dir, "most cross-validation folds kept the probe",
                           oof=(Y, oof), history=history)
    if head_only:  # the warm-up alone: a frozen-body probe at the warm-up's rate and schedule
        refit = dataclasses.replace(refit, strategy="linear", lr=WARMUP_LR, schedule="constant", warmup_frac=0.0)
    model = _fresh_model(base_model, info, config)
    info = info.replace(data={**info.data, **_data_summary(train, None),
                              "cv": {"folds": config.cv_folds, "per_fold": folds, "refit_epochs": epochs,
                                     "refit_strategy": refit.strategy}})
    info, final_history = _run_stages(model, info, IndexedArrays(train.X, Y, epoch_index(
        Y, config.balance, config.min_epoch_samples)), None, refit, run_dir, epochs=epochs, probe_data=train)
    return _finish(model, info, history + final_history, None, config, run_dir, oof=(Y, oof))


def _prepare_run_dir(run_dir: Path, config: FinetuneConfig, train: ArraySet, val: ArraySet | None,
                     resume: bool) -> None:
    """Write ``finetune.json`` (config + data fingerprint); refuse to continue a run made with other options."""
    record = {"config": config.to_dict(), "labels": list(train.label_names),
              "train_ids": [str(i) for i in train.ids], "val_ids": None if val is None else [str(i) for i in val.ids]}
    path = run_dir / "finetune.json"
    if path.exists():
        if not resume:
            raise ValueError(f"{run_dir} already holds a fine-tuning run; pass resume or choose another folder")
        stored = json.loads(path.read_text())
        if stored != json.loads(json.dumps(record)):
            changed = [k for k in record if stored.get(k) != json.loads(json.dumps(record[k]))]
            raise ValueError(f"cannot resume {run_dir}: {', '.join(changed)} differ from the original run")
        return
    text = json.dumps(record)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


def predict_proba(model: nn.Module, info: ModelInfo, data: ArraySet, index: np.ndarray | None = None,
                  batch_size: int = 256, device: str = "auto") -> np.ndarray:
    """Record-level probabilities ``(N, L)`` with the model's own windowing (as ``ecgfm predict`` does)."""
    index = np.arange(len(data)) if index is None else np.asarray(index, dtype=int)
    logits = predict_logits(model, IndexedArrays(data.X, data.Y, index), info.window, info.stride, info.aggregate,
                            batch_size=batch_size, device=resolve_device(device))
    return 1.0 / (1.0 + np.exp(-logits))
