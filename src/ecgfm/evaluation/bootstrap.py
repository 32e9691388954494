"""Vectorised (cluster) bootstrap of per-label AUC, average precision and confusion counts.

Method. A bootstrap replicate draws ``P`` clusters with replacement (patients when patient ids are known, so all ECGs
of a patient move together; otherwise every record is its own cluster) and gives each record the count of its
cluster, a multinomial weight. Every weighted metric here depends on the data only through, for each distinct score
value, the weighted number of positives and negatives with that score. Those per-bin weights are one sparse matrix
product, ``counts = C @ W``, where ``C[bin, cluster]`` counts the cluster's positives (or negatives) in the bin (the
per-patient sufficient statistics) and ``W[cluster, replicate]`` holds the multinomial weights of a chunk of replicates.
From the per-bin counts:

* AUC = sum_b pos_b (neg below b + neg_b / 2) / (n1 n0), the Mann-Whitney statistic with average-rank ties;
* AP = sum_b pos_b precision(score >= b) / n1 over bins in descending order (scikit-learn's step definition);
* TP/FP at threshold t = weighted positives/negatives in bins with score >= t.

Runs of bins holding only negatives are merged first (only their total matters), which shrinks ``C`` to about three
rows per distinct positive score: a big saving for rare labels. Each replicate uses its own random stream spawned from
``seed``, so results do not depend on the chunk size or the number of threads. Cost per label is O(records x replicates) multiply-adds inside
scipy's sparse product, with no per-replicate Python work beyond drawing the weights once for all labels and models.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ecgfm.evaluation.metrics import ScoreBins

#: Upper bound on the float32 weight matrix of one chunk (elements), about 128 MB.
_CHUNK_ELEMENTS = 32_000_000
_MAX_CHUNK = 64
_STATS = ("auc", "ap", "tp", "fp", "tn", "fn")


@dataclass
class BootstrapReplicates:
    """Replicate values, each ``(n_models, n_resamples, n_labels)``; counts are NaN where no threshold was given."""

    auc: np.ndarray
    ap: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray
    unit: str
    n_clusters: int
    n_resamples: int
    seed: int


def cluster_codes(patient_ids, n_records: int) -> tuple[np.ndarray, int, str]:
    """Integer cluster index per record, number of clusters and the unit name ("patient" or "record")."""
    if patient_ids is None:
        return np.arange(n_records), n_records, "record"
    ids = np.asarray(patient_ids)
    if ids.shape != (n_records,):
        raise ValueError(f"patient_ids must have one entry per record ({n_records}), got shape {ids.shape}")
    if ids.dtype.kind == "f" and np.any(np.isnan(ids)):
        raise ValueError("patient_ids contains NaN; give every record a patient id or pass patient_ids=None")
    _, codes = np.unique(ids, return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1, "patient"


@dataclass
class LabelDesign:
    """One label's sufficient statistics as a sparse ``rows x clusters`` count matrix (see :func:`label_design`)."""

    matrix: sparse.csr_matrix
    n_pos_bins: int
    threshold_gap: int | None  # positive bins below the threshold (None: no threshold)


def label_design(bins: ScoreBins, codes, n_clusters: int, threshold: float) -> LabelDesign:
    """Build one label's count matrix from its known records.

    With the S distinct scores that hold at least one positive ("positive bins", ascending) the rows are:

    * ``0 .. S-1``: positives in positive bin k;
    * ``S .. 2S``: negatives at or below positive bin k and above bin k-1 (row 2S: negatives above every positive), so a
      cumulative sum gives the negatives at or below each positive bin;
    * ``2S+1 .. 3S``: negatives tied with positive bin k (they count one half in the AUC);
    * ``3S+1``: negatives below the threshold but above the last positive bin under it (for the false positives).

    Everything between two positive scores is merged, so the matrix has about 3 x (distinct positive scores) rows
    whatever the number of negatives.
    """
    values, inverse, positive = bins.values, bins.inverse, bins.positive
    pos_bins = np.flatnonzero(bins.pos)
    n_pos = pos_bins.size
    gap = np.searchsorted(pos_bins, inverse, side="left")  # index of the first positive bin at or above each record
    neg = ~positive
    tied = neg & (gap < n_pos)
    tied[tied] = pos_bins[gap[tied]] == inverse[tied]
    rows = [np.where(positive, gap, n_pos + gap), 2 * n_pos + 1 + gap[tied]]
    cols = [codes, codes[tied]]
    threshold_gap = None
    if np.isfinite(threshold):
        threshold_bin = np.searchsorted(values, threshold, side="left")  # first bin called positive
        threshold_gap = int(np.searchsorted(pos_bins, threshold_bin, side="left"))
        below = neg & (inverse < threshold_bin) & (gap == threshold_gap)
        rows.append(np.full(int(below.sum()), 3 * n_pos + 1))
        cols.append(codes[below])
    rows_all = np.concatenate(rows)
    data = np.ones(rows_all.size, dtype=np.float32)
    shape = (3 * n_pos + 2, n_clusters)
    matrix = sparse.csr_matrix((data, (rows_all, np.concatenate(cols))), shape=shape)  # sums same-patient duplicates
    return LabelDesign(matrix, n_pos, threshold_gap)


def _stats_from_counts(counts: np.ndarray, design: LabelDesign):
    """AUC, AP and TP/FP/TN/FN per replicate (columns) from the weighted row counts ``design.matrix @ W``.

    The inner loop of the whole evaluation, so it works in float32 (exact: the counts are integers below 2**24) and
    accumulates the final sums in float64.
    """
    s = design.n_pos_bins
    pos = counts[:s]
    neg_cum = np.cumsum(counts[s: 2 * s + 1], axis=0)  # negatives at or below positive bin k (last: all negatives)
    tied = counts[2 * s + 1: 3 * s + 1]
    pos_cum = np.cumsum(pos, axis=0)
    n1 = pos_cum[-1].astype(np.float64) if s else np.zeros(counts.shape[1])
    n0 = neg_cum[-1].astype(np.float64)
    neg_at_or_below = neg_cum[:s]
    with np.errstate(invalid="ignore", divide="ignore"):
        # Mann-Whitney: each positive beats the negatives strictly below it and ties half of those in its own bin.
        auc = np.einsum("sb,sb->b", pos, neg_at_or_below - 0.5 * tied, dtype=np.float64) / (n1 * n0)
        # Precision when every record scoring >= positive bin k is called positive (ties included).
        called_pos = n1.astype(np.float32) - pos_cum + pos
        called_all = n0.astype(np.float32) - neg_at_or_below + tied + called_pos
        np.maximum(called_all, 1.0, out=called_all)  # integer weights: 0 only where pos is 0 as well
        ap = np.einsum("sb,sb->b", pos, called_pos / called_all, dtype=np.float64) / n1
    auc[(n1 == 0) | (n0 == 0)] = np.nan
    ap[n1 == 0] = np.nan
    q = design.threshold_gap
    if q is None:
        nan = np.full_like(n1, np.nan)
        return auc, ap, nan, nan, nan, nan
    neg_below = counts[3 * s + 1].astype(np.float64) + (neg_cum[q - 1] if q else 0.0)
    tp = n1 - (pos_cum[q - 1] if q else 0.0)
    fp = n0 - neg_below
    return auc, ap, tp, fp, neg_below, n1 - tp


def draw_weights(seeds: Sequence[np.random.SeedSequence], n_clusters: int) -> np.ndarray:
    """Multinomial cluster weights ``(n_clusters, len(seeds))`` float32: column r = how often each cluster was drawn."""
    weights = np.empty((len(seeds), n_clusters), dtype=np.float32)
    for r, seed in enumerate(seeds):
        draws = np.random.default_rng(seed).integers(0, n_clusters, size=n_clusters)
        weights[r] = np.bincount(draws, minlength=n_clusters)
    return np.ascontiguousarray(weights.T)


def bootstrap_replicates(
    y_true,
    scores: np.ndarray | Sequence[np.ndarray],
    thresholds=None,
    patient_ids=None,
    n_resamples: int = 1000,
    seed: int = 0,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    n_jobs: int = 1,
) -> BootstrapReplicates:
    """Bootstrap replicates of per-label AUC, AP and confusion counts for one or more models on the same records.

    ``y_true`` is ``(N, L)`` (NaN = unknown), ``scores`` one ``(N, L)`` array or a list of them (paired: every model
    sees the same resampled records), ``thresholds`` ``(L,)`` or ``(n_models, L)`` (NaN or None = no counts).
    ``progress`` is called with the number of replicates finished after each chunk.
    """
    y_true = np.asarray(y_true, dtype=float)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    models = [scores] if isinstance(scores, np.ndarray) else list(scores)
    models = [np.asarray(m, dtype=float) for m in models]
    models = [m[:, None] if m.ndim == 1 else m for m in models]
    for m in models:
        if m.shape != y_true.shape:
            raise ValueError(f"scores shape {m.shape} does not match y_true {y_true.shape}")
    n_records, n_labels = y_true.shape
    thr = np.full((len(models), n_labels), np.nan) if thresholds is None else np.asarray(thresholds, dtype=float)
    thr = np.broadcast_to(thr if thr.ndim == 2 else thr[None, :], (len(models), n_labels))
    codes, n_clusters, unit = cluster_codes(patient_ids, n_records)
    designs = []
    for mi, score in enumerate(models):
        row = []
        for j in range(n_labels):
            known = ~np.isnan(y_true[:, j])
            bins = ScoreBins.from_scores(y_true[known, j], score[known, j]) if known.any() else None
            row.append(None if bins is None else label_design(bins, codes[known], n_clusters, thr[mi, j]))
        designs.append(row)
    return run_bootstrap(designs, n_clusters, unit, n_resamples, seed, chunk_size, progress, n_jobs)


def run_bootstrap(
    designs: Sequence[Sequence[LabelDesign | None]],
    n_clusters: int,
    unit: str,
    n_resamples: int = 1000,
    seed: int = 0,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    n_jobs: int = 1,
) -> BootstrapReplicates:
    """Resample prepared designs (``designs[model][label]``, None = label without known records).

    Lets callers build each label's design right after its point metrics and free the per-record arrays, so memory
    stays at the sparse matrices (about 8 bytes per known record and label) on million-record test sets.
    ``n_jobs > 1`` spreads the labels over threads (scipy's sparse product and numpy's cumulative sums release the
    GIL); results are identical for any ``n_jobs``.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    n_labels = len(designs[0])
    shape = (len(designs), n_resamples, n_labels)
    out = {key: np.full(shape, np.nan) for key in _STATS}
    tasks = [(mi, j, design) for mi, row in enumerate(designs) for j, design in enumerate(row) if design is not None]
    seeds = np.random.SeedSequence(seed).spawn(n_resamples)
    chunk = chunk_size or max(1, min(_MAX_CHUNK, _CHUNK_ELEMENTS // max(n_clusters, 1)))

    def resample(task, weights, start: int, stop: int) -> None:
        mi, j, design = task
        for key, value in zip(_STATS, _stats_from_counts(design.matrix @ weights, design)):
            out[key][mi, start:stop, j] = value  # each task writes its own column: no locking needed

    with ThreadPoolExecutor(n_jobs) if n_jobs > 1 else nullcontext() as pool:
        for start in range(0, n_resamples, chunk):
            stop = min(start + chunk, n_resamples)
            weights = draw_weights(seeds[start:stop], n_clusters)
            if pool is None:
                for task in tasks:
                    resample(task, weights, start, stop)
            else:
                list(pool.map(lambda task: resample(task, weights, start, stop), tasks))
            if progress is not None:
                progress(stop)
    return BootstrapReplicates(**out, unit=unit, n_clusters=n_clusters, n_resamples=n_resamples, seed=seed)
