"""Pre-training: train a recipe (``ecgfm.training.recipes``) on a :class:`~ecgfm.datasets.LabelledSet`.

``ecgfm pretrain`` is a thin shell over :func:`pretrain`. A recipe is one network (:func:`train_member`: build it, run
:func:`ecgfm.training.fit`, save it) or several members trained side by side (``ecgfm.training.members``) and
combined into an ensemble.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from ecgfm.datasets import LabelledSet, load_labelled
from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.models import ModelInfo, create, save
from ecgfm.models.ensemble import combine
from ecgfm.models.hub import checkpoint_state
from ecgfm.models.windowing import predict_logits
from ecgfm.signal import Pipeline
from ecgfm.training.distill import distil
from ecgfm.training.distributed import is_main_process
from ecgfm.training.members import MemberRun, TrainingClock, threads_per_job, train_members
from ecgfm.evaluation.metrics import macro_auc
from ecgfm.training.recipes import Recipe, get_recipe
from ecgfm.training.trainer import Callback, FitResult, fit


def training_data(recipe: str | Recipe = "xresnet1d50", labels: Sequence[str] | None = None,
                  exclude: Sequence[str] = (), min_count: int | None = None, task: str = "all", progress: bool = True,
                  **source) -> LabelledSet:
    """The data a recipe trains on, from any source (``ptbxl=``, ``manifest=``, ``store=``, ``data=``): its labels
    (default: those with at least the recipe's ``min_count`` training positives, minus ``exclude``, which
    ``source["excluded_labels"]`` records), preprocessed at the recipe's rate and with its lead sets (a store keeps
    its own preprocessing)."""
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    pipeline = None if "store" in source else Pipeline.default(fs=recipe.fs, lead_sets=recipe.lead_sets)
    data = load_labelled(**source, labels=labels, pipeline=pipeline, task=task, exclude=exclude,
                         min_count=recipe.min_count if min_count is None else min_count, progress=progress)
    if exclude:
        data = dataclasses.replace(data, source={**data.source, "excluded_labels": list(exclude)})
    return data


def train_member(data: LabelledSet, run: MemberRun, resume: bool = False,
                 callbacks: Sequence[Callback] = ()) -> torch.nn.Module:
    """Train one network from scratch on ``data``'s train split (validated on its val split); returns the model.

    The network is initialised from ``run.config.seed`` so a run is reproducible end to end; ``run.run_dir``
    receives the run (checkpoints, metrics) and ``pretrained/`` (``ecgfm.models.load`` reads it).
    """
    torch.manual_seed(run.config.seed)
    pipeline = data.pipeline()
    net = create(run.model, num_labels=len(data.labels), in_leads=pipeline.channels, **run.model_kwargs)
    net.info = ModelInfo.from_model(net, data.labels, label_descriptions=data.label_descriptions, leads=data.leads,
                                    lead_mask=pipeline.lead_mask, fs=data.fs, preprocess=data.preprocess,
                                    data=data.describe())
    val = data.part("val")
    result = fit(net, data.part("train"), val if len(val) else None, run.config, run_dir=run.run_dir, resume=resume,
                 callbacks=callbacks)
    if run.run_dir is not None and is_main_process():  # under torchrun only rank 0 writes
        save(result.model, Path(run.run_dir) / "pretrained")
    return result.model


def pretrain(data: LabelledSet, recipe: str | Recipe = "xresnet1d50", run_dir: str | Path | None = None,
             resume: bool = False, jobs: int | None = None, report=None, callbacks: Sequence[Callback] = (),
             teacher: str | None = None, **runtime: Any) -> FitResult:
    """Train a recipe: its single model, or each member then their ensemble.

    A distilling recipe first blends the training targets with its teacher's predictions (``teacher`` replaces
    the recipe's: a shipped name or a model path; the logits are cached, see ``ecgfm.training.distill``).

    ``runtime`` overrides options that do not define the recipe (``seed``, ``device``, ``num_threads``,
    ``workers``, ``progress``, ``time_limit_s`` ...). Ensemble members train in ``run_dir/<member name>/`` (each a
    normal, resumable run with seed ``seed + i``), ``jobs`` of them at once (default: the recipe's ``jobs``), each
    with ``num_threads // jobs`` CPU threads; the combined model goes to ``run_dir/best.pt`` and
    ``run_dir/pretrained/`` with its validation macro-AUC in ``info.metrics``, and the wall time spent training to
    ``run_dir/training_time.json``. ``report`` receives one line per finished member.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    run_dir = Path(run_dir) if run_dir is not None else None
    if recipe.distill is not None:
        chosen = replace(recipe.distill, teacher=teacher) if teacher else recipe.distill
        data = distil(data, chosen, num_threads=runtime.get("num_threads"))
    elif teacher:
        raise ValueError(f"recipe {recipe.name!r} does not distil, so it takes no teacher")
    if not recipe.members:
        run = MemberRun(0, recipe.name, recipe.model, dict(recipe.model_kwargs), replace(recipe.config, **runtime),
                        run_dir)
        model = train_member(data, run, resume, callbacks)
        return FitResult(model=model, run_dir=run_dir, best_epoch=model.info.training.get("best_epoch"),
                         best_score=model.info.metrics.get("best_val_macro_auc"))
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
        trained = train_members(data, runs, train_member, jobs=jobs, resume=resume, report=report)
    model = combine(trained, **recipe.combine_options(data))
    model.info = model.info.replace(data=data.describe(), extra={**model.info.extra, "recipe": recipe.name})
    val = data.part("val")
    score = None
    if len(val):
        score = macro_auc(val.Y, predict_logits(model, val.torch(), batch_size=64))
        model.info = model.info.replace(metrics={**model.info.metrics, "val_macro_auc": score})
    if run_dir is not None and is_main_process():
        state = checkpoint_state(model)
        atomic_write(run_dir / "best.pt", lambda tmp: torch.save(state, tmp))
        atomic_write_text(run_dir / "config.json", json.dumps(model.info.to_dict(), indent=2))
        save(model, run_dir / "pretrained")
    return FitResult(model=model, best_score=score, run_dir=run_dir)
