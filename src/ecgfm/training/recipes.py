"""Named pre-training recipes, as data: architecture, training configuration and input settings in one place.

- ``default8``: the shipped ensemble and the teacher of ``anylead`` (docs/model_card_default8.md): eight networks
  reading records differently (2.5-s crops, 5-s crops, whole 10-s records; crops scored by the maximum over sliding
  windows), six ``xresnet1d50`` and two ``xresnet1d18``, trained two at a time in bf16 with channels-last
  convolutions on batches with one random gain per ECG (+-10%) and 0.02 mV white noise, logits averaged; rhythm
  statements are scored by the whole-record networks.
  ``stop_epoch`` replays where the development run's time limits stopped members, so the recipe reproduces the
  shipped weights bit for bit (26 min on 2 CPU cores; how it was chosen: docs/history.md).
- ``anylead``: the shipped default (MODEL_CARD.md), one ``xresnet1d50`` reading whole records with lead-presence
  inputs, distilled from ``default8`` (teacher logits cached) with hospital-shift augmentations and random lead
  dropping: reads 12 leads, the six limb leads, I+II, V1-V6 or lead I alone.
- ``xresnet1d50``: one such network (``ecgfm pretrain``'s default).
- ``xresnet1d101``, ``inception1d``: the PTB-XL benchmark settings of Strodthoff et al. 2020 (AdamW, one-cycle,
  lr 1e-2, weight decay 1e-2, batch 128, 2.5-s random crops, max-aggregated 1.25-s-stride windows, 50 epochs).

Candidates that were tried and not shipped live in ``experiments/recipes.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ecgfm.models.leadsets import LEAD_SETS
from ecgfm.training.config import TrainConfig
from ecgfm.training.distill import Distillation


@dataclass(frozen=True)
class Member:
    """One separately trained model of a recipe: architecture and its training configuration."""

    name: str
    model: str
    config: TrainConfig
    model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A complete pre-training recipe: one model, or several ``members`` combined into an ensemble.

    For an ensemble recipe ``model`` is ``"ensemble"`` and ``config`` holds only the shared runtime options; each
    member is trained on the same data with its own configuration, then ``ecgfm.models.ensemble.combine`` averages
    their logits (each member scoring records with its own window). ``jobs`` members train at once, each on its
    share of the CPU threads (part of a recipe because the threads a member runs with decide its float rounding, so
    a replay needs the same split). ``whole_record_group`` names a label group of the training data
    (``LabelledSet.label_groups``, e.g. ``"rhythm"``) that only the whole-record members score. ``lead_sets``
    (``(name, leads)`` pairs, ``ecgfm.models.leadsets.LEAD_SETS``) gives the model lead-presence inputs and lets it
    read any of those sets; ``distill`` trains on a teacher's soft predictions (``ecgfm.training.distill``).
    """

    name: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    config: TrainConfig = field(default_factory=TrainConfig)
    fs: float = 100.0
    min_count: int = 10
    description: str = ""
    members: tuple[Member, ...] = ()
    jobs: int = 1
    whole_record_group: str | None = None
    lead_sets: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    distill: Distillation | None = None

    def combine_options(self, data) -> dict[str, Any]:
        """Keyword arguments for ``ecgfm.models.ensemble.combine`` given the training data's label groups."""
        if self.whole_record_group is None:
            return {}
        return {"whole_record_labels": list(data.label_groups.get(self.whole_record_group, []))}

    def with_config(self, **changes: Any) -> "Recipe":
        """The recipe with training options changed (for an ensemble: in every member). A new epoch budget drops the
        members' recorded stops (they belong to the original schedules) unless ``stop_epoch`` is given too."""
        if "epochs" in changes:
            changes = {"stop_epoch": None, **changes}
        members = tuple(replace(m, config=replace(m.config, **changes)) for m in self.members)
        return replace(self, config=replace(self.config, **changes), members=members)

    def member_list(self) -> list[Member]:
        """The models to train: the members of an ensemble, or the recipe's single model."""
        return list(self.members) or [Member("model", self.model, self.config, dict(self.model_kwargs))]


#: Strodthoff et al. 2020's PTB-XL benchmark settings (2.5-s crops at 100 Hz).
STRODTHOFF = TrainConfig(epochs=50, batch_size=128, lr=1e-2, weight_decay=1e-2, schedule="onecycle", window=250,
                         aggregate="max")

#: default8's members in training order (member i trains with seed + i): name, architecture, window (samples at
#: 100 Hz; None = whole 10-s records), epochs of the schedule, and the epoch the development run stopped at.
_DEFAULT8 = (
    ("crops2.5s", "xresnet1d50", 250, 50, None),
    ("crops5s", "xresnet1d50", 500, 40, 34),
    ("whole10s", "xresnet1d50", None, 30, 29),
    ("crops5s-b", "xresnet1d50", 500, 40, 37),
    ("crops2.5s-b", "xresnet1d50", 250, 50, 36),
    ("whole10s-b", "xresnet1d50", None, 30, 28),
    ("x18-crops5s", "xresnet1d18", 500, 40, 38),
    ("x18-whole10s", "xresnet1d18", None, 30, 29),
)


def _default8_member(name: str, model: str, window: int | None, epochs: int, stop: int | None) -> Member:
    config = replace(STRODTHOFF, window=window, epochs=epochs, stop_epoch=stop, batch_size=128 if window else 64,
                     scale_jitter=0.1, noise_mv=0.02, amp=True, channels_last=True)
    return Member(name, model, config)


#: The any-lead recipe's training: whole 10-s records (one pass per record at prediction), bf16 channels-last, the
#: hospital augmentations (ecgfm.training.augment.HospitalShift) and lead dropping, 40 epochs (a 120-epoch run
#: stopped by its time limit at epoch 99 scored no better on fold 9); chosen on fold 9 (docs/history.md).
ANYLEAD = replace(STRODTHOFF, epochs=40, batch_size=64, window=None, amp=True, channels_last=True,
                     scale_jitter=0.1, noise_mv=0.02, lead_gain=0.05, device_filter=0.5, recording_rate=0.2,
                     baseline_mv=0.5, powerline_mv=0.1, emg_mv=0.05, lead_mix=0.3, lead_drop=0.5)

RECIPES: dict[str, Recipe] = {
    "default8": Recipe(
        name="default8", model="ensemble", config=STRODTHOFF, members=tuple(_default8_member(*m) for m in _DEFAULT8),
        jobs=2, whole_record_group="rhythm",
        description="the shipped ensemble, anylead's teacher (docs/model_card_default8.md): six xresnet1d50 "
                    "and two xresnet1d18 networks on 2.5-s crops, 5-s crops and whole records, trained two at a time "
                    "on one CPU thread each; rhythm statements scored by the whole-record networks; 26.2 min on 2 "
                    "CPU cores"),
    "anylead": Recipe(
        name="anylead", model="xresnet1d50", config=ANYLEAD, lead_sets=LEAD_SETS,
        distill=Distillation(teacher="default8", alpha=0.5, temperature=1.0),
        description="the shipped default (MODEL_CARD.md): one xresnet1d50 on whole records distilled from "
                    "default8, with hospital augmentations and lead dropping; reads 12 leads, the six limb leads, "
                    "I+II, V1-V6 or lead I; about 6 min on 2 CPU cores once the teacher's logits are cached"),
    "xresnet1d50": Recipe(name="xresnet1d50", model="xresnet1d50", config=STRODTHOFF,
                          description="one xresnet1d50, 100 Hz, 2.5-s crops, 50 epochs (ecgfm pretrain's default)"),
    "xresnet1d101": Recipe(name="xresnet1d101", model="xresnet1d101", config=STRODTHOFF,
                           description="Strodthoff et al. 2020 benchmark settings"),
    "inception1d": Recipe(name="inception1d", model="inception1d", config=STRODTHOFF,
                          description="Strodthoff et al. 2020 benchmark settings"),
}


def custom_recipe(arch: str, model_kwargs: dict[str, Any] | None = None, **config: Any) -> Recipe:
    """A one-network recipe: architecture ``arch`` with the Strodthoff settings changed by ``config``."""
    return Recipe(name=arch, model=arch, model_kwargs=dict(model_kwargs or {}), config=replace(STRODTHOFF, **config),
                  description=f"one {arch} with custom settings")


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
