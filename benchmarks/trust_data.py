"""Cached inputs of the trust benchmarks (quality.py, calibration.py, ood.py): the shipped model's fold-9/fold-10
probabilities and embeddings, and raw PTB-XL / CPSC records, kept under ``$ECGFM_TRUST_CACHE`` (default
``/tmp/trust-cache``) so reruns take seconds. Nothing here is written into the repository.

Run ``python benchmarks/trust_data.py`` once to fill the cache (about 3 minutes on two cores).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("ECGFM_TRUST_CACHE", "/tmp/trust-cache"))
CPSC_DIR = Path(os.environ.get("ECGFM_CPSC_DIR", Path(__file__).resolve().parents[2] / "shared/data/external/cpsc"))
if not CPSC_DIR.is_dir():
    CPSC_DIR = Path("/work/shared/data/external/cpsc")


def _cached(name: str, compute) -> dict[str, np.ndarray]:
    """Arrays from ``CACHE/name`` (.npz), computed and saved on the first call."""
    path = CACHE / name
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    arrays = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def model_scores() -> dict[str, np.ndarray]:
    """The shipped model's probabilities on PTB-XL fold 9 (``val_*``) and fold 10 (``test_*``), with labels/ids."""
    def compute():
        from ecgfm.evaluation.model_eval import score_model

        scored, info, _ = score_model(None, ptbxl=os.environ.get("ECGFM_PTBXL_DIR"), progress=False)
        out = {"labels": np.array(scored["test"].arrays.label_names, dtype=str)}
        for split, prefix in (("val", "val"), ("test", "test")):
            part = scored[split]
            out[f"{prefix}_true"] = part.arrays.Y.astype(np.float32)
            out[f"{prefix}_score"] = part.scores.astype(np.float32)
            out[f"{prefix}_ids"] = np.asarray(part.arrays.ids).astype(str)
            out[f"{prefix}_patients"] = np.asarray(part.arrays.patient_ids).astype(str)
        return out
    return _cached("scores.npz", compute)


def shipped_model():
    """``(model, info)`` of the shipped weights (read-only use)."""
    import ecgfm

    return ecgfm.load_pretrained()


def ptbxl_embeddings() -> dict[str, np.ndarray]:
    """Embeddings of every PTB-XL record under the shipped model, with ids and folds."""
    def compute():
        from ecgfm.models.embedding import embed_ptbxl

        model, info = shipped_model()
        emb = embed_ptbxl(model, info, progress=False)
        return {"ids": np.array(emb.ids, dtype=str), "vectors": emb.vectors.astype(np.float32),
                "folds": np.array(emb.columns["strat_fold"], dtype=np.int16)}
    return _cached("ptbxl_embeddings.npz", compute)


def cpsc_paths() -> list[Path]:
    """The CPSC records (their ``.hea`` files), sorted."""
    return sorted(CPSC_DIR.glob("*.hea"))


def cpsc_embeddings() -> dict[str, np.ndarray]:
    """Embeddings of the CPSC records under the shipped model (unreadable records are listed, not embedded)."""
    def compute():
        from ecgfm.models.embedding import embed_files

        model, info = shipped_model()
        emb = embed_files(model, info, [str(p) for p in cpsc_paths()])
        return {"ids": np.array(emb.ids, dtype=str), "vectors": emb.vectors.astype(np.float32),
                "failures": np.array([f"{s}: {r}" for s, r in emb.failures], dtype=str)}
    return _cached("cpsc_embeddings.npz", compute)


if __name__ == "__main__":
    for name, load in (("scores", model_scores), ("ptbxl embeddings", ptbxl_embeddings),
                       ("cpsc embeddings", cpsc_embeddings)):
        arrays = load()
        print(name, {key: value.shape for key, value in arrays.items()})
