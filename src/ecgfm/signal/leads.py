"""Lead-set operations on ECGs: derive the limb leads from I and II, and reorder to a target lead set."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGValueError
from ecgfm.leads import STANDARD_LEADS, canonical_lead_names


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
