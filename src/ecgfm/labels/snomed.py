"""SNOMED-CT <-> SCP-ECG statement mapping (PhysioNet Challenge 2020/21 Dx codes <-> PTB-XL statements).

The table lives in ``labels/data/snomed_scp.csv`` (source and relation semantics in its header). Each row relates one
SNOMED-CT code to one SCP statement as ``equivalent``, ``scp_narrower`` (the SCP statement is a special case, e.g. IMI of
myocardial infarction) or ``scp_broader`` (the SNOMED concept is a special case, e.g. ventricular bigeminy of BIGU);
``none`` rows record the Challenge-scored classes no SCP statement expresses (:func:`unmapped_scored_classes`).
A lookup only follows relations that stay true in its direction, so a record is never given a more specific label than
its source states.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources
from typing import Iterable

import pandas as pd

RELATIONS = ("equivalent", "scp_narrower", "scp_broader", "none")
_COLUMNS = ["snomed_code", "snomed_term", "scp_code", "relation", "note"]
CHALLENGE_YEARS = (2020, 2021)


def _data_table(name: str, columns: list[str]) -> pd.DataFrame:
    """A CSV shipped in ``labels/data`` (``#`` lines are its provenance header), every column as text."""
    text = resources.files("ecgfm.labels").joinpath(f"data/{name}").read_text(encoding="utf-8")
    rows = list(csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")))
    return pd.DataFrame(rows, columns=columns).fillna("")


@lru_cache(maxsize=1)
def mapping_table() -> pd.DataFrame:
    """The mapping as a DataFrame (columns ``snomed_code, snomed_term, scp_code, relation, note``; codes as strings)."""
    table = _data_table("snomed_scp.csv", _COLUMNS)
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
    """The Challenge's plain-language term for a SNOMED-CT code (any Challenge 2020/21 diagnosis; ``None`` if unknown)."""
    code = _normalise_snomed(code)
    return _lookups()[2].get(code) or _challenge_terms().get(code)


@lru_cache(maxsize=1)
def challenge_classes() -> pd.DataFrame:
    """Every Challenge 2020/21 diagnosis: ``snomed_code, abbreviation, snomed_term, scored`` (``"2020 2021"``,
    ``"2021"`` or ``""``), from the Challenges' ``dx_mapping_*.csv`` (provenance in ``labels/data/challenge_dx.csv``)."""
    return _data_table("challenge_dx.csv", ["snomed_code", "abbreviation", "snomed_term", "scored"])


@lru_cache(maxsize=1)
def _challenge_terms() -> dict[str, str]:
    table = challenge_classes()
    return dict(zip(table["snomed_code"], table["snomed_term"]))


def scored_classes(year: int = 2020) -> list[str]:
    """The SNOMED-CT codes the PhysioNet Challenge of ``year`` (2020: 27 classes, 2021: 30) scored."""
    if year not in CHALLENGE_YEARS:
        raise ValueError(f"no Challenge scoring table for {year}; known years: {CHALLENGE_YEARS}")
    table = challenge_classes()
    return [code for code, scored in zip(table["snomed_code"], table["scored"]) if str(year) in scored.split()]


def unmapped_scored_classes(year: int = 2020) -> dict[str, str]:
    """The scored Challenge classes no SCP-ECG statement expresses (code -> term), e.g. axis deviations.

    2020: bradycardia (any origin), left and right axis deviation; 2021 adds bundle branch block (unspecified) and
    poor R-wave progression.
    """
    return {code: snomed_term(code) or "" for code in scored_classes(year) if not snomed_to_scp(code)}


def map_snomed_labels(codes: Iterable[str | int], vocabulary: Iterable[str]) -> tuple[list[str], list[str]]:
    """A record's SNOMED-CT codes as labels of a model ``vocabulary``, and the codes that map to none of them.

    A code is kept as it is when the vocabulary holds SNOMED codes itself; otherwise it maps to the SCP-ECG
    statements it implies (:func:`snomed_to_scp`) that the vocabulary holds. Labels come in vocabulary order, each
    once; unmapped codes in input order, each once. Example::

        map_snomed_labels(["164889003", "39732003"], ["AFIB", "SR", "LVH"])  # (["AFIB"], ["39732003"])
    """
    order = {label: i for i, label in enumerate(vocabulary)}
    labels: set[str] = set()
    unmapped: list[str] = []
    for raw in codes:
        code = _normalise_snomed(raw)
        found = {code} if code in order else {scp for scp in snomed_to_scp(code) if scp in order}
        labels |= found
        if not found and code not in unmapped:
            unmapped.append(code)
    return sorted(labels, key=order.__getitem__), unmapped


__all__ = ["snomed_to_scp", "scp_to_snomed", "snomed_term", "mapping_table", "map_snomed_labels", "challenge_classes",
           "scored_classes", "unmapped_scored_classes", "RELATIONS"]
