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


#: The shipped weights the benchmarks measure (``--model``; default: the default model).
MODEL = {"name": "pretrained"}


def use_model(name: str) -> None:
    """Measure the shipped weights called ``name`` (see ``ecgfm.models.list_pretrained``)."""
    MODEL["name"] = name


def _cached(name: str, compute) -> dict[str, np.ndarray]:
    """Arrays from ``CACHE/<shipped weights' checksum>/name`` (.npz), computed and saved on the first call (keyed
    by the weights, so one model never reads another's scores)."""
    from ecgfm.models import get_weights

    path = CACHE / get_weights(MODEL["name"]).info.extra["weights_sha256"][:16] / name
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def model_scores() -> dict[str, np.ndarray]:
    """The shipped model's probabilities on PTB-XL fold 9 (``val_*``) and fold 10 (``test_*``), with labels/ids."""
    def compute():
        from ecgfm.evaluation.model_eval import score

        model = shipped_model()
        data = _ptbxl(model, train_folds=())
        out = {"labels": np.array(model.info.labels, dtype=str)}
        for split in ("val", "test"):
            part = data.part(split)
            out[f"{split}_true"] = part.Y.astype(np.float32)
            out[f"{split}_score"] = score(model, part).astype(np.float32)
            out[f"{split}_ids"] = np.asarray(part.ids).astype(str)
            out[f"{split}_patients"] = np.asarray(part.patient_ids).astype(str)
        return out
    return _cached("scores.npz", compute)


def shipped_model():
    """The measured shipped model (:func:`use_model`), with ``.info`` (read-only use)."""
    import ecgfm

    return ecgfm.load_pretrained(MODEL["name"])


def _ptbxl(model, **kw):
    from ecgfm.datasets import load_labelled

    return load_labelled(ptbxl=os.environ.get("ECGFM_PTBXL_DIR"), labels=model.info.labels,
                         pipeline=model.info.pipeline(), progress=False, **kw)


def embed_arrays(model, arrays: np.ndarray) -> np.ndarray:
    """Embeddings of arrays already preprocessed by the model's pipeline."""
    from ecgfm.datasets import from_arrays
    from ecgfm.inference.embed import embed_set

    data = from_arrays(arrays, np.zeros((len(arrays), 0)), [], preprocess=model.info.preprocess)
    return embed_set(model, data).vectors


def ptbxl_embeddings() -> dict[str, np.ndarray]:
    """Embeddings of every PTB-XL record under the shipped model, with ids and folds."""
    def compute():
        from ecgfm.inference.embed import embed_set

        model = shipped_model()
        emb = embed_set(model, _ptbxl(model))
        return {"ids": np.array(emb.ids, dtype=str), "vectors": emb.vectors.astype(np.float32),
                "folds": np.array(emb.columns["fold"], dtype=np.int16)}
    return _cached("ptbxl_embeddings.npz", compute)


def cpsc_paths() -> list[Path]:
    """The CPSC records (their ``.hea`` files), sorted."""
    return sorted(CPSC_DIR.glob("*.hea"))


def cpsc_embeddings() -> dict[str, np.ndarray]:
    """Embeddings of the CPSC records under the shipped model (unreadable records are listed, not embedded)."""
    def compute():
        from ecgfm.inference.embed import embed_files

        emb = embed_files(shipped_model(), [str(p) for p in cpsc_paths()])
        return {"ids": np.array(emb.ids, dtype=str), "vectors": emb.vectors.astype(np.float32),
                "failures": np.array([f"{s}: {r}" for s, r in emb.failures], dtype=str)}
    return _cached("cpsc_embeddings.npz", compute)


if __name__ == "__main__":
    for name, load in (("scores", model_scores), ("ptbxl embeddings", ptbxl_embeddings),
                       ("cpsc embeddings", cpsc_embeddings)):
        arrays = load()
        print(name, {key: value.shape for key, value in arrays.items()})
