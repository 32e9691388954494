"""Canonical lead names and the mapping from vendor spellings. The one place lead names are defined."""
from __future__ import annotations

import re

#: Standard 12-lead order used throughout ecgfm (and by PTB-XL).
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
#: Limb leads that can be derived from I and II (Einthoven / Goldberger).
DERIVED_LIMB_LEADS: tuple[str, ...] = ("III", "aVR", "aVL", "aVF")
#: The 8 independent leads most vendors store (GE MUSE, Welch Allyn SCP).
INDEPENDENT_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")

# Extra leads some systems record (pediatric right-sided, posterior, Frank XYZ). Kept canonical but non-standard.
_EXTRA_LEADS = ("V3R", "V4R", "V5R", "V7", "V8", "V9", "X", "Y", "Z")
_CANONICAL_BY_KEY = {lead.upper(): lead for lead in STANDARD_LEADS + _EXTRA_LEADS}
# Vendor spellings beyond case/whitespace differences.
_ALIASES = {
    "LEAD I": "I", "LEAD II": "II", "LEAD III": "III", "D1": "I", "D2": "II", "D3": "III",
    "DI": "I", "DII": "II", "DIII": "III", "AVR": "aVR", "AVL": "aVL", "AVF": "aVF",
    "1": "I", "2": "II", "3": "III",
}


def canonical_lead_name(name: str) -> str:
    """Map a vendor lead label (``"AVR"``, ``"avr"``, ``"V1 "``, ``"MDC_ECG_LEAD_AVR"``, ``"Lead II"``) to its canonical name.

    Raises ``ValueError`` for labels that are not a known ECG lead.
    """
    key = re.sub(r"\s+", " ", str(name).strip()).upper()
    key = re.sub(r"^(MDC_ECG_LEAD_|LEAD_|LEAD |ECG_|ECG )", "", key).replace(" ", "")
    if key in _ALIASES:
        return _ALIASES[key]
    if key in _CANONICAL_BY_KEY:
        return _CANONICAL_BY_KEY[key]
    raise ValueError(f"unknown ECG lead name {name!r}; expected one of {', '.join(STANDARD_LEADS)}")


def canonical_lead_names(names) -> tuple[str, ...]:
    """Canonicalise a sequence of lead labels (see :func:`canonical_lead_name`)."""
    return tuple(canonical_lead_name(n) for n in names)
