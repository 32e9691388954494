"""``TrainConfig``: every knob of a training run, saved as ``config.json`` in the run directory."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

_Options = TypeVar("_Options")


@dataclass
class TrainConfig:
    """Hyper-parameters and runtime options of :func:`ecgfm.training.fit`.

    Defaults follow Strodthoff et al. 2020 (PTB-XL benchmark): AdamW, one-cycle, lr 1e-2, weight decay 1e-2,
    batch 128, random 2.5-s crops (``window=250`` samples at 100 Hz) and test-time sliding windows with a 1.25-s
    stride whose logits are aggregated by their maximum.
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-2
    schedule: str = "onecycle"  # "onecycle" | "cosine" (linear warm-up then cosine) | "constant"
    warmup_frac: float = 0.3  # fraction of steps spent warming up (one-cycle pct_start / cosine warm-up)
    window: int | None = 250  # training crop and test window in samples; None = whole records
    stride: int | None = None  # test-time window step in samples; None = window // 2
    aggregate: str = "max"  # combine window logits by "max" or "mean"
    class_weights: str | None = None  # None | "balanced" (pos_weight = neg/pos) | "sqrt" (its square root)
    max_pos_weight: float = 50.0  # cap so a label with 3 positives does not dominate the loss
    init_head_bias: bool = True  # fresh runs: start the final-layer biases at the training labels' log-odds
    patience: int | None = None  # stop after this many epochs without a better validation score
    time_limit_s: float | None = None  # skip epochs that would end past this many seconds (mean epoch time)
    # stop after this many epochs of the ``epochs``-long schedule (the schedule is unchanged): replays, exactly, a run
    # that a time limit stopped there
    stop_epoch: int | None = None
    monitor: str = "val_macro_auc"  # checkpoint selection / early stopping: "val_macro_auc" or "val_loss"
    # bf16 autocast; None = on for CUDA, off on CPU: it needs a CPU with native bf16 to pay (1.17x for a whole run on
    # AVX-512 BF16, experiments/cpu_precision.py) and changes the numbers, so CPU runs stay fp32-reproducible
    amp: bool | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    workers: int = 0  # DataLoader worker processes
    seed: int = 0
    grad_accum: int = 1  # optimiser step every N batches (effective batch = batch_size * grad_accum)
    # torch.compile the training forward pass (GPU: fuses the many small 1-D conv/BN/ReLU kernels; on 2 CPU cores a
    # bf16 channels-last step gains 1.09x and whole epochs nothing measurable, docs/models.md)
    compile: bool = False
    # run the 1-D convolutions as 2-D channels-last ones (ecgfm.models.layout; xresnet1d / inception1d), the same
    # parameters: a CPU training step 1.4x faster in fp32 and 1.5x in bf16 on a 2-core Xeon (docs/models.md); off by
    # default because the float rounding differs, so the shipped recipes would no longer replay bit for bit
    channels_last: bool = False
    max_grad_norm: float | None = None  # clip gradients to this L2 norm
    # Exponential moving average of the weights (and BatchNorm statistics), updated after every optimiser step;
    # when set, validation, best-epoch selection and the saved model use the averaged weights. 0.995 averages over
    # the last ~200 steps (a few epochs on PTB-XL-sized data); None trains and keeps the raw weights.
    ema_decay: float | None = None
    # Batch augmentation (ecgfm.training.augment), off by default: one gain per ECG, log-uniform in
    # [1/(1+s), 1+s]; white noise of this many mV; mixup with Beta(alpha, alpha) blending weights.
    scale_jitter: float = 0.0
    noise_mv: float = 0.0
    mixup: float = 0.0
    # What differs between hospitals (ecgfm.training.augment.HospitalShift), off by default: electrode gains
    # (log-uniform within +-s), probability of a device filter, probability of another recording rate, baseline
    # wander / mains hum / muscle noise up to these mV, chest-electrode placement (up to this fraction of a neighbour)
    lead_gain: float = 0.0
    device_filter: float = 0.0
    recording_rate: float = 0.0
    baseline_mv: float = 0.0
    powerline_mv: float = 0.0
    emg_mv: float = 0.0
    lead_mix: float = 0.0
    # models with lead-presence channels (ModelInfo.lead_mask): probability that a training ECG is read as one of
    # the model's reduced lead sets (chosen uniformly; ecgfm.models.leadsets)
    lead_drop: float = 0.0
    eval_batch_size: int = 256  # windows per forward pass at validation
    num_threads: int | None = None  # torch.set_num_threads for CPU runs; None = leave as is
    progress: bool = True  # tqdm progress bar on stderr
    tensorboard: bool = True  # write TensorBoard logs when torch.utils.tensorboard is importable

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.schedule in ("onecycle", "cosine", "constant"), "schedule must be onecycle, cosine or constant"),
            (0 <= self.warmup_frac < 1, "warmup_frac must be in [0, 1)"),
            (self.window is None or self.window >= 1, "window must be >= 1 samples"),
            (self.stride is None or self.stride >= 1, "stride must be >= 1 samples"),
            (self.aggregate in ("max", "mean"), "aggregate must be max or mean"),
            (self.class_weights in (None, "balanced", "sqrt"), "class_weights must be None, balanced or sqrt"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1"),
            (self.time_limit_s is None or self.time_limit_s > 0, "time_limit_s must be > 0"),
            (self.stop_epoch is None or 1 <= self.stop_epoch <= self.epochs, "stop_epoch must be in [1, epochs]"),
            (self.monitor in ("val_macro_auc", "val_loss"), "monitor must be val_macro_auc or val_loss"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay must be in (0, 1)"),
            (self.workers >= 0, "workers must be >= 0"),
            (min(self.scale_jitter, self.noise_mv, self.mixup) >= 0, "scale_jitter, noise_mv and mixup must be >= 0"),
            (0 <= self.lead_drop <= 1, "lead_drop must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")
        self.hospital_shift  # noqa: B018 - HospitalShift checks its strengths

    @property
    def hospital_shift(self):
        """The hospital augmentations' strengths (:class:`ecgfm.training.augment.HospitalShift`)."""
        from ecgfm.training.augment import HospitalShift

        return HospitalShift(**{f.name: getattr(self, f.name) for f in dataclasses.fields(HospitalShift)})

    @property
    def test_stride(self) -> int | None:
        """Sliding-window step at test time (half a window unless set)."""
        if self.window is None:
            return None
        return self.stride or max(self.window // 2, 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return options_from_dict(cls, data, "training")


def options_from_dict(cls: type[_Options], data: dict[str, Any], what: str) -> _Options:
    """``cls(**data)`` for an options dataclass, refusing keys it does not know (a typo must not pass silently)."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} options: {sorted(unknown)}")
    return cls(**data)
