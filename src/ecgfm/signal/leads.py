"""Lead-set operations on ECGs: derive the limb leads from I and II, reorder to a target lead set, and choose which of
a model's lead sets a record covers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGValueError
from ecgfm.leads import DERIVED_LIMB_LEADS, STANDARD_LEADS, canonical_lead_names


def limb_leads_from_i_ii(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    """III, aVR, aVL, aVF from I and II: Einthoven (III = II - I) and Goldberger's augmented leads."""
    return {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }


def derive_limb_leads(ecg: ECG) -> ECG:
    """Add whichever of III, aVR, aVL, aVF are missing, computed from I and II (both must be present)."""
    missing = [lead for lead in ("III", "aVR", "aVL", "aVF") if lead not in ecg.leads]
    if not missing:
        return ecg
    if "I" not in ecg.leads or "II" not in ecg.leads:
        raise ECGValueError(f"cannot derive {missing}: leads I and II are needed, have {list(ecg.leads)}")
    derived = limb_leads_from_i_ii(ecg.lead("I").astype(np.float64), ecg.lead("II").astype(np.float64))
    rows = [derived[lead] for lead in missing]
    return ecg.replace(signal=np.vstack([ecg.signal, *rows]), leads=ecg.leads + tuple(missing))


def reorder_leads(ecg: ECG, leads: Sequence[str] = STANDARD_LEADS, derive: bool = True,
                  missing: str = "error") -> ECG:
    """Return the ECG with exactly ``leads`` in that order.

    Missing limb leads are derived from I and II when ``derive``; other missing leads raise (``missing="error"``) or are
    filled with zeros (``missing="zero"``, recorded in ``meta["zero_filled_leads"]``).
    """
    target = canonical_lead_names(leads)
    if derive:
        try:
            ecg = derive_limb_leads(ecg)
        except ECGValueError:
            pass  # reported below as missing leads
    absent = [lead for lead in target if lead not in ecg.leads]
    if absent and missing != "zero":
        raise ECGValueError(f"ECG lacks leads {absent} (has {list(ecg.leads)})"
                            + (f" in {ecg.meta['source']}" if ecg.meta.get("source") else ""))
    index = {lead: i for i, lead in enumerate(ecg.leads)}
    rows = [ecg.signal[index[lead]] if lead in index else np.zeros(ecg.n_samples, np.float32) for lead in target]
    meta = {"zero_filled_leads": absent} if absent else {}
    return ecg.replace(signal=np.vstack(rows), leads=target, **meta)


@dataclass(frozen=True)
class LeadSetChoice:
    """Which of a model's lead sets a record is read as: the set's ``name``, the recorded leads ``used``, the limb
    leads ``derived`` from I and II, the recorded leads ``ignored`` (outside the set), and ``present``: the
    leads of the model input that carry signal (used + derived; every other input lead is zero)."""

    name: str
    used: tuple[str, ...]
    derived: tuple[str, ...]
    ignored: tuple[str, ...]

    @property
    def present(self) -> tuple[str, ...]:
        return self.used + self.derived


def choose_lead_set(recorded: Sequence[str], sets: Sequence[tuple[str, Sequence[str]]],
                    source: str | None = None) -> LeadSetChoice:
    """The largest lead set of ``sets`` (``(name, leads)`` pairs) that a record with leads ``recorded`` covers.

    A set is covered when each of its leads is recorded or, for III, aVR, aVL and aVF, derivable from recorded I and
    II (as :func:`reorder_leads` derives them); a set holding I and II reads the four derived limb leads as well.
    Largest means the most input leads, then the fewest derived ones, then the fewest named leads (``I+II`` names
    a record with only I and II better than ``limb6``), then the order of ``sets``. Raises :class:`ECGValueError`
    naming the record's leads (and ``source``) when no set is covered.
    """
    have = tuple(dict.fromkeys(canonical_lead_names(recorded)))
    can_derive = "I" in have and "II" in have
    candidates = []
    for order, (name, leads) in enumerate(sets):
        leads = canonical_lead_names(leads)
        reads_limbs = "I" in leads and "II" in leads
        inputs = leads + tuple(d for d in DERIVED_LIMB_LEADS if reads_limbs and d not in leads)
        if not all(lead in have or (lead in DERIVED_LIMB_LEADS and can_derive) for lead in inputs):
            continue
        used = tuple(lead for lead in leads if lead in have)  # I+II derives III... even when they were recorded
        derived = tuple(lead for lead in inputs if lead not in used)
        candidates.append(((-len(inputs), len(derived), len(leads), order), LeadSetChoice(
            name, used, derived, tuple(lead for lead in have if lead not in used))))
    if not candidates:
        where = f" in {source}" if source else ""
        names = "; ".join(f"{name}: {', '.join(leads)}" for name, leads in sets)
        raise ECGValueError(f"the record{where} has leads {list(have)}, which cover none of the model's lead sets "
                            f"({names}; III, aVR, aVL and aVF can be derived from I and II)")
    return min(candidates, key=lambda c: c[0])[1]
