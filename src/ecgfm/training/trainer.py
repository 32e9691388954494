"""The training loop: multi-label BCE, AdamW + one-cycle/cosine, random crops, sliding-window validation,
early stopping on validation macro-AUC, and resumable, self-describing checkpoints.

Everything a run does is in :func:`fit`, top to bottom. A run directory holds::

    config.json    the ModelInfo (architecture, labels, preprocessing, training config, data description)
    metrics.jsonl  one line per epoch: train loss, val macro-AUC, lr, ECGs/s, elapsed seconds
    last.pt        everything needed to resume: model, weight average (EMA), optimiser, scheduler, RNG states, history
    best.pt        the model of the best validation epoch (+ info), what ecgfm.models.load reads
                   (with ``ema_decay``: the averaged weights, which are also what validation scores)
    tb/            TensorBoard logs (when torch.utils.tensorboard is importable)

Determinism: the shuffle order of epoch ``e`` comes from a generator seeded with ``(seed, e)``, crops from
``(seed, e, index)`` and batch augmentation from ``(seed, e, batch)``; the torch/NumPy/Python RNG states are saved
with every checkpoint. A run killed at any point and resumed from ``last.pt`` (end of the last finished epoch)
therefore reproduces the uninterrupted run.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Subset

from ecgfm.datasets import LabelledSet
from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.models.hub import checkpoint_state, load_state
from ecgfm.models.info import ModelInfo
from ecgfm.models.layout import set_channels_last, supports_channels_last
from ecgfm.models.windowing import autocast_context, predict_logits
from ecgfm.training import distributed as dist_utils
from ecgfm.training.augment import batch_rng, training_augmentation
from ecgfm.training.config import TrainConfig
from ecgfm.training.data import RandomCropDataset, labels_of
from ecgfm.evaluation.metrics import macro_auc
from ecgfm.training.schedules import build_scheduler
from ecgfm.training.state import capture_rng_state, restore_rng_state, seed_everything

#: Options that change the result; a resumed run must use the same values as the run it continues.
RESULT_AFFECTING = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup_frac", "window", "stride",
                    "aggregate", "class_weights", "max_pos_weight", "monitor", "seed", "grad_accum", "max_grad_norm",
                    "ema_decay", "scale_jitter", "noise_mv", "mixup", "lead_gain", "device_filter", "recording_rate",
                    "baseline_mv", "powerline_mv", "emg_mv", "lead_mix", "lead_drop")

Callback = Callable[[str, dict[str, Any]], None]


def result_options(stored: dict[str, Any]) -> dict[str, Any]:
    """A saved run config's result-affecting options; options added after the run was written take their defaults."""
    defaults = TrainConfig().to_dict()
    return {k: stored.get(k, defaults[k]) for k in RESULT_AFFECTING}


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (best validation weights loaded, ``model.info`` its description)
    and the history."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    stopped_early: bool = False
    stop_reason: str = "completed"  # "completed" | "early_stopping" | "time_limit" | "stop_epoch"
    run_dir: Path | None = None

    @property
    def info(self) -> ModelInfo:
        return self.model.info


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without a GPU is an error, not a silent fallback."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
    return device


def masked_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor,
                           pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean binary cross-entropy over the known (non-NaN) label entries."""
    known = ~torch.isnan(targets)
    loss = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets, nan=0.0), pos_weight=pos_weight,
                                              reduction="none")
    return (loss * known).sum() / known.sum().clamp(min=1)


def positive_weights(Y: np.ndarray, mode: str | None, cap: float) -> torch.Tensor | None:
    """BCE ``pos_weight`` per label: negatives/positives ("balanced") or its square root ("sqrt"), capped."""
    if mode is None:
        return None
    known = ~np.isnan(Y)
    pos = np.nansum(Y, axis=0)
    neg = known.sum(axis=0) - pos
    ratio = neg / np.maximum(pos, 1.0)
    weight = np.sqrt(ratio) if mode == "sqrt" else ratio
    return torch.tensor(np.clip(weight, 1.0, cap), dtype=torch.float32)


def init_head_bias(model: nn.Module, Y: np.ndarray) -> None:
    """Set the classifier's biases to each label's training log-odds (sigmoid(bias) = prevalence).

    Without it the first epochs of a multi-label run with rare labels are spent learning the priors (the initial
    loss is ~0.7 per label instead of the ~0.1 of a prevalence-aware start); see Karpathy, "A recipe for training
    neural networks" (2019), "init well".
    """
    fc = model.get_classifier() if hasattr(model, "get_classifier") else None
    if fc is None or fc.bias is None or fc.bias.shape[0] != Y.shape[1]:
        return
    prevalence = np.clip(np.nanmean(Y, axis=0), 1e-4, 1 - 1e-4)
    with torch.no_grad():
        fc.bias.copy_(torch.as_tensor(np.log(prevalence / (1 - prevalence)), dtype=fc.bias.dtype))


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    param_groups: Sequence[dict[str, Any]] | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on weights only (no decay on biases and normalisation parameters).

    ``param_groups`` (``[{"params": [...], "lr_scale": s}, ...]``) trains each group at ``lr * s`` (discriminative
    fine-tuning, see ``ecgfm.transfer``); parameters that do not require gradients are left out either way.
    """
    if param_groups is not None:
        groups = []
        for source in param_groups:
            params = [p for p in source["params"] if p.requires_grad]
            group_lr = lr * float(source.get("lr_scale", 1.0))
            groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "lr": group_lr},
                       {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr": group_lr}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def _is_better(score: float, best: float | None) -> bool:
    """Higher is better; the first epoch always counts (so best.pt exists) and a NaN score (e.g. a validation set
    where every label has one class) never beats a real one."""
    if best is None:
        return True
    if math.isnan(best):
        return not math.isnan(score)
    return not math.isnan(score) and score > best


def _open_tensorboard(run_dir: Path | None, enabled: bool):
    if run_dir is None or not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional: torch.utils.tensorboard needs the tensorboard package
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))


def _progress(loader, enabled: bool, desc: str):
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def fit(model: nn.Module, train_set: LabelledSet | Dataset, val_set: LabelledSet | Dataset | None = None,
        config: TrainConfig | None = None, run_dir: str | Path | None = None, resume: bool = False,
        callbacks: Sequence[Callback] = (), param_groups: Sequence[dict[str, Any]] | None = None) -> FitResult:
    """Train ``model`` (multi-label logits; described by ``model.info``) on a :class:`~ecgfm.datasets.LabelledSet`
    (or any torch Dataset of ``(x (leads, T), y (labels,))`` items).

    Validation (if ``val_set`` is given) runs after every epoch with sliding windows; the best macro-AUC epoch is
    kept in ``best.pt`` and loaded into the returned model. ``resume=True`` continues from ``run_dir/last.pt``.
    ``callbacks`` are called as ``cb("step", {...})`` after each optimiser step and ``cb("epoch", row)`` after
    each epoch (an exception raised there stops the run, like a kill; tests use this).
    ``param_groups`` gives parameter groups their own learning-rate scale (see :func:`build_optimizer`).
    """
    config = config or TrainConfig()
    run_dir = Path(run_dir) if run_dir is not None else None
    names = list(train_set.labels) if isinstance(train_set, LabelledSet) else None  # for a model without an info
    train_set = train_set.torch() if isinstance(train_set, LabelledSet) else train_set
    val_set = val_set.torch() if isinstance(val_set, LabelledSet) else val_set
    device = resolve_device(config.device)
    # under torchrun (WORLD_SIZE > 1) join the process group; each rank then drives the GPU of its LOCAL_RANK
    env = dist_utils.init_distributed(config.device) if dist_utils.launched_by_torchrun() else dist_utils.DistEnv(device=device)
    device = env.device
    amp = config.amp if config.amp is not None else device.type == "cuda"
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if len(train_set) == 0:
        raise ValueError("the training set is empty")
    if config.channels_last and not supports_channels_last(model):  # before anything is written
        raise ValueError(f"channels_last: {type(model).__name__} does not support channels-last mode; "
                         "use an xresnet1d or inception1d model")

    # --- the self-description saved with every checkpoint
    train_Y = labels_of(train_set)
    if names is None or len(names) != model.num_labels:  # a mismatch is refused just below, naming both sizes
        names = [f"label_{i}" for i in range(model.num_labels)]
    info = getattr(model, "info", None) or ModelInfo.from_model(model, names)
    if info.num_labels != train_Y.shape[1]:
        raise ValueError(f"the training labels have {train_Y.shape[1]} columns but the model info has {info.num_labels}")
    info = info.replace(window=config.window, stride=config.test_stride, aggregate=config.aggregate,
                        training={**info.training, "config": config.to_dict()})
    model.info = info

    last_path = run_dir / "last.pt" if run_dir else None

    # --- data: random crops of each record, reshuffled with an epoch-seeded generator
    seed_everything(config.seed)
    train_data = RandomCropDataset(train_set, config.window, seed=config.seed) if config.window else train_set
    generator = torch.Generator()
    drop_last = len(train_data) > config.batch_size * env.world_size  # a last batch of 1 would break BatchNorm
    # one permutation per epoch seeded by (seed, epoch), shared by all ranks, rank r taking every W-th record: W ranks
    # with batch B see the batches one process sees with batch W*B (see ecgfm.training.distributed)
    sampler = dist_utils.train_sampler(train_data, env, seed=config.seed * 1_000_003)
    loader = DataLoader(train_data, batch_size=config.batch_size, sampler=sampler, drop_last=drop_last,
                        num_workers=config.workers, generator=generator, pin_memory=device.type == "cuda")
    val_Y = labels_of(val_set) if val_set is not None else None
    augmentation = training_augmentation(config, info)

    # --- model, loss weights, optimiser, schedule
    if config.init_head_bias and not (resume and last_path is not None and last_path.exists()):
        init_head_bias(model, train_Y)
    model.to(device)
    train_model = dist_utils.wrap_model(model, env)  # DDP when world_size > 1: gradients averaged over ranks
    if config.compile:  # compiled view of the same parameters; checkpoints still save the plain model
        train_model = torch.compile(train_model)
    pos_weight = positive_weights(train_Y, config.class_weights, config.max_pos_weight)
    pos_weight = pos_weight.to(device) if pos_weight is not None else None
    optimizer = build_optimizer(model, config.lr, config.weight_decay, param_groups)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    scheduler = build_scheduler(optimizer, config.schedule, config.epochs * steps_per_epoch,
                                [group["lr"] for group in optimizer.param_groups], config.warmup_frac)
    # weight average: a copy of the model whose parameters and BatchNorm buffers follow the trained ones with
    # decay ema_decay per optimiser step; it is the model validated and kept (the raw weights keep training)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
           if config.ema_decay else None)
    scored_model = ema.module if ema is not None else model

    # --- fresh start or resume
    history: list[dict[str, Any]] = []
    start_epoch, global_step, best_score, best_epoch, bad_epochs, elapsed_before = 0, 0, None, None, 0, 0.0
    if run_dir is not None:
        if last_path.exists() and not resume:
            raise ValueError(f"{run_dir} already holds a run (last.pt); resume it (resume=True, --resume) or choose another folder")
        if resume and last_path.exists():
            ckpt = load_state(last_path)
            stored = result_options(ckpt["info"]["training"]["config"])
            changed = {k: (stored[k], getattr(config, k)) for k in RESULT_AFFECTING if stored[k] != getattr(config, k)}
            if changed:
                raise ValueError(f"cannot resume {run_dir}: options differ from the original run {changed}")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            restore_rng_state(ckpt["rng"], generator)
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            start_epoch, global_step = ckpt["epoch"], ckpt["global_step"]
            best_score, best_epoch, bad_epochs = ckpt["best_score"], ckpt["best_epoch"], ckpt["bad_epochs"]
            history, elapsed_before = list(ckpt["history"]), ckpt["elapsed"]
            stored_info = ModelInfo.from_dict(ckpt["info"])  # what the run knew so far (epochs run, best epoch...)
            info = info.replace(training={**stored_info.training, **info.training}, metrics=stored_info.metrics)
            model.info = info
        if env.is_main:  # only rank 0 writes
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.json", json.dumps(info.to_dict(), indent=2))
            _write_metrics(run_dir, history)  # a resumed run drops lines of an epoch that had no checkpoint
        dist_utils.barrier()
    writer = _open_tensorboard(run_dir, config.tensorboard and env.is_main)

    stopped_early, best_state, stop_reason = False, None, "completed"
    clock = time.perf_counter() - elapsed_before
    # 2-D channels-last kernels, same parameters (ecgfm.models.layout): switched here, where the finally below
    # switches back, so a failed or finished run hands back the usual 1-D model (DDP and compile wrap these modules)
    layout_switched = ([model] + ([ema.module] if ema is not None else [])) if config.channels_last else []
    for switched in layout_switched:
        set_channels_last(switched)
    try:
        for epoch in range(start_epoch, config.epochs):
            if config.patience is not None and bad_epochs >= config.patience:
                stopped_early, stop_reason = True, "early_stopping"
                break
            if config.stop_epoch is not None and epoch >= config.stop_epoch:
                stop_reason = "stop_epoch"
                break
            elapsed = time.perf_counter() - clock
            elapsed = dist_utils.all_reduce_sums({"t": elapsed})["t"] / env.world_size  # same decision on all ranks
            if config.time_limit_s and history and elapsed + elapsed / len(history) > config.time_limit_s:
                stop_reason = "time_limit"  # the next epoch would probably end past the budget
                break
            # ---- train one epoch
            if isinstance(train_data, RandomCropDataset):
                train_data.set_epoch(epoch)
            generator.manual_seed(config.seed * 1_000_003 + epoch)
            sampler.set_epoch(epoch)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss_sum, seen, epoch_start = 0.0, 0, time.perf_counter()
            bar = _progress(loader, config.progress and env.is_main, f"epoch {epoch + 1}/{config.epochs}")
            for i, (x, y) in enumerate(bar):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if augmentation:  # draws seeded by (seed, epoch, batch, rank): a resumed epoch repeats them exactly
                    x, y = augmentation(x, y, batch_rng(config.seed, epoch, i, env.rank))
                step_now = (i + 1) % config.grad_accum == 0 or i + 1 == len(loader)
                with dist_utils.no_sync(train_model, skip_sync=not step_now):  # all-reduce once per optimiser step
                    with autocast_context(device, amp):
                        logits = train_model(x)
                    loss = masked_bce_with_logits(logits.float(), y, pos_weight)
                    (loss / config.grad_accum).backward()
                if step_now:
                    if config.max_grad_norm:
                        nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    global_step += 1
                    for cb in callbacks:
                        cb("step", {"epoch": epoch, "step": global_step, "loss": loss.item()})
                loss_sum += loss.item() * len(x)
                seen += len(x)
                if config.progress and env.is_main:
                    rate = seen / max(time.perf_counter() - epoch_start, 1e-9)
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", ecg_s=f"{rate:.0f}")
            train_time = time.perf_counter() - epoch_start
            totals = dist_utils.all_reduce_sums({"loss_sum": loss_sum, "seen": seen})  # sums over ranks, not means
            loss_sum, seen = totals["loss_sum"], int(totals["seen"])

            # ---- validate with sliding windows
            row: dict[str, Any] = {"epoch": epoch + 1, "step": global_step, "train_loss": loss_sum / max(seen, 1),
                                   "lr": optimizer.param_groups[0]["lr"], "train_ecgs_per_s": seen / max(train_time, 1e-9)}
            if val_set is not None:
                val_start = time.perf_counter()
                if env.distributed:  # each rank scores every W-th record once; every rank gets all logits in order
                    mine = dist_utils.shard_indices(len(val_set), env.rank, env.world_size)
                    local = (predict_logits(scored_model, Subset(val_set, mine.tolist()), config.window,
                                            config.test_stride, config.aggregate, batch_size=config.eval_batch_size,
                                            device=device, amp=amp)
                             if len(mine) else np.zeros((0, val_Y.shape[1]), np.float32))
                    logits = dist_utils.gather_rows(local, mine, len(val_set))
                else:
                    logits = predict_logits(scored_model, val_set, config.window, config.test_stride, config.aggregate,
                                            batch_size=config.eval_batch_size, device=device, amp=amp)
                row["val_loss"] = float(masked_bce_with_logits(torch.from_numpy(logits), torch.from_numpy(val_Y)))
                row["val_macro_auc"] = macro_auc(val_Y, logits)  # AUC is rank-based: logits rank like probabilities
                row["val_seconds"] = time.perf_counter() - val_start
                score = row[config.monitor] if config.monitor == "val_macro_auc" else -row["val_loss"]
            else:
                score = -row["train_loss"]  # no validation set: keep the latest (lowest-loss) model
            row["elapsed_s"] = time.perf_counter() - clock
            history.append(row)

            improved = _is_better(score, best_score) or val_set is None
            if improved:
                best_score, best_epoch, bad_epochs = score, epoch + 1, 0
                best_state = {k: v.detach().cpu().clone() for k, v in scored_model.state_dict().items()}
            else:
                bad_epochs += 1
            info = info.replace(training={**info.training, "epochs_run": epoch + 1, "best_epoch": best_epoch},
                                metrics={**info.metrics, "best_" + config.monitor: best_score})
            model.info = info

            # ---- checkpoints (atomic), metrics, logs: rank 0 only
            if run_dir is not None and env.is_main:
                if improved:
                    scored_model.info = info
                    best = checkpoint_state(scored_model, epoch=epoch + 1, metrics=row)
                    atomic_write(run_dir / "best.pt", lambda tmp: torch.save(best, tmp))
                last = checkpoint_state(
                    model, optimizer=optimizer.state_dict(), **({"ema": ema.state_dict()} if ema is not None else {}),
                    scheduler=scheduler.state_dict(), rng=capture_rng_state(generator), epoch=epoch + 1,
                    global_step=global_step, best_score=best_score, best_epoch=best_epoch, bad_epochs=bad_epochs,
                    history=history, elapsed=row["elapsed_s"])
                atomic_write(last_path, lambda tmp: torch.save(last, tmp))
                _write_metrics(run_dir, history)
            if writer is not None:
                for key, value in row.items():
                    if key not in ("epoch", "step") and isinstance(value, (int, float)):
                        writer.add_scalar(key, value, epoch + 1)
                writer.flush()
            for cb in callbacks:
                cb("epoch", row)
    finally:
        if writer is not None:
            writer.close()
        for switched in layout_switched:
            set_channels_last(switched, False)

    # ---- hand back the best model (from memory, or from best.pt when the best epoch was before a resume)
    if best_state is None and run_dir is not None and (run_dir / "best.pt").exists():
        best_state = load_state(run_dir / "best.pt")["model"]
    if best_state is not None:
        model.load_state_dict(best_state)
    model.info = info.replace(training={**info.training, "stopped_early": stopped_early, "stop_reason": stop_reason})
    if run_dir is not None and env.is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(model.info.to_dict(), indent=2))
    model.eval()
    return FitResult(model=model, history=history, best_epoch=best_epoch, best_score=best_score,
                     stopped_early=stopped_early, stop_reason=stop_reason, run_dir=run_dir)
