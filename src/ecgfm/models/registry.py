"""Model registry in the style of timm: ``create(name, num_labels)``, ``list_models()``, ``@register_model``.

A registered factory takes ``num_labels`` and ``in_leads`` plus architecture keyword arguments and returns an
:class:`~ecgfm.models.base.ECGClassifier`. :func:`create` records the name and the keyword arguments on the model
(``model.arch_name``, ``model.arch_kwargs``) so checkpoints can rebuild it without guessing.
"""
from __future__ import annotations

import fnmatch
import json
from typing import Any, Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Decorator adding a model factory to the registry under its function name (or ``name``)."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or factory.__name__
        if key in _MODELS and _MODELS[key] is not factory:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = factory
        return factory

    return decorate(fn) if fn is not None else decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` filters with shell wildcards (``"xresnet*"``)."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered architecture."""
    return name in _MODELS


def create(name: str, num_labels: int, in_leads: int = 12, **kwargs: Any) -> nn.Module:
    """Build a registered architecture with a fresh ``num_labels``-way multi-label head.

    Example: ``model = ecgfm.models.create("resnet1d", num_labels=71)``; ``model(x)`` maps a float32 batch
    ``(B, in_leads, T)`` (millivolts, any T above the receptive field) to logits ``(B, num_labels)``.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if int(num_labels) < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    if int(in_leads) < 1:
        raise ValueError(f"in_leads must be >= 1, got {in_leads}")
    try:  # the kwargs go into config.json of every checkpoint: normalise to their JSON form (tuples -> lists)
        kwargs = json.loads(json.dumps(kwargs))
    except TypeError as exc:
        raise ValueError(f"model keyword arguments must be JSON-serialisable: {exc}") from None
    model = _MODELS[name](num_labels=int(num_labels), in_leads=int(in_leads), **kwargs)
    model.arch_name = name
    model.arch_kwargs = kwargs
    return model


def describe(name: str) -> str:
    """The first line of a registered architecture's docstring."""
    return (_MODELS[name].__doc__ or "").strip().splitlines()[0] if name in _MODELS else ""
