"""Reproducibility check: does a recipe, trained again, give back the shipped weights bit for bit?

Compares a run's ``pretrained/model.safetensors`` (``ecgfm pretrain --recipe NAME --out RUN``) with a reference
(default: the weights shipped in ``src/ecgfm/weights``) tensor by tensor with ``torch.equal``, and reports each
member's epochs and recorded training time (the last ``elapsed_s`` of its ``metrics.jsonl``, validation included)
beside the CPU the replay ran on. No fold is scored: equal weights give equal predictions.

For a recipe whose members train side by side (``jobs`` > 1) the training time is the wall time recorded in the
run's ``training_time.json``, not the sum of the members' times.

Run: ``ecgfm pretrain --ptbxl ../shared/data/ptbxl --recipe default8 --seed 0 --threads 2 --out runs/replay/default8``
then ``python experiments/replay.py --run runs/replay/default8 --out experiments/results/replay_default8.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, cpu_flags, write_result
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def compare_weights(run_weights: Path, reference_weights: Path) -> dict:
    """How many tensors (and values) of the run equal the reference's exactly, and the largest gap where not."""
    for path in (run_weights, reference_weights):
        if not path.is_file():
            raise SystemExit(f"{path}: no such weights file (a run folder of `ecgfm pretrain` holds "
                             "pretrained/model.safetensors; a reference folder holds model.safetensors)")
    run, reference = load_file(str(run_weights)), load_file(str(reference_weights))
    if run.keys() != reference.keys():
        missing, extra = sorted(reference.keys() - run.keys()), sorted(run.keys() - reference.keys())
        raise SystemExit(f"{run_weights}: tensor names differ from {reference_weights} "
                         f"(missing {missing[:5]}, extra {extra[:5]})")
    differing = {name: (run[name].double() - reference[name].double()).abs().max().item()
                 for name in reference if not torch.equal(run[name], reference[name])}
    return {"tensors": len(reference), "values": sum(t.numel() for t in reference.values()),
            "differing_tensors": len(differing), "max_abs_difference": max(differing.values(), default=0.0),
            "first_differing": dict(list(differing.items())[:10]), "bit_identical": not differing}


def member_times(run: Path) -> dict[str, dict]:
    """Epochs trained and recorded training seconds of each member folder (or of the run itself, for one model)."""
    logs = sorted(run.glob("*/metrics.jsonl")) or sorted(run.glob("metrics.jsonl"))
    members = {}
    for log in logs:
        epochs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if epochs:
            members[log.parent.name] = {"epochs": len(epochs), "train_s": epochs[-1]["elapsed_s"]}
    return members


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="example: python experiments/replay.py --run runs/replay/default8 "
               "--out experiments/results/replay_default8.json")
    parser.add_argument("--run", required=True, help="run folder of the replay (holds pretrained/model.safetensors)")
    parser.add_argument("--reference", default=str(REPO / "src" / "ecgfm" / "weights"),
                        help="folder with the model.safetensors to match (default: the shipped weights)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "replay.json"))
    args = parser.parse_args(argv)
    run = Path(args.run)
    comparison = compare_weights(run / "pretrained" / "model.safetensors", Path(args.reference) / "model.safetensors")
    members = member_times(run)
    clock = json.loads((run / "training_time.json").read_text()) if (run / "training_time.json").exists() else None
    parallel = clock is not None and any(row["jobs"] > 1 for row in clock["invocations"])
    train_min = (clock["wall_s"] if parallel else sum(m["train_s"] for m in members.values())) / 60
    print(f"{comparison['tensors']} tensors: {comparison['differing_tensors']} differ "
          f"(max |difference| {comparison['max_abs_difference']:.3g}); "
          f"{len(members)} members trained in {train_min:.1f} min" + (" (wall time, side by side)" if parallel else ""))
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    write_result(args.out, {
        "benchmark": "replay", "command": command_line(argv), "run": str(run), "reference": args.reference,
        "recipe": config.get("extra", {}).get("recipe"), "comparison": comparison, "members": members,
        "train_min": train_min, "training_clock": clock,
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_flags(),
                        "cpu_count": os.cpu_count()},
    })


if __name__ == "__main__":
    main()
