"""Fine-tune a foundation model for labels it never saw, from a few examples (or train the same network from scratch).

Strategies (``FinetuneConfig.strategy``; options in :mod:`ecgfm.transfer.config`, stages in
:mod:`ecgfm.transfer.stages`):

- ``full`` (default, as in Hu et al. 2025): every layer trains. The recipe that holds up at tiny sizes is "linear probe,
  then fine-tune" (LP-FT, Kumar et al., ICLR 2022) inside one epoch budget: (1) the new head starts as a fitted linear
  probe (:mod:`ecgfm.transfer.probe`) instead of random weights, so random initial gradients never reach (and distort)
  the pretrained filters; (2) all layers train with *discriminative* learning rates (the new head at ``train.lr``, the
  pretrained layers at ``lr * body_lr_scale`` shrinking by ``layer_lr_decay`` per group towards the input) and the
  pretrained BatchNorm statistics kept (``freeze_bn``: a few dozen ECGs cannot re-estimate them). Early stopping on the
  inner validation AUC picks the epoch, and the probe is kept when fine-tuning the body never beats it
  (``select_warmup``). When the validation set holds fewer than ``min_val_positives`` (5) positives of some label, its
  AUC cannot tell a fine-tuned body from the probe (with 2 positives, each decides half of the AUC), so no body step is
  taken: the probe is the model, refitted on every training record when validation was an inner split, with thresholds
  from its out-of-fold predictions (``min_val_positives=0`` turns this off). 5 is the evaluation's own rule for scoring
  an AUC. K-fold CV (``cv_folds``) is exempt: it decides by majority over the folds, whose validation records cover all
  the training positives. ``new_head="fc"`` instead keeps the foundation's 128-unit hidden layer and warms up a fresh
  final layer with ``warmup_epochs`` of SGD on the frozen body; ``"head"`` re-learns the whole pretrained head that way.
  With ``whole_body`` (default), a second candidate trains on the same records: the whole network from the pretrained
  weights at the pre-training recipe (:func:`~ecgfm.transfer.config.whole_body_config`), windows combined as the
  foundation combines them; the one with the higher validation macro-AUC is kept (``info.training["selected_recipe"]``).
  LP-FT's body barely moves and its probe reads a pooled embedding, which is what loses to training from scratch on
  statements whose evidence is a brief event within the strip; the candidate is training from scratch with a head start.
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
carrying the foundation's preprocessing, the new labels with descriptions, and validation thresholds, so
``ecgfm predict`` and ``ecgfm evaluate`` take it as is.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from ecgfm.datasets import LabelledSet
from ecgfm.evaluation.thresholds import choose_thresholds
from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.models import ModelInfo, build_model, load, save
from ecgfm.models.ensemble import member
from ecgfm.models.hub import checkpoint_state
from ecgfm.models.windowing import predict_logits
from ecgfm.training import per_label_auc, resolve_device
from ecgfm.transfer.config import WARMUP_LR, FinetuneConfig, whole_body_config
from ecgfm.transfer.probe import (attach_linear_head, fit_probe_head, has_both_classes, probe_features,
                                  probe_out_of_fold)
from ecgfm.transfer.splits import check_patient_disjoint, cv_folds, inner_validation_split
from ecgfm.transfer.stages import body_parameter_groups, plan_stages, run_stages, training_view, validation_score

__all__ = ["finetune", "FinetuneConfig", "FinetuneResult", "load_foundation", "predict_proba", "finetuned_info"]

#: A foundation: a loaded model (with ``.info``), or a shipped name, folder or checkpoint for ``ecgfm.models.load``.
Foundation = nn.Module | str | os.PathLike


@dataclass
class FinetuneResult:
    """The fine-tuned model (best validation weights; ``model.info``: labels, thresholds, metrics) and its history."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    val_auc: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None

    @property
    def info(self) -> ModelInfo:
        return self.model.info


def load_foundation(foundation: Foundation) -> nn.Module:
    """A foundation model with ``.info``: as given, or loaded by :func:`ecgfm.models.load` (a shipped name, a folder,
    a checkpoint; the shipped default is one network). An ensemble (such as ``default8``) contributes its first member:
    transfer learning fine-tunes one backbone (``default8``'s first member is its ``xresnet1d50`` on 2.5-s crops)."""
    model = foundation if isinstance(foundation, nn.Module) else load(foundation)
    return member(model, 0) if model.info.arch == "ensemble" else model


def predict_proba(model: nn.Module, data: LabelledSet, index: np.ndarray | None = None, batch_size: int = 256,
                  device: str = "auto") -> np.ndarray:
    """Record-level probabilities ``(N, L)`` with the model's own windowing (as ``ecgfm predict`` does)."""
    logits = predict_logits(model, data.torch(index), batch_size=batch_size, device=resolve_device(device))
    return expit(logits)


def finetuned_info(foundation: ModelInfo, data: LabelledSet, config: FinetuneConfig,
                   foundation_source: str | None = None) -> ModelInfo:
    """The new model's self-description: the foundation's architecture and preprocessing, the new labels."""
    probe = config.uses_probe
    return foundation.replace(
        labels=list(data.labels), aggregate=config.aggregate or ("mean" if probe else foundation.aggregate),
        arch_kwargs={**foundation.arch_kwargs, "head_hidden": 0} if probe else dict(foundation.arch_kwargs),
        label_descriptions={n: data.label_descriptions.get(n, n) for n in data.labels},
        thresholds={}, metrics={},
        training={"finetune": config.to_dict(), "foundation_training": foundation.training},
        data={"foundation": {"source": foundation_source, "arch": foundation.arch, "labels": foundation.labels,
                             "data": foundation.data},
              "labels_seen_by_foundation": [label for label in data.labels if label in foundation.labels]},
    )


def finetune(foundation: Foundation, train: LabelledSet, val: LabelledSet | None = None,
             config: FinetuneConfig | None = None, run_dir: str | os.PathLike | None = None,
             resume: bool = True, val_from_train: bool = False) -> FinetuneResult:
    """Adapt ``foundation`` (a model with ``.info``, or a name/path for :func:`ecgfm.models.load`) to
    ``train.labels`` (binary or multi-label) and return the best model.

    ``val`` (optional) drives early stopping and thresholds; without it an inner patient-level split of ``train`` is
    held out, or K-fold CV is run when ``config.cv_folds`` is set. ``strategy="scratch"`` re-initialises the network
    (the comparison arm). With ``run_dir`` every stage checkpoints atomically and a re-run resumes where it stopped.
    ``val_from_train`` says ``val`` was held out of the training data only to steer training (as ``ecgfm compare``
    does): when it has too few positives to steer (``config.min_val_positives``), the probe is fitted on train + val.
    """
    config = config or FinetuneConfig()
    base = load_foundation(foundation)
    if base.info.preprocess and train.preprocess and base.info.preprocess != train.preprocess:
        raise ValueError("the fine-tuning data were preprocessed differently from the foundation model: "
                         f"foundation {base.info.preprocess} vs data {train.preprocess}; load the data with the "
                         "foundation's preprocessing (model.info.pipeline())")
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        _prepare_run_dir(run_dir, config, train, val, resume)
        if (run_dir / "summary.json").exists():  # finished run: return it without retraining
            summary = json.loads((run_dir / "summary.json").read_text())
            return FinetuneResult(load(run_dir / "best.pt"), summary.get("history", []), summary.get("val_auc", {}),
                                  run_dir)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    source = None if isinstance(foundation, nn.Module) else str(foundation)
    info = finetuned_info(base.info, train, config, source)

    if config.cv_folds and val is None:
        return _finetune_cv(base, info, train, config, run_dir)
    inner = val is None
    all_train = train
    if inner:
        tr, va = inner_validation_split(train.Y, train.patient_ids, config.val_fraction, config.train.seed)
        train, val = train.subset(tr), train.subset(va)
    too_few = too_few_validation_positives(val, config)
    if too_few and (inner or val_from_train):  # every training record fits the probe; thresholds out-of-fold
        return _probe_only(base, info, all_train if inner else train.concat(val), None, config, run_dir, too_few)
    if too_few:
        return _probe_only(base, info, train, val, config, run_dir, too_few)
    check_patient_disjoint(np.arange(len(train)), np.arange(len(train), len(train) + len(val)),
                           np.concatenate([train.patient_ids, val.patient_ids]), "training and validation sets")
    model = _fresh_model(base, info.replace(data={**info.data, **_data_summary(train, val)}), config)
    val_set = val.torch() if len(val) and has_both_classes(val.Y) else None
    history = run_stages(model, training_view(train, config), val_set, config, run_dir, probe_data=train)
    if config.whole_body and config.strategy != "scratch" and val_set is not None:
        model, history = _better_of_whole_body(model, history, base, source, train, val, val_set, config, run_dir)
    return _finish(model, history, val, config, run_dir)


def _better_of_whole_body(model: nn.Module, history: list, base: nn.Module, source: str | None, train: LabelledSet,
                          val: LabelledSet, val_set, config: FinetuneConfig,
                          run_dir: Path | None) -> tuple[nn.Module, list]:
    """Train the whole-body candidate (:func:`ecgfm.transfer.config.whole_body_config`) on the same records and keep
    it only when its validation macro-AUC beats the fine-tuned model's (a tie keeps the fine-tuned one)."""
    alt_config = whole_body_config(config)
    alt_info = finetuned_info(base.info, train, alt_config, source)
    alt = _fresh_model(base, alt_info.replace(data={**alt_info.data, **_data_summary(train, val)}), alt_config)
    alt_history = run_stages(alt, training_view(train, alt_config), val_set, alt_config,
                             None if run_dir is None else run_dir / "whole-body")
    scores = {"fine-tuned": validation_score(model, val_set, config),
              "whole body": validation_score(alt, val_set, alt_config)}
    keep_alt = bool(np.isfinite(scores["whole body"]) and not scores["whole body"] <= scores["fine-tuned"])
    chosen = alt if keep_alt else model
    chosen.info = chosen.info.replace(training={**chosen.info.training, "candidates_val_macro_auc": scores,
                                                "selected_recipe": "whole body" if keep_alt else "fine-tuned"})
    return chosen, history + [{"candidate": "whole body", **row} for row in alt_history]


def finetune_data(data: LabelledSet, config: FinetuneConfig) -> tuple[LabelledSet, LabelledSet | None]:
    """The records to fine-tune on and to validate on from a labelled set with splits: its train and val records;
    with ``config.cv_folds`` both together (cross-validation chooses); when the val records hold no positive, no
    validation set (:func:`finetune` then holds out an inner patient-level split of the training records)."""
    if config.cv_folds:
        return data.part("train", "val"), None
    train, val = data.part("train"), data.part("val")
    if not (train.Y == 1).any():
        raise ValueError(f"no positive training records for {', '.join(data.labels)}")
    return train, (val if len(val) and (val.Y == 1).any() else None)


def too_few_validation_positives(val: LabelledSet, config: FinetuneConfig) -> str | None:
    """Why validation cannot choose between the probe and a fine-tuned body (``None`` when it can, or without a probe)."""
    if not config.uses_probe or config.min_val_positives <= 0:
        return None
    counts = np.nansum(np.asarray(val.Y, dtype=float) == 1, axis=0) if len(val) else np.zeros(len(val.labels))
    fewest = int(np.argmin(counts))
    if counts[fewest] >= config.min_val_positives:
        return None
    return (f"validation holds {int(counts[fewest])} positive(s) of {val.labels[fewest]} "
            f"(< min_val_positives={config.min_val_positives}): the probe is kept, the body is not fine-tuned")


def _probe_only(base: nn.Module, info: ModelInfo, train: LabelledSet, val: LabelledSet | None,
                config: FinetuneConfig, run_dir: Path | None, reason: str,
                oof: tuple[np.ndarray, np.ndarray] | None = None, history: list | None = None) -> FinetuneResult:
    """The probe fitted on ``train`` as the final model (no gradient step). Thresholds come from ``val``, from ``oof``
    predictions given (K-fold CV), or from the probe's own out-of-fold predictions; ``history`` is prepended."""
    info = info.replace(data={**info.data, **_data_summary(train, val)},
                        training={**info.training, "selected_stage": "probe", "stage_best_epochs": {"probe": 0},
                                  "probe_only": reason})
    model = _fresh_model(base, info, config)
    device = resolve_device(config.train.device)
    Z = probe_features(model, train, config.train.eval_batch_size, device)
    chosen_C = fit_probe_head(model, train, config.train.seed, features=Z)
    if val is None and oof is None:
        scores = probe_out_of_fold(Z, train, config.train.seed)
        oof = (np.where(np.isnan(scores), np.nan, train.Y), scores)
    final = [{"stage": "probe", "epoch": 0, "reason": reason,
              "chosen_C": [c if np.isfinite(c) else None for c in chosen_C]}]
    return _finish(model, list(history or []) + final, val, config, run_dir, oof=oof)


def _fresh_model(base: nn.Module, info: ModelInfo, config: FinetuneConfig) -> nn.Module:
    """The foundation with a new head (or, for ``scratch``, the same architecture freshly initialised), described by
    ``info``."""
    if config.strategy == "scratch":
        torch.manual_seed(config.train.seed)
        return build_model(info)
    model = copy.deepcopy(base).cpu()
    torch.manual_seed(config.train.seed)
    if config.uses_probe:
        attach_linear_head(model, info.num_labels)
    else:
        model.reset_classifier(info.num_labels)
    model.info = info
    return model


def _data_summary(train: LabelledSet, val: LabelledSet | None) -> dict[str, Any]:
    def counts(data: LabelledSet | None) -> dict[str, Any]:
        if data is None or not len(data):
            return {"records": 0, "patients": 0, "positives": {}}
        return {"records": int(len(data)), "patients": int(len(np.unique(data.patient_ids))),
                "positives": data.positives()}

    return {"train": counts(train), "val": counts(val), "preprocess": train.preprocess}


def _finish(model: nn.Module, history: list, val: LabelledSet | None, config: FinetuneConfig, run_dir: Path | None,
            oof: tuple[np.ndarray, np.ndarray] | None = None) -> FinetuneResult:
    """Validation AUC and thresholds (from ``val``, or from out-of-fold predictions), then the saved model."""
    info = model.info
    if oof is not None:
        y_val, p_val = oof
    elif val is not None and len(val):
        y_val = val.Y
        p_val = predict_proba(model, val, batch_size=config.train.eval_batch_size, device=config.train.device)
    else:
        y_val = p_val = None
    val_auc: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    if y_val is not None:
        thr, _ = choose_thresholds(y_val, p_val, config.threshold_rule)
        val_auc = {n: float(a) for n, a in zip(info.labels, per_label_auc(y_val, p_val))}
        thresholds = {n: float(t) for n, t in zip(info.labels, thr) if np.isfinite(t)}
    metrics = {**info.metrics, "val_auc": {k: (v if np.isfinite(v) else None) for k, v in val_auc.items()},
               "threshold_rule": config.threshold_rule,
               "threshold_source": "out-of-fold predictions" if oof is not None else "validation set"}
    model.info = info.replace(thresholds=thresholds, metrics=metrics)
    model.eval()
    if run_dir is not None:
        state = checkpoint_state(model)
        atomic_write(run_dir / "best.pt", lambda tmp: torch.save(state, tmp))
        atomic_write_text(run_dir / "config.json", json.dumps(model.info.to_dict(), indent=2))
        save(model, run_dir / "model")
        atomic_write_text(run_dir / "summary.json", json.dumps(
            {"val_auc": metrics["val_auc"], "thresholds": thresholds, "history": history}, indent=2))
    return FinetuneResult(model, history, val_auc, run_dir)


def _finetune_cv(base: nn.Module, info: ModelInfo, train: LabelledSet, config: FinetuneConfig,
                 run_dir: Path | None) -> FinetuneResult:
    """K-fold CV on the training data picks the epoch count (median best epoch) and thresholds (out-of-fold
    predictions); the final model is then refit on all the data for that many epochs.

    When most folds kept the head-only model (the probe, or the warm-up: see :func:`run_stages`), the refit is the
    probe alone, or trains only the head with the warm-up's rate for the median best warm-up epoch.
    """
    Y = train.Y
    counts = np.nansum(Y == 1, axis=0)
    rarest = int(np.argmin(np.where(counts > 0, counts, np.inf)))
    oof = np.full(Y.shape, np.nan)
    folds, history = [], []
    n_before_final = None
    for k, fold in enumerate(cv_folds(Y[:, rarest], train.patient_ids, n_splits=config.cv_folds,
                                      seed=config.train.seed)):
        tr, va = train.subset(fold.pool), train.subset(fold.test)
        model = _fresh_model(base, info, config)
        fold_history = run_stages(model, training_view(tr, config), va.torch() if has_both_classes(va.Y) else None,
                                  config, run_dir / "cv" / f"fold-{k}" if run_dir is not None else None, probe_data=tr)
        oof[fold.test] = predict_proba(model, va, batch_size=config.train.eval_batch_size, device=config.train.device)
        if n_before_final is None:
            n_groups = len(body_parameter_groups(model, config.body_groups, config.new_head))
            n_before_final = sum(s.epochs for s in plan_stages(config, n_groups) if s.name != "final")
        best, selected = model.info.training["stage_best_epochs"], model.info.training["selected_stage"]
        effective = {"probe": 0, "warmup": best.get("warmup") or 1}.get(
            selected, n_before_final + int(best.get("final") or 1))
        folds.append({"selected_stage": selected, "epochs": int(effective)})
        history.extend({"fold": k, **row} for row in fold_history)
    head_only = sum(f["selected_stage"] in ("warmup", "probe") for f in folds) > len(folds) / 2
    epochs = max(1, int(np.median([f["epochs"] for f in folds
                                   if (f["selected_stage"] in ("warmup", "probe")) == head_only])))
    cv = {"folds": config.cv_folds, "per_fold": folds}
    if head_only and config.uses_probe:  # the probe alone, refitted on all the data: no gradient step
        info = info.replace(data={**info.data, "cv": {**cv, "refit_epochs": 0, "refit_strategy": "probe"}})
        return _probe_only(base, info, train, None, config, run_dir, "most cross-validation folds kept the probe",
                           oof=(Y, oof), history=history)
    refit = dataclasses.replace(config, select_warmup=False,
                                train=dataclasses.replace(config.train, epochs=epochs, patience=None))
    if head_only:  # the warm-up alone: a frozen-body probe at the warm-up's rate and schedule
        refit = dataclasses.replace(refit, strategy="linear", train=dataclasses.replace(
            refit.train, lr=WARMUP_LR, schedule="constant", warmup_frac=0.0))
    info = info.replace(data={**info.data, **_data_summary(train, None),
                              "cv": {**cv, "refit_epochs": epochs, "refit_strategy": refit.strategy}})
    model = _fresh_model(base, info, config)
    history += run_stages(model, training_view(train, config), None, refit, run_dir, probe_data=train)
    return _finish(model, history, None, config, run_dir, oof=(Y, oof))


def _prepare_run_dir(run_dir: Path, config: FinetuneConfig, train: LabelledSet, val: LabelledSet | None,
                     resume: bool) -> None:
    """Write ``finetune.json`` (config + data fingerprint); refuse to continue a run made with other options."""
    record = json.loads(json.dumps({"config": config.to_dict(), "labels": list(train.labels),
                                    "train_ids": [str(i) for i in train.ids],
                                    "val_ids": None if val is None else [str(i) for i in val.ids]}))
    path = run_dir / "finetune.json"
    if not path.exists():
        atomic_write_text(path, json.dumps(record))
        return
    if not resume:
        raise ValueError(f"{run_dir} already holds a fine-tuning run; pass resume or choose another folder")
    stored = json.loads(path.read_text())
    changed = [k for k in record if stored.get(k) != record[k]]
    if changed:
        raise ValueError(f"cannot resume {run_dir}: {', '.join(changed)} differ from the original run")
