"""Fast DeLong (Sun & Xu) against the O(m n) placement-value definition and a published worked example."""
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from ecgfm.evaluation.delong import delong_auc, delong_covariance, delong_test


def slow_delong_covariance(y, scores):
    """DeLong et al. (1988) computed literally: pairwise kernel psi, placement values, sample covariances."""
    scores = np.atleast_2d(scores)
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])  # (k, m, n)
    auc = psi.mean(axis=(1, 2))
    v10 = psi.mean(axis=2)  # per positive: share of negatives it outranks
    v01 = psi.mean(axis=1)  # per negative: share of positives outranking it
    s10 = (v10 - auc[:, None]) @ (v10 - auc[:, None]).T / (m - 1)
    s01 = (v01 - auc[:, None]) @ (v01 - auc[:, None]).T / (n - 1)
    return auc, s10 / m + s01 / n


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_slow_definition(ties, seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.3).astype(int)
    a = rng.normal(size=n) + y
    b = 0.5 * a + rng.normal(size=n) + 0.5 * y  # correlated second model
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2
    scores = np.vstack([a, b])
    auc_fast, cov_fast = delong_covariance(y, scores)
    auc_slow, cov_slow = slow_delong_covariance(y, scores)
    np.testing.assert_allclose(auc_fast, auc_slow, atol=1e-12)
    np.testing.assert_allclose(cov_fast, cov_slow, rtol=1e-10, atol=1e-15)
    assert auc_fast[0] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    single = delong_auc(y, a)  # single-model path: variances summed over score bins instead of records
    assert single.se == pytest.approx(np.sqrt(cov_slow[0, 0]), rel=1e-10)

    test = delong_test(y, a, b)
    var = cov_slow[0, 0] + cov_slow[1, 1] - 2 * cov_slow[0, 1]
    assert test.diff == pytest.approx(auc_slow[0] - auc_slow[1], abs=1e-12)
    assert test.se == pytest.approx(np.sqrt(var), rel=1e-10)
    assert test.p_value == pytest.approx(2 * norm.sf(abs(test.diff) / np.sqrt(var)), rel=1e-9)
    assert test.ci_low == pytest.approx(test.diff - 1.959963984540054 * test.se)


def test_hanley_mcneil_1982_ct_example():
    """Hanley & McNeil (Radiology 1982), Table 1: 5-point CT ratings of 58 normal and 51 abnormal patients.

    The paper reports AUC 0.893 and (with its exponential approximation) SE 0.032; DeLong's nonparametric SE is of
    the same size.
    """
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.zeros(normal.size), np.ones(abnormal.size)]
    result = delong_auc(y, np.r_[normal, abnormal])
    assert round(result.auc, 3) == 0.893
    assert result.se == pytest.approx(0.032, abs=0.003)
    assert result.ci_low < result.auc < result.ci_high <= 1.0


def test_identical_models_have_no_difference():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 100)
    s = rng.normal(size=100)
    test = delong_test(y, s, s)
    assert test.diff == 0.0 and test.p_value == 1.0
    # A monotone transform does not change ranks, so it is the same model for AUC purposes.
    assert delong_test(y, s, np.exp(s)).p_value == 1.0


def test_single_positive_gives_nan_se_not_crash():
    result = delong_auc([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3])
    assert result.auc == 1.0 and np.isnan(result.se)
    with pytest.raises(ValueError, match="at least one positive"):
        delong_auc([0, 0, 0], [0.1, 0.2, 0.3])


def test_delong_interval_coverage():
    """Binormal model with known AUC = Phi(d / sqrt 2): 95% DeLong intervals should cover about 95% of the time."""
    rng = np.random.default_rng(4)
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    hits = 0
    n_sim = 400
    for _ in range(n_sim):
        y = np.r_[np.ones(60), np.zeros(140)]
        s = rng.normal(size=200) + d * y
        r = delong_auc(y, s)
        hits += r.ci_low <= true_auc <= r.ci_high
    assert 0.91 <= hits / n_sim <= 0.98
