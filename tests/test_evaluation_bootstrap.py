"""Vectorised (cluster) bootstrap: exact against weighted scikit-learn metrics, seed-stable, and well calibrated."""
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from ecgfm.evaluation.bootstrap import bootstrap_replicates, cluster_codes, draw_weights
from ecgfm.evaluation.intervals import percentile_interval
from ecgfm.evaluation.metrics import ScoreBins


def _data(seed=0, n=400, n_labels=4, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < np.linspace(0.05, 0.5, n_labels)).astype(float)
    y[:2] = [[1] * n_labels, [0] * n_labels]
    s = rng.normal(size=y.shape) + y
    if ties:
        s = np.round(s, 1)
    y[rng.random(y.shape) < 0.05] = np.nan  # unknown labels
    return y, s


def _weighted_reference(y, s, w, thr):
    """One replicate computed with scikit-learn's sample weights (independent of the sparse-count algorithm)."""
    known = ~np.isnan(y)
    y, s, w = y[known], s[known], w[known]
    called = s >= thr
    return {
        "auc": roc_auc_score(y, s, sample_weight=w),
        "ap": average_precision_score(y, s, sample_weight=w),
        "tp": w[called & (y == 1)].sum(), "fp": w[called & (y == 0)].sum(),
        "tn": w[~called & (y == 0)].sum(), "fn": w[~called & (y == 1)].sum(),
    }


@pytest.mark.parametrize("with_patients", [False, True])
def test_replicates_equal_weighted_sklearn_metrics(with_patients):
    y, s = _data()
    rng = np.random.default_rng(9)
    patients = rng.integers(0, 150, y.shape[0]) if with_patients else None
    thresholds = np.array([0.0, 0.5, 5.0, -5.0])  # includes "nobody positive" and "everybody positive"
    boot = bootstrap_replicates(y, s, thresholds, patient_ids=patients, n_resamples=5, seed=11)
    codes, n_clusters, unit = cluster_codes(patients, y.shape[0])
    assert unit == ("patient" if with_patients else "record")
    weights = draw_weights(np.random.SeedSequence(11).spawn(5), n_clusters)  # the same draws, rebuilt
    for r in range(5):
        record_weights = weights[codes, r].astype(float)
        for j in range(y.shape[1]):
            ref = _weighted_reference(y[:, j], s[:, j], record_weights, thresholds[j])
            for key in ("auc", "ap"):
                assert getattr(boot, key)[0, r, j] == pytest.approx(ref[key], abs=1e-6), (key, r, j)
            for key in ("tp", "fp", "tn", "fn"):
                assert getattr(boot, key)[0, r, j] == ref[key], (key, r, j)


def test_unit_weights_reproduce_point_estimates_on_adversarial_labels():
    y = np.c_[[1, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0]].astype(float)
    s = np.c_[[0.9, 0.5, 0.5, 0.1, 0.5, 0.2], np.arange(6), np.arange(6), np.full(6, 0.3)]
    from ecgfm.evaluation.bootstrap import _stats_from_counts, label_design

    aucs = []
    for j in range(4):
        design = label_design(ScoreBins.from_scores(y[:, j], s[:, j]), np.arange(6), 6, 0.5)
        auc, ap, tp, fp, tn, fn = _stats_from_counts(design.matrix @ np.ones((6, 1), np.float32), design)
        aucs.append(auc[0])
        assert tp[0] + fn[0] == y[:, j].sum() and fp[0] + tn[0] == 6 - y[:, j].sum()
    assert aucs[0] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert np.isnan(aucs[1]) and np.isnan(aucs[2])  # single class
    assert aucs[3] == 0.5  # all scores tied


def test_results_do_not_depend_on_chunk_size_or_threads_and_are_seeded():
    y, s = _data(1)
    a = bootstrap_replicates(y, s, n_resamples=37, seed=5, chunk_size=4)
    b = bootstrap_replicates(y, s, n_resamples=37, seed=5, chunk_size=64, n_jobs=2)
    c = bootstrap_replicates(y, s, n_resamples=37, seed=6)
    np.testing.assert_array_equal(a.auc, b.auc)
    assert not np.array_equal(a.auc, c.auc)


def test_paired_models_share_resamples():
    y, s = _data(2)
    boot = bootstrap_replicates(y, [s, s], n_resamples=20, seed=0)
    np.testing.assert_array_equal(boot.auc[0], boot.auc[1])  # same records drawn for both models


def test_patient_ids_validation():
    with pytest.raises(ValueError, match="one entry per record"):
        cluster_codes(np.arange(3), 4)
    with pytest.raises(ValueError, match="NaN"):
        cluster_codes(np.array([1.0, np.nan]), 2)
    codes, n, unit = cluster_codes(np.array(["p2", "p1", "p2"]), 3)
    assert n == 2 and codes[0] == codes[2] != codes[1]


def _coverage(n_sim, n_resamples, simulate, true_auc, use_patients, seed):
    rng = np.random.default_rng(seed)
    hits = 0
    for k in range(n_sim):
        y, s, patients = simulate(rng)
        boot = bootstrap_replicates(y, s, patient_ids=patients if use_patients else None,
                                    n_resamples=n_resamples, seed=k)
        low, high = percentile_interval(boot.auc[0, :, 0])
        hits += low <= true_auc <= high
    return hits / n_sim


def test_record_bootstrap_coverage_is_nominal():
    """200 simulations x 200 resamples of a binormal model (true AUC = Phi(d / sqrt 2)); coverage near 0.95."""
    d = 1.0

    def simulate(rng):
        y = np.r_[np.ones(60), np.zeros(140)]
        return y, rng.normal(size=200) + d * y, None

    coverage = _coverage(200, 200, simulate, norm.cdf(d / np.sqrt(2)), False, seed=0)
    assert 0.88 <= coverage <= 0.99


def test_patient_bootstrap_covers_clustered_data_where_record_bootstrap_does_not():
    """Four ECGs per patient sharing a patient effect: resampling records understates the variance."""
    d, sd_patient, sd_record, per_patient = 1.5, 1.0, 0.5, 4
    true_auc = norm.cdf(d / np.sqrt(2 * (sd_patient**2 + sd_record**2)))

    def simulate(rng):
        n_patients = 60
        y_patient = (np.arange(n_patients) < 20).astype(float)
        effect = rng.normal(scale=sd_patient, size=n_patients) + d * y_patient
        patients = np.repeat(np.arange(n_patients), per_patient)
        s = effect[patients] + rng.normal(scale=sd_record, size=patients.size)
        return y_patient[patients], s, patients

    patient_coverage = _coverage(200, 200, simulate, true_auc, True, seed=1)
    record_coverage = _coverage(200, 200, simulate, true_auc, False, seed=1)
    assert 0.88 <= patient_coverage <= 0.99
    assert record_coverage < patient_coverage - 0.05
