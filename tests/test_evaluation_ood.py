"""Out-of-distribution scorer: exact PPCA Mahalanobis distance, validation-quantile threshold, JSON round trip."""
import json

import numpy as np
import pytest
from sklearn.decomposition import PCA

from ecgfm.evaluation.ood import OODScorer, fit_ood


def _embeddings(n: int, seed: int, dim: int = 40, rank: int = 5):
    """Low-rank data plus small isotropic noise, like pooled CNN features."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).normal(size=(rank, dim))
    return rng.normal(size=(n, rank)) * np.arange(rank, 0, -1) @ basis + 0.1 * rng.normal(size=(n, dim)) + 3.0


def test_score_is_the_mahalanobis_distance_under_the_ppca_covariance():
    train = _embeddings(2000, 1)
    scorer = fit_ood(train, _embeddings(500, 2), n_components=5)
    probe = _embeddings(20, 3) + np.random.default_rng(4).normal(size=(20, 40))
    covariance = PCA(5, svd_solver="full").fit(train).get_covariance()
    centred = probe - train.mean(axis=0)
    expected = np.einsum("ij,ij->i", centred, np.linalg.solve(covariance, centred.T).T) / 40
    np.testing.assert_allclose(scorer.score(probe), expected, rtol=1e-6)


def test_threshold_flags_the_chosen_share_of_in_distribution_and_most_shifted_records():
    scorer = fit_ood(_embeddings(3000, 5), _embeddings(2000, 6), n_components=5, quantile=0.95)
    assert np.mean(scorer.flag(_embeddings(4000, 7))) == pytest.approx(0.05, abs=0.015)
    off_subspace = _embeddings(500, 8) + 0.5 * np.random.default_rng(9).normal(size=(500, 40))
    assert np.mean(scorer.flag(off_subspace)) > 0.99
    along_subspace = _embeddings(500, 10) * 3.0
    assert np.mean(scorer.flag(along_subspace)) > 0.9


def test_scorer_round_trips_through_plain_json():
    scorer = fit_ood(_embeddings(500, 11), _embeddings(200, 12), n_components=4)
    again = OODScorer.from_dict(json.loads(json.dumps(scorer.to_dict(), allow_nan=False)))
    probe = _embeddings(50, 13)
    np.testing.assert_allclose(again.score(probe), scorer.score(probe), rtol=1e-4)
    assert again.threshold == pytest.approx(scorer.threshold, rel=1e-6) and again.n_train == 500


def test_bad_input_is_refused():
    scorer = fit_ood(_embeddings(300, 14), _embeddings(100, 15), n_components=3)
    with pytest.raises(ValueError, match="dimensions"):
        scorer.score(np.zeros((2, 39)))
    with pytest.raises(ValueError, match="unknown OOD scorer"):
        OODScorer.from_dict({"method": "knn"})
    broken = scorer.to_dict()
    broken["variances"] = broken["variances"][:-1]
    with pytest.raises(ValueError, match="do not match"):
        OODScorer.from_dict(broken)
    with pytest.raises(ValueError, match="embeddings"):
        fit_ood(np.zeros((10, 4)), np.zeros((5, 3)))
