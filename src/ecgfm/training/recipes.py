"""Named pre-training recipes: architecture + training configuration + input settings, in one place.

``default`` is ecgfm's CPU recipe (what ``ecgfm pretrain`` uses unless told otherwise); ``xresnet1d101`` and
``inception1d`` reproduce the PTB-XL benchmark settings of Strodthoff et al. 2020 (AdamW, one-cycle, lr 1e-2,
weight decay 1e-2, batch 128, 2.5-s random crops, max-aggregated 1.25-s-stride windows, 50 epochs).
``benchmarks/pretrain.py`` runs them under one time budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ecgfm.training.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A complete pre-training recipe."""

    name: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    config: TrainConfig = field(default_factory=TrainConfig)
    fs: float = 100.0
    min_count: int = 10
    description: str = ""

    def with_config(self, **changes: Any) -> "Recipe":
        return replace(self, config=replace(self.config, **changes))


_STRODTHOFF = TrainConfig(epochs=50, batch_size=128, lr=1e-2, weight_decay=1e-2, schedule="onecycle", window=250,
                          aggregate="max")

RECIPES: dict[str, Recipe] = {
    "default": Recipe(
        name="default", model="xresnet1d50", config=_STRODTHOFF,
        description="the shipped foundation model's recipe (MODEL_CARD.md): xresnet1d50, 100 Hz, 50 epochs",
    ),
    "xresnet1d101": Recipe(
        name="xresnet1d101", model="xresnet1d101", config=_STRODTHOFF,
        description="Strodthoff et al. 2020 benchmark settings",
    ),
    "inception1d": Recipe(
        name="inception1d", model="inception1d", config=_STRODTHOFF,
        description="Strodthoff et al. 2020 benchmark settings",
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
