"""Bounded fuzzing of every reader: seeded mutations (truncations, bit flips, splices, deletions, boundary values,
hostile numbers in text) of files the tests write in every format and of the vendor samples in
``$ECGFM_FORMATS_DIR`` (CRC-protected formats read with and without their CRC check). A mutated file either reads or raises :class:`ECGReadError` naming it, quickly and within a
memory ceiling; any other exception fails the test. ``benchmarks/fuzz_readers.py`` runs 1,000 cases per format."""
from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

import ecgfm
from ecgfm.errors import ECGReadError
from ecgfm.io import available_readers

from conftest import make_synthetic_ecg
from io_fixtures import FORMATS, READ_OPTIONS, mutated_copies, read_variants, source_file

CASES_PER_FORMAT = 20
CASES_PER_VENDOR_FILE = 5
#: Ceiling on the Python-traced memory (NumPy arrays included) of one whole run; a 10-s 12-lead ECG is ~0.5 MB.
MEMORY_CEILING_BYTES = 200 * 2**20
SECONDS_PER_CASE = 5.0


def read_outcome(path: Path, **options) -> str:
    """``"read"`` or ``"refused"``; any exception other than ECGReadError propagates (and fails the test)."""
    try:
        ecgfm.read(path, **options)
        return "read"
    except ECGReadError as exc:
        assert exc.path and Path(exc.path).stem == path.stem, f"error does not name {path}: {exc}"
        return "refused"


def fuzz(paths: list[Path], variants: list[dict]) -> dict[str, int]:
    """Read every path with every option set under tracemalloc, checking time per case and the peak."""
    available_readers()  # import the reader modules outside the measurement
    counts = {"read": 0, "refused": 0}
    tracemalloc.start()
    try:
        for path in paths:
            for options in variants:
                started = time.perf_counter()
                counts[read_outcome(path, **options)] += 1
                assert time.perf_counter() - started < SECONDS_PER_CASE, f"{path} took too long"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_CEILING_BYTES, f"peak traced memory {peak / 2**20:.0f} MiB"
    return counts


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_synthetic_files_give_only_read_errors(tmp_path, fmt):
    source = source_file(fmt, tmp_path / "source", make_synthetic_ecg(fs=500, seconds=3, seed=11))
    options = READ_OPTIONS.get(fmt, {})
    assert read_outcome(source, **options) == "read"  # the unmutated file is valid
    mutated = mutated_copies(source, tmp_path / "mutated", CASES_PER_FORMAT, seed=sorted(FORMATS).index(fmt))
    counts = fuzz(mutated, read_variants(source, options))
    assert counts["refused"] > 0  # the mutations do reach the readers' checks


def _vendor_files() -> list[Path]:
    root = os.environ.get("ECGFM_FORMATS_DIR")
    if not root or not Path(root).is_dir():
        return []
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".ann"))


@pytest.mark.skipif(not _vendor_files(), reason="vendor samples not found: set ECGFM_FORMATS_DIR")
def test_mutated_vendor_samples_give_only_read_errors(tmp_path):
    total = 0
    for i, source in enumerate(_vendor_files()):
        paths = mutated_copies(source, tmp_path / f"v{i}", CASES_PER_VENDOR_FILE, seed=100 + i)
        total += sum(fuzz(paths, read_variants(source)).values())
    assert total >= 100
