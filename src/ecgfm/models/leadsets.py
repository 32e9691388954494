"""The lead sets a model reads, and reading a record or a batch as one of them.

A model trained with lead-presence channels (``ModelInfo.lead_mask``; the preprocessing step
:class:`ecgfm.signal.pipeline.LeadSetMask`) reads any of its lead sets: the leads of the set in their usual places,
every other lead zero, and one presence channel per lead saying which leads carry signal, so that a missing lead is
never read as a flat one. A record is read as the largest set its leads cover (:func:`lead_set_for`); limb leads
derivable from I and II count as present, so ``I+II`` gives the network the same six limb leads as ``limb6``
(differences are only the rounding of the recorded III, aVR, aVL, aVF against the derived ones).
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

from ecgfm.leads import STANDARD_LEADS
from ecgfm.signal.leads import LeadSetChoice, choose_lead_set, limb_leads_from_i_ii

LIMB_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF")
PRECORDIAL_LEADS: tuple[str, ...] = ("V1", "V2", "V3", "V4", "V5", "V6")

#: The lead sets the foundation recipe supports, largest first: the standard 12 leads; the six limb leads; I and II
#: (the six limb leads derived from them, as a two-electrode-pair device records); V1-V6 (chest leads only); lead I
#: alone (a single-lead wearable, right arm - left arm).
LEAD_SETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("12-lead", STANDARD_LEADS),
    ("limb6", LIMB_LEADS),
    ("I+II", ("I", "II")),
    ("V1-V6", PRECORDIAL_LEADS),
    ("I", ("I",)),
)

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def model_lead_sets(info) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ``(name, leads)`` sets a model reads: its preprocessing's lead sets, or one set of all its leads."""
    for step in (info.preprocess or {}).get("steps", ()):
        if step.get("name") == "lead_set_mask":
            return tuple((str(name), tuple(leads)) for name, leads in step.get("sets") or [("all", step["leads"])])
    return (("all", tuple(info.leads)),)


def lead_set_for(ecg_leads: Sequence[str], info, source: str | None = None) -> LeadSetChoice:
    """Which of the model's lead sets a record with ``ecg_leads`` is read as: ``.name``, the recorded leads
    ``.used``, the limb leads ``.derived`` from I and II, and the recorded leads ``.ignored``.

    Raises :class:`ecgfm.errors.ECGValueError` naming the record's leads (and ``source``, e.g. its file) when it
    covers none of the sets.
    """
    return choose_lead_set(ecg_leads, model_lead_sets(info), source)


def read_as(x: Array, lead_set: str, leads: Sequence[str] = STANDARD_LEADS,
            sets: Sequence[tuple[str, Sequence[str]]] = LEAD_SETS) -> Array:
    """Preprocessed full-lead model inputs ``(..., 2 * len(leads), samples)`` (leads, then presence channels) as
    the model reads a record holding only the leads of ``lead_set``: other leads and their presence channels zero,
    limb leads derived from I and II where the set derives them (:func:`lead_set_for`'s rule).

    Deriving after preprocessing equals deriving before it (resampling and filtering are linear), up to rounding.
    Used to score reduced lead sets on full recordings and to drop leads in training.
    """
    named = dict(sets)
    if lead_set not in named:
        raise ValueError(f"unknown lead set {lead_set!r}; known: {', '.join(named)}")
    leads = list(leads)
    if x.shape[-2] != 2 * len(leads):
        raise ValueError(f"expected {2 * len(leads)} channels (leads and presence), got {x.shape[-2]}")
    choice = choose_lead_set(named[lead_set], sets)
    out = x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
    if choice.derived:
        derived = limb_leads_from_i_ii(x[..., leads.index("I"), :], x[..., leads.index("II"), :])
        for lead in choice.derived:
            out[..., leads.index(lead), :] = derived[lead]
    absent = [i for i, lead in enumerate(leads) if lead not in choice.present]
    out[..., absent, :] = 0
    out[..., [len(leads) + i for i in absent], :] = 0
    return out
