"""Out-of-distribution score: how far a record's embedding lies from the training set's, flagged above a threshold
chosen on validation embeddings.

The score is the Mahalanobis distance under probabilistic PCA (Tipping & Bishop 1999), fitted with scikit-learn's
``PCA`` on training embeddings ``(N, D)``: the top ``k`` principal directions keep their own variances and the
remaining ``D - k`` share one (the mean of the discarded eigenvalues, PCA's ``noise_variance_``). This is a shrunk
covariance, like Ledoit-Wolf's, that is also small to store: a full ``D x D`` precision matrix of the shipped model's
3,328-dimensional embeddings would hold 11 million numbers, this one ``(k + 1) x D``. Records unlike the training ECGs
(noise, flat leads, swapped electrodes, other devices or populations) land far out, either along the principal
directions or off their subspace (the residual term).

The threshold is a quantile of the validation scores (default the 99th percentile: about 1% of in-distribution records
are flagged, by construction). :meth:`OODScorer.score` needs numpy only; :meth:`OODScorer.to_dict` is plain JSON.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgfm.files import atomic_write_text

#: Principal directions kept: the validation log-likelihood of the shipped model's embeddings still rises beyond 64,
#: but slowly (1417 nats at 64, 1757 at 128), and each direction costs D numbers of storage (64: ~2.5 MB of JSON).
N_COMPONENTS = 64
#: Validation quantile used as the flag threshold.
QUANTILE = 0.99


@dataclass
class OODScorer:
    """Probabilistic-PCA Mahalanobis distance to the training embeddings, with a validation-chosen threshold."""

    mean: np.ndarray         # (D,)
    components: np.ndarray   # (k, D), orthonormal rows
    variances: np.ndarray    # (k,) variance along each component
    noise_variance: float    # variance of every other direction
    threshold: float
    quantile: float = QUANTILE
    n_train: int = 0

    def score(self, embeddings) -> np.ndarray:
        """Squared-distance-like score per row of ``embeddings (N, D)`` (divided by D: about 1 for training data)."""
        z = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if z.shape[1] != self.mean.size:
            raise ValueError(f"embeddings have {z.shape[1]} dimensions, the scorer {self.mean.size}")
        z = z - self.mean
        projected = z @ self.components.T
        residual = np.maximum(np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", projected, projected), 0.0)
        distance = (projected ** 2 / self.variances).sum(axis=1) + residual / self.noise_variance
        return distance / self.mean.size

    def flag(self, embeddings) -> np.ndarray:
        """True where the score exceeds the threshold."""
        return self.score(embeddings) > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (numbers rounded to 7 significant digits, float32's precision, which also keeps the text short)."""
        def floats(array):
            return [float(f"{v:.7g}") for v in np.asarray(array, dtype=np.float64).ravel()]

        return {"method": "ppca-mahalanobis", "dim": int(self.mean.size), "n_components": int(self.variances.size),
                "mean": floats(self.mean), "components": floats(self.components), "variances": floats(self.variances),
                "noise_variance": float(self.noise_variance), "threshold": float(self.threshold),
                "quantile": float(self.quantile), "n_train": int(self.n_train)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OODScorer":
        if data.get("method") != "ppca-mahalanobis":
            raise ValueError(f"unknown OOD scorer {data.get('method')!r}; expected 'ppca-mahalanobis'")
        dim, k = int(data["dim"]), int(data["n_components"])
        components = np.asarray(data["components"], dtype=np.float64)
        if components.size != k * dim or len(data["mean"]) != dim or len(data["variances"]) != k:
            raise ValueError(f"OOD scorer arrays do not match dim={dim}, n_components={k}")
        return cls(np.asarray(data["mean"], dtype=np.float64), components.reshape(k, dim),
                   np.asarray(data["variances"], dtype=np.float64), float(data["noise_variance"]),
                   float(data["threshold"]), float(data.get("quantile", QUANTILE)), int(data.get("n_train", 0)))


def fit_ood(train_embeddings, val_embeddings, n_components: int = N_COMPONENTS,
            quantile: float = QUANTILE) -> OODScorer:
    """Fit the scorer on training embeddings ``(N, D)`` and set its threshold at ``quantile`` of the validation
    scores (records the model was never fitted on, so the threshold is not flattered by training-set fit)."""
    from sklearn.decomposition import PCA

    train = np.asarray(train_embeddings, dtype=np.float64)
    val = np.asarray(val_embeddings, dtype=np.float64)
    if train.ndim != 2 or val.ndim != 2 or train.shape[1] != val.shape[1]:
        raise ValueError(f"need (N, D) training and validation embeddings, got {train.shape} and {val.shape}")
    k = int(min(n_components, train.shape[0] - 1, train.shape[1] - 1))
    if k < 1 or len(val) == 0:
        raise ValueError("too few embeddings to fit an out-of-distribution scorer")
    pca = PCA(n_components=k, svd_solver="full").fit(train)
    # Dead features (zero variance in training) leave noise_variance at 0 only if all discarded directions are dead.
    floor = 1e-6 * float(pca.explained_variance_[0])
    scorer = OODScorer(pca.mean_, pca.components_, np.maximum(pca.explained_variance_, floor),
                       max(float(pca.noise_variance_), floor), threshold=np.inf, quantile=quantile,
                       n_train=int(train.shape[0]))
    scorer.threshold = float(np.quantile(scorer.score(val), quantile))
    return scorer


#: The file beside a released model's weights holding its out-of-distribution scorer.
OOD_NAME = "ood.json"


def save_ood(folder: str | os.PathLike, scorer: OODScorer) -> Path:
    """Store ``scorer`` beside a model's weights (JSON; kept out of ``config.json``, which it would dwarf)."""
    return atomic_write_text(Path(folder) / OOD_NAME, json.dumps(scorer.to_dict()))


def load_ood(folder: str | os.PathLike | None) -> OODScorer | None:
    """The scorer stored beside a model's weights, or ``None`` when there is none."""
    path = Path(folder) / OOD_NAME if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        return OODScorer.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid out-of-distribution scorer ({exc})") from None
