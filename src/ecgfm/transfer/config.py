"""What defines a fine-tuning run (:class:`FinetuneConfig`) and a comparison (:class:`CompareConfig`).

``FinetuneConfig`` composes a :class:`~ecgfm.training.TrainConfig` (``train``: the epoch budget, optimiser, early
stopping, augmentation and runtime options every training stage shares) with what only transfer has (strategy, new
head, discriminative rates, class balance, validation). The training defaults depend on the strategy
(:data:`STRATEGY_TRAINING`); ``train=None`` takes them, and :meth:`FinetuneConfig.for_strategy` changes any field of
either by name. Each stage trains with ``dataclasses.replace(config.train, ...)`` (see :mod:`ecgfm.transfer.stages`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from ecgfm.training import TrainConfig
from ecgfm.training.config import options_from_dict
from ecgfm.transfer.probe import DEFAULT_CS
from ecgfm.transfer.splits import ALL, parse_sizes

STRATEGIES = ("full", "linear", "gradual", "scratch")
NEW_HEADS = ("probe", "fc", "head")
BALANCE_MODES = ("pos_weight", "oversample", "none")
#: The from-scratch arm's recipe: the pre-training one (one-cycle at lr 1e-2, 30 % warm-up, Strodthoff et al. 2020).
SCRATCH_RECIPE = {"lr": 1e-2, "schedule": "onecycle", "warmup_frac": 0.3}
#: Training defaults per strategy. Peak head rate: the pre-training recipe uses 1e-2; fine-tuning the whole network at
#: that rate erases much of what was pretrained once a few dozen examples pull on it, so full and gradual fine-tuning
#: use a tenth of it (and a further tenth in the body, see ``body_lr_scale``), with a cosine schedule.
STRATEGY_TRAINING = {
    "full": {"lr": 1e-3, "schedule": "cosine", "warmup_frac": 0.1},
    "gradual": {"lr": 1e-3, "schedule": "cosine", "warmup_frac": 0.1},
    "linear": {"lr": 1e-2, "schedule": "cosine", "warmup_frac": 0.1},
    "scratch": SCRATCH_RECIPE,
}
#: Budget and runtime shared by every strategy: 30 epochs with early stopping after 8 without improvement, batch 32.
FINETUNE_TRAINING = {"epochs": 30, "patience": 8, "batch_size": 32, "progress": False, "tensorboard": False}
#: Learning rate of the frozen-body head warm-up (a fresh head needs the pre-training rate to move quickly).
WARMUP_LR = 1e-2
#: TrainConfig fields that do not change a result (hardware and display): left out of comparison cell keys.
RUNTIME_FIELDS = ("device", "num_threads", "eval_batch_size", "progress", "tensorboard", "workers")


def strategy_training(strategy: str) -> TrainConfig:
    """The training options a strategy starts from (:data:`FINETUNE_TRAINING` and :data:`STRATEGY_TRAINING`)."""
    return TrainConfig(**FINETUNE_TRAINING, **STRATEGY_TRAINING[strategy])


@dataclass
class FinetuneConfig:
    """How to adapt a foundation to new labels (see :mod:`ecgfm.transfer.finetune` for the strategies).

    ``train`` holds the options shared with pre-training (``epochs`` is the whole budget, stages included; ``lr`` the
    head's peak rate; ``patience``, ``mixup``, ``seed``, ``device``...); ``None`` takes the strategy's defaults.
    Its ``window``, ``stride``, ``aggregate`` and ``class_weights`` are set per stage from the model and ``balance``.
    """

    strategy: str = "full"
    train: TrainConfig | None = None
    body_lr_scale: float = 0.1  # body learning rate relative to the head's (discriminative rates; full/gradual)
    layer_lr_decay: float = 0.5  # further factor per body group towards the input
    body_groups: int = 4  # contiguous groups the backbone is split into for decay and gradual unfreezing
    warmup_epochs: int = 3  # frozen-body epochs fitting only the new head before unfreezing (new_head fc/head)
    unfreeze_epochs: int = 1  # epochs per newly unfrozen group (gradual)
    freeze_bn: bool = True  # keep the pretrained BatchNorm statistics of the body while fine-tuning
    aggregate: str | None = None  # combine window logits by "max" or "mean"; None = "mean" with the probe head, else
    # as the foundation does
    new_head: str = "probe"  # "probe" (linear on the pooled embedding, initialised by a fitted logistic regression;
    # replaces the SGD warm-up), "fc" (a fresh final layer after the foundation's pretrained hidden layer, which joins
    # the body; SGD warm-up) or "head" (the foundation's whole head re-learnt at the head rate)
    select_warmup: bool = True  # keep the head-only model if fine-tuning the body does not beat it on validation
    min_val_positives: int = 5  # with the probe head: fewer validation positives (any label) than this and the body
    # is not fine-tuned at all; the probe is kept (refitted on every training record when validation was an inner split)
    balance: str = "pos_weight"  # "pos_weight" (loss weight neg/pos per label) | "oversample" | "none"
    min_epoch_samples: int = 512  # repeat tiny training sets so an epoch shows at least this many crops
    threshold_rule: str = "youden"
    whole_body: bool = True  # also train the whole network at the pre-training recipe (see whole_body_config) and
    # keep whichever of the two validates better: the light LP-FT body barely moves, which loses to training from
    # scratch on statements whose evidence is a brief event within the strip
    val_fraction: float = 0.2  # inner validation share when no validation set is given (and cv_folds is None)
    cv_folds: int | None = None  # K-fold CV on the training data instead of an inner split (final model refit on all)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"FinetuneConfig: strategy must be one of {', '.join(STRATEGIES)}")
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(self.train)
        self.train = self.train or strategy_training(self.strategy)
        checks = [
            (self.balance in BALANCE_MODES, f"balance must be one of {', '.join(BALANCE_MODES)}"),
            (self.new_head in NEW_HEADS, f"new_head must be one of {', '.join(NEW_HEADS)}"),
            (self.aggregate in (None, "max", "mean"), "aggregate must be None, 'max' or 'mean'"),
            (self.body_lr_scale > 0 and self.layer_lr_decay > 0, "body_lr_scale and layer_lr_decay must be > 0"),
            (self.body_groups >= 1, "body_groups must be >= 1"),
            (self.warmup_epochs >= 0 and self.unfreeze_epochs >= 1, "warmup_epochs >= 0, unfreeze_epochs >= 1"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (self.cv_folds is None or self.cv_folds >= 2, "cv_folds must be >= 2"),
            (self.min_epoch_samples >= 0, "min_epoch_samples must be >= 0"),
            (self.min_val_positives >= 0, "min_val_positives must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"FinetuneConfig: {message}")

    @classmethod
    def for_strategy(cls, strategy: str = "full", **changes: Any) -> "FinetuneConfig":
        """The strategy's defaults with ``changes`` to fields of this class or of its ``train`` options, by name
        (``for_strategy("full", epochs=12, new_head="fc")``; ``aggregate`` is this class's)."""
        own = {f.name for f in dataclasses.fields(cls)}
        trained = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(changes) - own - trained)
        if unknown:
            raise ValueError(f"unknown fine-tuning options: {unknown}")
        train = dataclasses.replace(strategy_training(strategy), **{k: v for k, v in changes.items() if k not in own})
        return cls(strategy=strategy, train=train, **{k: v for k, v in changes.items() if k in own})

    @property
    def uses_probe(self) -> bool:
        """Whether the new head is a fitted linear probe (every strategy except scratch, with ``new_head="probe"``)."""
        return self.new_head == "probe" and self.strategy != "scratch"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        return options_from_dict(cls, data, "fine-tuning")


def whole_body_config(config: FinetuneConfig) -> FinetuneConfig:
    """The whole-body candidate of a fine-tuning run: the foundation's own head re-learnt and every layer trained at
    the pre-training recipe (:data:`SCRATCH_RECIPE`, no discriminative rates, BatchNorm statistics re-estimated), its
    windows combined as the foundation combines them (the maximum keeps a brief event); the same budget and data
    handling. It is training from scratch started from the pretrained weights."""
    return dataclasses.replace(config, new_head="head", body_lr_scale=1.0, layer_lr_decay=1.0, freeze_bn=False,
                               aggregate=None, select_warmup=False, whole_body=False,
                               train=dataclasses.replace(config.train, **SCRATCH_RECIPE))


# --------------------------------------------------------------------------------------------------- comparisons

ARMS = ("finetune", "scratch", "embeddings")


def scratch_config(finetune: FinetuneConfig) -> FinetuneConfig:
    """The from-scratch arm: the fine-tuning arm's training budget, data handling and runtime, the pre-training
    recipe (:data:`SCRATCH_RECIPE`)."""
    return FinetuneConfig(strategy="scratch", train=dataclasses.replace(finetune.train, **SCRATCH_RECIPE),
                          balance=finetune.balance, min_epoch_samples=finetune.min_epoch_samples,
                          threshold_rule=finetune.threshold_rule)


@dataclass
class CompareConfig:
    """Everything that defines a comparison (saved in ``compare.json``; see :mod:`ecgfm.transfer.compare`)."""

    labels: list[str]
    sizes: list[int | str] = field(default_factory=lambda: [10, 25, 50, 100, ALL])
    neg_ratio: float | None = 9.0  # negative patients drawn per positive patient (None = every negative)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    split: str = "fixed"  # "fixed" held-out test split | "cv" repeated patient-level K-fold, pooled out-of-fold
    cv_folds: int = 5
    val_fraction: float = 0.2  # inner validation share of every training set (early stopping, thresholds)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    scratch: FinetuneConfig | None = None  # None = scratch_config(finetune)
    probe_inner_folds: int = 5
    n_bootstrap: int = 1000
    ci_level: float = 0.95
    allow_seen_labels: bool = False  # refuse labels the foundation was trained on unless set

    def __post_init__(self) -> None:
        self.labels = [str(label) for label in self.labels]
        if not self.labels:
            raise ValueError("CompareConfig: name at least one label")
        self.sizes = parse_sizes(self.sizes)
        self.seeds = [int(s) for s in self.seeds]
        if set(self.arms) - set(ARMS) or not self.arms:
            raise ValueError(f"CompareConfig: arms must be among {', '.join(ARMS)}, got {self.arms}")
        if self.split not in ("fixed", "cv"):
            raise ValueError(f"CompareConfig: split must be 'fixed' or 'cv', got {self.split!r}")
        if self.split == "cv" and self.cv_folds < 2:
            raise ValueError("CompareConfig: cv_folds must be >= 2")
        if isinstance(self.finetune, dict):
            self.finetune = FinetuneConfig.from_dict(self.finetune)
        if isinstance(self.scratch, dict):
            self.scratch = FinetuneConfig.from_dict(self.scratch)
        self.scratch = self.scratch or scratch_config(self.finetune)
        if self.finetune.strategy == "scratch":
            raise ValueError("CompareConfig: the fine-tuning arm cannot use strategy 'scratch'")

    def arm_config(self, arm: str, seed: int) -> FinetuneConfig:
        """A trained arm's fine-tuning config for one seed (validation is the comparison's own inner split)."""
        base = self.finetune if arm == "finetune" else self.scratch
        return dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed), val_fraction=0.0,
                                   cv_folds=None)

    def arm_settings(self, arm: str) -> dict[str, Any]:
        """What an arm's cells depend on: its whole recipe and budget, without the runtime options."""
        if arm == "embeddings":
            return {"probe_inner_folds": self.probe_inner_folds, "Cs": list(DEFAULT_CS)}
        data = self.arm_config(arm, 0).to_dict()
        data["train"] = {k: v for k, v in data["train"].items() if k not in RUNTIME_FIELDS}
        return data

    def arm_key(self, arm: str) -> str:
        """The arm's name plus a hash of its settings: another recipe gets its own cells, the same one reuses them."""
        text = json.dumps(self.arm_settings(arm), sort_keys=True)
        return f"{arm}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def result_settings(self) -> dict[str, Any]:
        """The design every cell of an output folder shares (the splits); labels, sizes, seeds, arms and reporting
        may change on resume, and each arm's recipe is part of its cells' names (see :meth:`arm_key`)."""
        return {"split": self.split, "cv_folds": self.cv_folds if self.split == "cv" else None,
                "neg_ratio": self.neg_ratio, "val_fraction": self.val_fraction}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompareConfig":
        return options_from_dict(cls, data, "comparison")


#: The ``--quick`` preset.
QUICK_OVERRIDES = {"sizes": [10, 25], "seeds": [0], "epochs": 12, "patience": 4, "n_bootstrap": 500}


def quick_config(labels: Sequence[str], **overrides: Any) -> CompareConfig:
    """The ``--quick`` preset: two sizes, one seed, a short epoch budget (minutes on a laptop CPU)."""
    finetune = FinetuneConfig.for_strategy("full", epochs=QUICK_OVERRIDES["epochs"],
                                           patience=QUICK_OVERRIDES["patience"], warmup_epochs=2)
    settings = {"sizes": QUICK_OVERRIDES["sizes"], "seeds": QUICK_OVERRIDES["seeds"], "finetune": finetune,
                "n_bootstrap": QUICK_OVERRIDES["n_bootstrap"], **overrides}
    return CompareConfig(labels=list(labels), **settings)
