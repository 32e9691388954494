"""Confidence intervals for proportions (Wilson score) and from resampling replicates (percentile)."""
from __future__ import annotations

import numpy as np
from scipy.stats import norm


def z_value(level: float = 0.95) -> float:
    """Two-sided standard-normal quantile for a confidence level (1.96 for 0.95)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2.0))


def wilson_interval(successes, trials, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (no continuity correction) for k successes out of n, vectorised.

    Used for sensitivity/specificity/PPV/NPV: unlike the Wald interval it stays inside [0, 1] and keeps close to the
    nominal coverage at the extreme proportions and small counts typical of rare diagnoses. Written here (instead of
    calling ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``, which the tests compare against) because
    scipy's version takes one proportion per call and reports are built for dozens of labels at once. ``trials == 0``
    gives NaN bounds.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson_interval needs 0 <= successes <= trials")
    z = z_value(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    # At p = 0 (p = 1) the exact lower (upper) bound is 0 (1); pin it so rounding never reports 1e-17.
    low = np.where(k == 0, 0.0, low)
    high = np.where(k == n, 1.0, high)
    empty = n == 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def percentile_interval(replicates, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along ``axis``, ignoring NaN replicates (resamples where a metric is undefined).

    All-NaN slices give NaN bounds without a warning.
    """
    reps = np.moveaxis(np.asarray(replicates, dtype=float), axis, 0)
    alpha = (1.0 - level) / 2.0
    out_shape = reps.shape[1:]
    flat = reps.reshape(reps.shape[0], -1)
    low = np.full(flat.shape[1], np.nan)
    high = np.full(flat.shape[1], np.nan)
    ok = np.isfinite(flat).any(axis=0)
    if np.any(ok):
        low[ok], high[ok] = np.nanquantile(flat[:, ok], [alpha, 1.0 - alpha], axis=0)
    return low.reshape(out_shape), high.reshape(out_shape)
