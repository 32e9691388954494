"""SNOMED-CT <-> SCP-ECG mapping (placeholder until the mapping data file lands)."""
from __future__ import annotations


def snomed_to_scp(code: str) -> list[str]:
    return []
