"""SNOMED-CT <-> SCP-ECG statement mapping (PhysioNet Challenge 2020/21 Dx codes <-> PTB-XL statements).

The table lives in ``labels/data/snomed_scp.csv`` (source and relation semantics in its header). Each row relates one
SNOMED-CT code to one SCP statement as ``equivalent``, ``scp_narrower`` (the SCP statement is a special case, e.g. IMI of
myocardial infarction) or ``scp_broader`` (the SNOMED concept is a special case, e.g. ventricular bigeminy of BIGU).
A lookup only follows relations that stay true in its direction, so a record is never given a more specific label than
its source states.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

import pandas as pd

RELATIONS = ("equivalent", "scp_narrower", "scp_broader")
_COLUMNS = ["snomed_code", "snomed_term", "scp_code", "relation", "note"]


@lru_cache(maxsize=1)
def mapping_table() -> pd.DataFrame:
    """The mapping as a DataFrame (columns ``snomed_code, snomed_term, scp_code, relation, note``; codes as strings)."""
    text = resources.files("ecgfm.labels").joinpath("data/snomed_scp.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")))
    table = pd.DataFrame(rows, columns=_COLUMNS).fillna("")
    bad = set(table["relation"]) - set(RELATIONS)
    if bad:  # a typo in the data file must not silently drop rows
        raise ValueError(f"snomed_scp.csv has unknown relations {sorted(bad)}")
    return table


@lru_cache(maxsize=1)
def _lookups() -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, str]]:
    to_scp: dict[str, list[str]] = {}
    to_snomed: dict[str, list[str]] = {}
    terms: dict[str, str] = {}
    table = mapping_table()
    ordered = table.assign(_rank=table["relation"] != "equivalent").sort_values("_rank", kind="stable")
    for row in ordered.itertuples(index=False):
        terms.setdefault(row.snomed_code, row.snomed_term)
        if row.relation in ("equivalent", "scp_broader") and row.scp_code not in to_scp.get(row.snomed_code, []):
            to_scp.setdefault(row.snomed_code, []).append(row.scp_code)
        if row.relation in ("equivalent", "scp_narrower") and row.snomed_code not in to_snomed.get(row.scp_code, []):
            to_snomed.setdefault(row.scp_code, []).append(row.snomed_code)
    return to_scp, to_snomed, terms


def _normalise_snomed(code: str | int) -> str:
    text = str(code).strip()
    return text[:-2] if text.endswith(".0") else text  # codes read from a float column, e.g. 164889003.0


def snomed_to_scp(code: str | int) -> list[str]:
    """SCP-ECG statements implied by a SNOMED-CT code (``[]`` when PTB-XL has no such statement)."""
    return list(_lookups()[0].get(_normalise_snomed(code), []))


def scp_to_snomed(code: str) -> list[str]:
    """SNOMED-CT codes implied by an SCP-ECG statement, the equivalent code(s) first (``[]`` when none)."""
    return list(_lookups()[1].get(str(code).strip(), []))


def snomed_term(code: str | int) -> str | None:
    """The Challenge's plain-language term for a SNOMED-CT code in the table (``None`` if absent)."""
    return _lookups()[2].get(_normalise_snomed(code))


__all__ = ["snomed_to_scp", "scp_to_snomed", "snomed_term", "mapping_table", "RELATIONS"]
