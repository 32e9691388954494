"""PTB-XL label vocabularies: the 71 SCP-ECG statements and the benchmark tasks built from them.

Convention (Strodthoff et al. 2020, the PTB-XL benchmark): a statement is positive for a record when it appears in the
record's ``scp_codes`` with **any** likelihood, including 0. PTB-XL uses likelihood 0 for statements whose certainty was
not graded (all rhythm and most form statements, e.g. ``SR``), so dropping likelihood-0 entries would erase them.
Task vocabularies:

- ``all``: every statement;
- ``diagnostic`` / ``form`` / ``rhythm``: statements flagged in that column of ``scp_statements.csv``;
- ``subdiagnostic`` / ``superdiagnostic``: diagnostic statements aggregated to ``diagnostic_subclass`` / ``diagnostic_class``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")


def read_statements(path: str | Path) -> pd.DataFrame:
    """``scp_statements.csv`` indexed by statement code."""
    table = pd.read_csv(path, index_col=0)
    table.index.name = "code"
    return table


def parse_scp_codes(value: str) -> dict[str, float]:
    """The ``scp_codes`` column (a Python dict literal, e.g. ``"{'NORM': 100.0, 'SR': 0.0}"``)."""
    parsed = ast.literal_eval(value) if isinstance(value, str) else {}
    return {str(k): float(v) for k, v in parsed.items()}


def task_labels(scp_codes: dict[str, float], statements: pd.DataFrame, task: str = "all") -> set[str]:
    """The labels of one record for a benchmark task (see module docstring for the convention)."""
    if task not in TASKS:
        raise ValueError(f"unknown PTB-XL task {task!r}; choose one of {', '.join(TASKS)}")
    codes = [code for code in scp_codes if code in statements.index]
    if task == "all":
        return set(codes)
    if task in ("diagnostic", "form", "rhythm"):
        return {c for c in codes if statements.at[c, task] == 1.0}
    column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
    return {str(statements.at[c, column]) for c in codes
            if statements.at[c, "diagnostic"] == 1.0 and pd.notna(statements.at[c, column])}


def label_descriptions(statements: pd.DataFrame, task: str = "all") -> dict[str, str]:
    """Plain-language description of every label of a task (superclass names are spelled out)."""
    if task in ("subdiagnostic", "superdiagnostic"):
        names = SUPERCLASS_NAMES if task == "superdiagnostic" else {}
        column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
        groups = statements[statements["diagnostic"] == 1.0].groupby(column)
        return {str(k): names.get(str(k), "; ".join(v["description"].astype(str))) for k, v in groups}
    return {str(code): str(row["description"]) for code, row in statements.iterrows()}


def statement_groups(statements: pd.DataFrame) -> dict[str, list[str]]:
    """The statements flagged in each of the ``diagnostic``, ``form`` and ``rhythm`` columns (a statement may be in
    two: e.g. ``NDT`` is diagnostic and form)."""
    return {kind: [str(code) for code in statements.index[statements[kind] == 1.0]]
            for kind in ("diagnostic", "form", "rhythm")}


#: Statements about events that may occur anywhere in a strip (ectopic beats, paroxysms): a long record shows one when
#: any of its segments does, so their segment scores combine by the maximum; every other statement (rhythm,
#: conduction, morphology) describes the whole strip and combines by the mean.
EVENT_STATEMENTS = frozenset({"PVC", "PAC", "PRC(S)", "BIGU", "TRIGU", "SVARR", "SVTAC", "PSVT"})


def segment_aggregate(label: str) -> str:
    """How a statement's scores on the segments of a long record combine: ``"max"`` for events, else ``"mean"``."""
    return "max" if label in EVENT_STATEMENTS else "mean"


#: PTB-XL's five diagnostic superclasses.
SUPERCLASS_NAMES = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}
