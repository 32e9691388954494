"""Patient-level splits of the few-example experiments: nesting, exact counts, no leakage, CV coverage."""
from __future__ import annotations

import numpy as np
import pytest

from ecgfm.transfer.splits import (ALL, NestedSampler, check_patient_disjoint, cv_folds, fixed_random_test,
                                   fixed_test_folds, parse_sizes, patient_positive)


def cohort(n_patients=400, prevalence=0.1, seed=0):
    """Patients with 1-3 records each; a positive patient has at least one positive record."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 4, n_patients)
    pids = np.repeat(np.arange(n_patients), counts).astype(str)
    positive_patient = rng.random(n_patients) < prevalence
    y = np.zeros(len(pids))
    for p in np.flatnonzero(positive_patient):
        rows = np.flatnonzero(pids == str(p))
        y[rows[: rng.integers(1, len(rows) + 1)]] = 1  # not every ECG of a positive patient shows the finding
    return y, pids


def test_parse_sizes():
    assert parse_sizes("10, 25,all,10") == [10, 25, ALL]
    assert parse_sizes([5, "ALL"]) == [5, ALL]
    for bad in ("0", "ten", ""):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_patient_positive_uses_any_record():
    assert patient_positive(np.array([0, 1, 0, np.nan]), np.array(["a", "a", "b", "c"])) == \
        {"a": True, "b": False, "c": False}


def test_nested_sampler_counts_nesting_and_patient_disjointness():
    y, pids = cohort()
    pool = np.arange(len(y))
    sampler = NestedSampler(y, pids, pool, seed=3, neg_ratio=4, val_fraction=0.2)
    status = patient_positive(y, pids)
    previous = None
    for size in (5, 10, 20, ALL):
        t = sampler.draw(size)
        n_pos = sampler.n_positives(size)
        patients = set(pids[t.all])
        assert sum(status[p] for p in patients) == n_pos == t.positive_patients
        assert len(patients) - n_pos == t.negative_patients == min(4 * n_pos, sum(not v for v in status.values()))
        # all records of a chosen patient are included, and train/val never share a patient
        assert set(np.flatnonzero(np.isin(pids, list(patients)))) == set(t.all)
        check_patient_disjoint(t.train, t.val, pids)
        val_pos = sum(status[p] for p in set(pids[t.val]))
        assert val_pos == int(np.floor(n_pos * 0.2))  # every 5th positive patient validates
        if previous is not None:  # nested: the smaller training and validation sets are contained in the larger
            assert set(previous.train) <= set(t.train) and set(previous.val) <= set(t.val)
        previous = t
    assert sampler.n_positives(ALL) == sum(status.values())
    with pytest.raises(ValueError, match="training pool has"):
        sampler.draw(sampler.max_positives + 1)


def test_nested_sampler_is_deterministic_and_seed_dependent():
    y, pids = cohort()
    pool = np.arange(len(y))
    a = NestedSampler(y, pids, pool, seed=1).draw(10)
    b = NestedSampler(y, pids, pool, seed=1).draw(10)
    c = NestedSampler(y, pids, pool, seed=2).draw(10)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.all, c.all)


def test_sampler_draws_only_from_the_pool():
    y, pids = cohort()
    fold = fixed_random_test(y, pids, test_fraction=0.25, seed=0)
    check_patient_disjoint(fold.pool, fold.test, pids)
    t = NestedSampler(y, pids, fold.pool, seed=0, neg_ratio=None).draw(ALL)
    assert set(t.all) <= set(fold.pool)
    assert t.negative_patients == sum(1 for p, v in patient_positive(y[fold.pool], pids[fold.pool]).items() if not v)


def test_cv_folds_test_every_record_once_per_repeat():
    y, pids = cohort()
    for repeat in (0, 1):
        folds = list(cv_folds(y, pids, n_splits=5, repeat=repeat, seed=7))
        tested = np.concatenate([f.test for f in folds])
        assert np.array_equal(np.sort(tested), np.arange(len(y)))
        for f in folds:
            check_patient_disjoint(f.pool, f.test, pids)
            assert np.sum(y[f.test] == 1) > 0  # stratified: every fold has positives
    first = [f.test for f in cv_folds(y, pids, 5, repeat=0, seed=7)]
    second = [f.test for f in cv_folds(y, pids, 5, repeat=1, seed=7)]
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))  # repeats reshuffle


def test_cv_folds_refuses_too_few_positive_patients():
    y = np.array([1, 0, 0, 0, 0, 0], dtype=float)
    with pytest.raises(ValueError, match="positive patients"):
        list(cv_folds(y, np.arange(6).astype(str), n_splits=3))


def test_fixed_test_folds_and_leak_check():
    folds = np.array([1, 2, 9, 10, 10, 3])
    fold = fixed_test_folds(folds, test_folds=[10])
    assert list(fold.test) == [3, 4] and list(fold.pool) == [0, 1, 2, 5]
    assert list(fixed_test_folds(folds, [10], pool_folds=[1, 2]).pool) == [0, 1]
    with pytest.raises(ValueError, match="patient-disjoint"):
        check_patient_disjoint(np.array([0]), np.array([1]), np.array(["p", "p"]))
