"""Pre-training entry point: build the training data, build the model, run :func:`ecgfm.training.fit`.

``ecgfm pretrain`` is a thin shell over :func:`pretrain`. Data sources plug in by returning a :class:`TrainingData`
(:func:`ptbxl_training_data` for PTB-XL; a manifest/store source returns the same thing with its own Datasets).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ecgfm.leads import STANDARD_LEADS
from ecgfm.models import ModelInfo, create, save_pretrained
from ecgfm.training.config import TrainConfig
from ecgfm.training.data import ArrayDataset, labels_of
from ecgfm.training.distributed import is_main_process
from ecgfm.training.trainer import Callback, FitResult, fit

#: Default sampling rate of pre-training (Hz): PTB-XL's low-rate files, the benchmark's choice.
DEFAULT_FS = 100.0


@dataclass
class TrainingData:
    """Everything a data source hands the trainer: Datasets of ``(x (leads, T) mV, y (labels,))`` and their labels.

    ``preprocess`` is the preprocessing spec (``Pipeline.to_dict()``) the records went through, so inference can
    repeat it; ``description`` says where the data came from (dataset, task, folds, counts) and ends up in the
    checkpoint's ``ModelInfo.data``.
    """

    train: Dataset
    val: Dataset | None
    labels: list[str]
    fs: float
    test: Dataset | None = None  # held-out set for benchmarks; never used by training
    preprocess: dict[str, Any] = field(default_factory=dict)
    label_descriptions: dict[str, str] = field(default_factory=dict)
    leads: list[str] = field(default_factory=lambda: list(STANDARD_LEADS))
    description: dict[str, Any] = field(default_factory=dict)
    # named groups of labels, e.g. {"rhythm": ["SR", "AFIB", ...]} from PTB-XL's statement table (recipes may score
    # a group differently, see Recipe.whole_record_group)
    label_groups: dict[str, list[str]] = field(default_factory=dict)


def _label_counts(dataset: Dataset | None, labels: Sequence[str]) -> dict[str, int]:
    if dataset is None:
        return {}
    return {name: int(count) for name, count in zip(labels, np.nansum(labels_of(dataset), axis=0))}


def ptbxl_training_data(root: str | Path | None = None, task: str = "all", fs: float = DEFAULT_FS,
                        min_count: int = 10, exclude_labels: Sequence[str] = (), train_folds=range(1, 9),
                        val_folds=(9,), test_folds=(10,), progress: bool = True) -> TrainingData:
    """PTB-XL training (folds 1-8), validation (fold 9) and test (fold 10) sets for a benchmark ``task``.

    Labels are the task's statements with at least ``min_count`` positives in the training folds, minus
    ``exclude_labels`` (statements held out, e.g. to study them later as "rare" fine-tuning targets).
    """
    from ecgfm.datasets.ptbxl import PTBXL
    from ecgfm.labels.ptbxl import statement_groups
    from ecgfm.signal import Pipeline

    dataset = PTBXL(root)
    labels = dataset.label_names(task, min_count=min_count, folds=tuple(train_folds), exclude=tuple(exclude_labels))
    if not labels:
        raise ValueError(f"no {task} labels with >= {min_count} training positives in {dataset.root}")
    pipeline = Pipeline.default(fs=fs)
    arrays = dataset.load_arrays(fs=fs, task=task, labels=labels, pipeline=pipeline, progress=progress)
    train = arrays.subset(np.isin(arrays.folds, list(train_folds)))
    val = arrays.subset(np.isin(arrays.folds, list(val_folds))) if val_folds else None
    test = arrays.subset(np.isin(arrays.folds, list(test_folds))) if test_folds else None
    train_set = ArrayDataset.from_arrayset(train)
    val_set = ArrayDataset.from_arrayset(val) if val is not None and len(val) else None
    test_set = ArrayDataset.from_arrayset(test) if test is not None and len(test) else None
    description = {
        "dataset": "PTB-XL", "root": str(dataset.root), "task": task, "min_count": min_count,
        "excluded_labels": sorted(exclude_labels), "train_folds": list(train_folds), "val_folds": list(val_folds),
        "test_folds": list(test_folds),
        "n_train": len(train), "n_val": 0 if val_set is None else len(val),
        "n_train_patients": int(len(set(train.patient_ids))),
        "train_positives": _label_counts(train_set, labels), "val_positives": _label_counts(val_set, labels),
    }
    groups = {kind: [name for name in labels if name in members]
              for kind, members in statement_groups(dataset.statements).items()}
    return TrainingData(train=train_set, val=val_set, test=test_set, labels=list(labels), fs=float(fs),
                        preprocess=pipeline.to_dict(),
                        label_descriptions=dict(arrays.label_descriptions), leads=list(pipeline.leads or STANDARD_LEADS),
                        description=description, label_groups=groups)


def pretrain(data: TrainingData, model: str = "xresnet1d50", model_kwargs: dict[str, Any] | None = None,
             config: TrainConfig | None = None, run_dir: str | Path | None = None, resume: bool = False,
             callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train ``model`` from scratch on ``data``; writes the run directory and ``run_dir/pretrained/``.

    The model is initialised from ``config.seed`` so a run is reproducible end to end. ``run_dir/pretrained`` holds
    ``model.safetensors`` + ``config.json`` of the best epoch (what ``ecgfm.models.load_pretrained`` reads).
    ``callbacks`` are passed to :func:`ecgfm.training.fit`.
    """
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    net = create(model, num_labels=len(data.labels), in_leads=len(data.leads), **(model_kwargs or {}))
    info = ModelInfo.from_model(net, data.labels, label_descriptions=data.label_descriptions, leads=data.leads,
                                fs=data.fs, preprocess=data.preprocess, data=data.description)
    result = fit(net, data.train, data.val, config, run_dir=run_dir, info=info, resume=resume, callbacks=callbacks)
    if run_dir is not None and is_main_process():  # under torchrun only rank 0 writes
        save_pretrained(result.model, result.info, Path(run_dir) / "pretrained")
    return result


def pretrain_recipe(data: TrainingData, recipe, run_dir: str | Path | None = None, resume: bool = False,
                    jobs: int | None = None, report=None, **runtime: Any) -> FitResult:
    """Train a named recipe (``ecgfm.training.recipes``): its single model, or each member then their ensemble.

    ``runtime`` overrides options that do not define the recipe (``seed``, ``device``, ``num_threads``,
    ``workers``, ``progress``, ``time_limit_s`` ...). Ensemble members train in ``run_dir/<member name>/`` (each a
    normal, resumable run with seed ``seed + i``), ``jobs`` of them at once (default: the recipe's ``jobs``), each
    with ``num_threads // jobs`` CPU threads (``ecgfm.training.members``); the combined model goes to
    ``run_dir/best.pt`` and ``run_dir/pretrained/``, with its fold-9 macro-AUC in ``info.metrics``, and the wall time
    spent training to ``run_dir/training_time.json``. ``report`` receives one line per finished member.
    """
    from ecgfm.models.checkpoint import atomic_write_bytes, torch_save_atomic
    from ecgfm.models.ensemble import combine
    from ecgfm.training.members import MemberRun, TrainingClock, threads_per_job, train_members
    from ecgfm.training.metrics import macro_auc
    from ecgfm.training.predict import predict_logits

    if not recipe.members:
        config = replace(recipe.config, **runtime)
        return pretrain(data, recipe.model, recipe.model_kwargs, config, run_dir=run_dir, resume=resume)
    run_dir = Path(run_dir) if run_dir is not None else None
    jobs = jobs or recipe.jobs
    seed = runtime.get("seed", recipe.config.seed)
    threads = threads_per_job(jobs, runtime.get("num_threads"))
    if jobs > 1:  # each member's share of the cores (recorded in its config: it decides the float rounding); the
        # workers' progress bars would interleave, so members report when they finish instead
        runtime = {**runtime, "num_threads": threads, "progress": False}
    runs = [MemberRun(i, member.name, member.model, dict(member.model_kwargs),
                      replace(member.config, **{**runtime, "seed": seed + i}),
                      run_dir / member.name if run_dir is not None else None)
            for i, member in enumerate(recipe.members)]
    with TrainingClock(run_dir if is_main_process() else None, jobs=jobs, threads=threads * jobs):
        trained = train_members(data, runs, jobs=jobs, resume=resume, report=report)
    model, info = combine(trained, **recipe.combine_options(data))
    info = info.replace(data=data.description, extra={**info.extra, "recipe": recipe.name})
    score = None
    if data.val is not None:
        logits = predict_logits(model, data.val, window=None, batch_size=64)
        score = macro_auc(labels_of(data.val), logits)
        info = info.replace(metrics={**info.metrics, "val_macro_auc": score})
    if run_dir is not None and is_main_process():
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch_save_atomic({"model": weights, "info": info.to_dict()}, run_dir / "best.pt")
        text = json.dumps(info.to_dict(), indent=2)
        atomic_write_bytes(run_dir / "config.json", lambda tmp: Path(tmp).write_text(text))
        save_pretrained(model, info, run_dir / "pretrained")
    return FitResult(model=model, info=info, best_score=score, run_dir=run_dir)
