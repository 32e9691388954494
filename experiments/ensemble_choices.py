"""Benchmark: how the shipped ensemble combines its members, decided on the validation fold (PTB-XL fold 9) alone.

Method. Loads each trained member of an ensemble-recipe run (``RUN/<member>/pretrained``, ordered by training seed),
scores PTB-XL fold 9 once per reading rule, and reports macro-AUC over the statements with >= 5 fold-9 positives for:

- each member alone (its own window, half-window stride, max over windows);
- the ensemble averaging members' logits, probabilities, or per-label ranks;
- crops scored by the mean instead of the max over windows, and with a quarter-window stride;
- the ensemble plus each ``--extra`` member (a candidate fifth member);
- each ``--alt NAME=RUN`` (another run of the same recipe, e.g. with a weight average): its members, its ensemble,
  and the union of both runs' members;
- the ensemble letting only the members that read whole records score the rhythm statements (SR, SARRH, ...);
- how much members agree: the mean over member pairs and labels of the correlation of their logits;
- each ``--reference NAME=DIR``: a released model scored as it is (e.g. the shipped weights, the bar a new recipe
  must clear on this fold).

Fold 10 (the test fold) is never loaded: these are the choices the shipped model was allowed to make.

Run (the commands that train the runs are in ``docs/models.md``): ``python experiments/ensemble_choices.py
--run runs/bench-pretrain/plain --extra runs/bench-pretrain/cand-crops5s-c/crops5s-c
--extra runs/bench-pretrain/cand-crops2.5s-b/crops2.5s-b --alt ema=runs/bench-ema/default --ptbxl ../shared/data/ptbxl``
(writes ``experiments/results/ensemble_choices.json``); a candidate recipe against the shipped weights:
``--run runs/bench-pretrain/short-sqrt --reference shipped=src/ecgfm/weights --out
experiments/results/ensemble_choices_short_sqrt.json``.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit, logit
from scipy.stats import rankdata
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, write_result

from ecgfm.inference.predictor import load_model
from ecgfm.training.metrics import per_label_auc
from ecgfm.training.predict import predict_logits
from ecgfm.training.pretrain import ptbxl_training_data

RESULTS = Path(__file__).resolve().parent / "results"
MIN_POSITIVES = 5


def run_members(run: Path) -> list[tuple[str, torch.nn.Module, object]]:
    """The members trained in a recipe run folder, as ``(name, model, info)`` in training-seed order."""
    found = [candidate(folder) for folder in sorted(Path(run).iterdir())
             if (folder / "pretrained" / "config.json").exists()]
    if not found:
        raise SystemExit(f"{run}: no member folders with pretrained/config.json")
    return sorted(found, key=lambda m: m[2].training["config"]["seed"])


def candidate(folder: str | Path):
    """A single-model run folder as a member ``(name, model, info)``."""
    return (Path(folder).name, *load_model(Path(folder) / "pretrained"))


def member_logits(member, val, stride_fraction: float = 0.5, aggregate: str | None = None) -> np.ndarray:
    """Fold-9 record logits of one member, with its window and a stride of ``stride_fraction`` windows."""
    _, model, info = member
    stride = None if info.window is None else max(int(info.window * stride_fraction), 1)
    return predict_logits(model, val, info.window, stride, aggregate or info.aggregate)


def average(logits: list[np.ndarray], how: str = "logit") -> np.ndarray:
    """Combine member scores: mean logit, mean probability, or mean per-label rank (all rank-equivalent to a score)."""
    stacked = np.stack(logits)
    if how == "logit":
        return stacked.mean(0)
    if how == "prob":
        return logit(np.clip(expit(stacked).mean(0), 1e-7, 1 - 1e-7))
    return np.stack([rankdata(s, axis=0) for s in stacked]).mean(0)


def whole_record_average(members, logits: list[np.ndarray], labels) -> np.ndarray:
    """Mean logit with ``labels`` scored by the whole-record members alone, as ``combine(whole_record_labels=...)``
    makes the ensemble do (the vote weights come from the same code)."""
    from ecgfm.models.ensemble import combine

    ensemble, _ = combine([(model, info) for _, model, info in members], whole_record_labels=labels)
    return ensemble.combine_logits([torch.from_numpy(l) for l in logits]).numpy()


def mean_member_correlation(logits: list[np.ndarray]) -> float:
    """Mean over member pairs and labels of the Pearson correlation of two members' record logits (agreement)."""
    pairs = [(a, b) for i, a in enumerate(logits) for b in logits[i + 1:]]
    return float(np.mean([np.corrcoef(a[:, k], b[:, k])[0, 1] for a, b in pairs for k in range(a.shape[1])]))


def score(Y: np.ndarray, S: np.ndarray) -> float:
    """Macro-AUC over the labels with >= MIN_POSITIVES positives (the project's target metric, on fold 9)."""
    keep = np.nansum(Y, axis=0) >= MIN_POSITIVES
    return float(np.nanmean(per_label_auc(Y[:, keep], S[:, keep])))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/bench-pretrain/default", help="an ensemble-recipe run folder")
    parser.add_argument("--extra", action="append", default=[], help="a candidate member's run folder (repeatable)")
    parser.add_argument("--alt", action="append", default=[], help="NAME=RUN: another run of the recipe (repeatable)")
    parser.add_argument("--reference", action="append", default=[], help="NAME=DIR: a released model folder scored "
                        "as it is, e.g. shipped=src/ecgfm/weights (repeatable)")
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "ensemble_choices.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    data = ptbxl_training_data(args.ptbxl, task="all", fs=100.0, min_count=10, test_folds=(), progress=False)
    Y = data.val.Y
    members = run_members(Path(args.run))
    base = [member_logits(m, data.val) for m in members]
    results: dict[str, float] = {f"member {m[0]}": score(Y, s) for m, s in zip(members, base)}
    results["member logit correlation"] = mean_member_correlation(base)
    for how in ("logit", "prob", "rank"):
        results[f"average {how}"] = score(Y, average(base, how))
    rhythm = data.label_groups.get("rhythm", [])
    results["rhythm statements from whole-record members (logit average)"] = score(
        Y, whole_record_average(members, base, rhythm))
    results["windows mean (logit average)"] = score(Y, average([member_logits(m, data.val, aggregate="mean")
                                                               for m in members]))
    results["quarter-window stride (logit average)"] = score(Y, average([member_logits(m, data.val, 0.25)
                                                                         for m in members]))
    for folder in args.extra:
        results[f"plus {Path(folder).name}"] = score(Y, average(base + [member_logits(candidate(folder), data.val)]))
    for spec in args.alt:
        name, _, folder = spec.partition("=")
        alt_members = run_members(Path(folder))
        alt = [member_logits(m, data.val) for m in alt_members]
        results.update({f"{name} member {m[0]}": score(Y, s) for m, s in zip(alt_members, alt)})
        results[f"{name} member logit correlation"] = mean_member_correlation(alt)
        results[f"{name} average logit"] = score(Y, average(alt))
        results[f"{name} + base members (logit average)"] = score(Y, average(base + alt))

    for spec in args.reference:
        name, _, folder = spec.partition("=")
        model, info = load_model(folder)
        if list(info.labels) != list(data.labels):
            raise SystemExit(f"--reference {spec}: its labels differ from this run's {len(data.labels)} labels")
        results[f"{name} ({folder})"] = score(Y, predict_logits(model, data.val, info.window, info.stride,
                                                                info.aggregate))

    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:{width}s}  {value:.5f}")
    document = {
        "benchmark": "ensemble_choices",
        "score": f"macro-AUC on PTB-XL fold 9 over statements with >= {MIN_POSITIVES} positives there "
                 f"({int((np.nansum(Y, axis=0) >= MIN_POSITIVES).sum())} labels, {len(Y)} ECGs); fold 10 not loaded",
        "command": command_line(argv),
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
        "wall_s": time.perf_counter() - start,
        "results": results,
    }
    write_result(args.out, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
