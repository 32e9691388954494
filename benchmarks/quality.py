"""Benchmark: signal-quality checks (``ecgfm.signal.quality``) on clean and synthetically corrupted PTB-XL records.

Method. Records of PTB-XL (``$ECGFM_PTBXL_DIR``) at 500 Hz where the file exists, else the 100 Hz file resampled to
500 Hz (so every corruption, 50/60 Hz included, can be represented); thresholds were chosen on folds 1-9 ("tune") and
the targets are read on fold 10 ("test"). Each record gets each corruption at a stated severity, seeded by its ecg_id:

* zeroed_lead: one lead (chosen at random) set to 0;
* clipped_2mV: every lead clipped at +-2 mV (only records with a lead exceeding +-2 mV in at least 3 separate
  excursions are changed enough to show it: detection is reported over those, and the share of records they are);
* swapped_la_ra: the six limb leads as an LA/RA-reversed recording shows them (I' = -I, II' = III, III' = II,
  aVR' = aVL, aVL' = aVR, aVF' = aVF);
* powerline_50hz / _60hz: a 0.2 mV-amplitude sine (random phase) added to each recorded lead (I, II, V1-V6);
* baseline_wander: a 1 mV-amplitude (2 mV peak-to-peak) 0.3 Hz sine (random phase) added to each recorded lead;
* white_noise_0db: Gaussian white noise with the power of each recorded lead (SNR 0 dB).

For the additive corruptions III, aVR, aVL and aVF are then recomputed from the corrupted I and II, as the recording
device derives them (PTB-XL's limb leads obey Einthoven to 0.2%), so a corruption is not detected merely because it
broke Einthoven's law. Extra corruptions without a target (LA/LL and RA/LL reversal, chest-lead swaps, gain x5, x10
and x0.1, milder wander and noise) show what the checks can and cannot see. Clean records are also checked at their
native rate (100 Hz records at 100 Hz). On folds 1-9 every clean record is checked and every 4th record corrupted
(``--tune-every``); on fold 10 every record gets every corruption. External records: the CPSC 2018 folder (genuine,
some truly noisy): flag rate
only. Timing: median over repeats of ``assess_quality`` on 10-s 500 Hz records, one core.

Run: ``python benchmarks/quality.py`` (writes ``benchmarks/results/quality.json``; about 10 minutes on two cores,
raw records cached under ``/tmp/trust-cache``); ``--quick`` for a smoke run; ``--fit-reconstruction`` prints the
chest-to-limb lead map stored in ``ecgfm.signal.quality.LIMB_FROM_CHEST``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, write_result  # noqa: E402
from trust_data import CACHE, cpsc_paths  # noqa: E402

from ecgfm import ECG, STANDARD_LEADS  # noqa: E402
from ecgfm.signal import bandpass, resample  # noqa: E402
from ecgfm.signal.quality import assess_quality  # noqa: E402
from ecgfm.signal.quality_base import FILTER_BAND_HZ  # noqa: E402

FS = 500
RECORDED = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1-V6: what devices record; III, aVR, aVL, aVF are derived
#: The check meant to catch each targeted corruption (detection is also reported for "any check").
INTENDED = {"zeroed_lead": "flat_leads", "clipped_2mV": "clipping", "swapped_la_ra": "limb_reversal",
            "powerline_50hz": "powerline", "powerline_60hz": "powerline", "baseline_wander": "baseline_wander",
            "white_noise_0db": "high_frequency_noise"}


def load_ptbxl(limit: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All PTB-XL records at 500 Hz (100 Hz files resampled) as a memory map ``(N, 12, 5000)`` plus ids/folds/rates."""
    from ecgfm.datasets.ptbxl import PTBXL

    path, meta_path = CACHE / "ptbxl_raw500.npy", CACHE / "ptbxl_raw500_meta.npz"
    if not path.exists() or not meta_path.exists():
        root = PTBXL()
        meta = root.metadata[root.available]
        CACHE.mkdir(parents=True, exist_ok=True)
        X = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32,
                                      shape=(len(meta), 12, 10 * FS))
        native = np.zeros(len(meta), np.int16)
        for k, ecg_id in enumerate(meta.index):
            ecg = root.read_record(ecg_id, fs=FS)
            X[k] = (ecg.signal if ecg.fs == FS else resample(ecg.signal, ecg.fs, FS))[:, : 10 * FS]
            native[k] = int(ecg.fs)
        X.flush()
        del X
        path.with_suffix(".tmp.npy").rename(path)
        np.savez(meta_path, ids=meta.index.values, folds=meta.strat_fold.values, native=native,
                 patients=meta.patient_id.values)
    X = np.load(path, mmap_mode="r")
    with np.load(meta_path) as data:
        meta = {key: data[key] for key in data.files}
    if limit:
        keep = np.concatenate([np.flatnonzero(meta["folds"] == f)[: max(1, limit // 10)] for f in range(1, 11)])
        return X[keep], {key: value[keep] for key, value in meta.items()}
    return X, meta


# --- corruptions (x: float64 (12, n) in STANDARD_LEADS order, 500 Hz) ---------------------------------------------
def derive_limb(y: np.ndarray) -> np.ndarray:
    """Recompute III, aVR, aVL, aVF from I and II in place, as the recording device does."""
    lead_i, lead_ii = y[0], y[1]
    y[2], y[3], y[4], y[5] = lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2
    return y


def add_to_recorded(x: np.ndarray, noise: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[RECORDED] += noise
    return derive_limb(y)


def sine(x: np.ndarray, rng, hz: float, amplitude: float) -> np.ndarray:
    t = np.arange(x.shape[1]) / FS
    return amplitude * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi, (len(RECORDED), 1)))


def white_noise(x: np.ndarray, rng, snr_db: float) -> np.ndarray:
    sd = x[RECORDED].std(axis=1, keepdims=True) / 10 ** (snr_db / 20)
    return add_to_recorded(x, rng.standard_normal((len(RECORDED), x.shape[1])) * sd)


def permute_limb(x: np.ndarray, swap: str) -> np.ndarray:
    """The six limb leads as a recording with two limb cables interchanged shows them."""
    y = x.copy()
    lead_i, lead_ii, lead_iii, avr, avl, avf = x[:6]
    if swap == "la_ra":
        y[:6] = -lead_i, lead_iii, lead_ii, avl, avr, avf
    elif swap == "la_ll":
        y[:6] = lead_ii, lead_i, -lead_iii, avr, avf, avl
    elif swap == "ra_ll":
        y[:6] = -lead_iii, -lead_ii, -lead_i, avf, avl, avr
    return y


def swap_chest(x: np.ndarray, a: int, b: int) -> np.ndarray:
    y = x.copy()
    y[5 + a], y[5 + b] = x[5 + b], x[5 + a]
    return y


def zero_lead(x: np.ndarray, rng) -> np.ndarray:
    y = x.copy()
    y[rng.integers(12)] = 0.0
    return y


CORRUPTIONS = {
    "zeroed_lead": zero_lead,
    "clipped_2mV": lambda x, rng: np.clip(x, -2.0, 2.0),
    "swapped_la_ra": lambda x, rng: permute_limb(x, "la_ra"),
    "powerline_50hz": lambda x, rng: add_to_recorded(x, sine(x, rng, 50.0, 0.2)),
    "powerline_60hz": lambda x, rng: add_to_recorded(x, sine(x, rng, 60.0, 0.2)),
    "baseline_wander": lambda x, rng: add_to_recorded(x, sine(x, rng, 0.3, 1.0)),
    "white_noise_0db": lambda x, rng: white_noise(x, rng, 0.0),
}
EXTRA = {
    "swapped_ra_ll": lambda x, rng: permute_limb(x, "ra_ll"),
    "swapped_la_ll": lambda x, rng: permute_limb(x, "la_ll"),
    "swapped_V1_V2": lambda x, rng: swap_chest(x, 1, 2),
    "swapped_V1_V3": lambda x, rng: swap_chest(x, 1, 3),
    "swapped_V2_V5": lambda x, rng: swap_chest(x, 2, 5),
    "gain_x5": lambda x, rng: 5 * x,
    "gain_x10": lambda x, rng: 10 * x,
    "gain_x0.1": lambda x, rng: 0.1 * x,
    "baseline_wander_0.5mV": lambda x, rng: add_to_recorded(x, sine(x, rng, 0.3, 0.5)),
    "white_noise_10db": lambda x, rng: white_noise(x, rng, 10.0),
    "powerline_50hz_0.05mV": lambda x, rng: add_to_recorded(x, sine(x, rng, 50.0, 0.05)),
}


def clip_affected(x: np.ndarray) -> bool:
    """Whether clipping at +-2 mV changes the record visibly: some lead exceeds the rail in >= 3 separate places."""
    over = np.abs(x) > 2.0
    starts = over[:, 1:] & ~over[:, :-1]
    return bool(((starts.sum(axis=1) + over[:, 0]) >= 3).any())


def assess(x: np.ndarray, fs: float = FS):
    return assess_quality(ECG(x.astype(np.float32), fs, STANDARD_LEADS))


def run_split(X, meta, mask, corruptions, progress: str, corrupt_every: int = 1) -> dict:
    """Per corruption: detection by any check and by the intended one, and which checks fired; clean flag rates.

    Clean records are all checked; corruptions only on every ``corrupt_every``-th record (to bound the run time)."""
    rows = np.flatnonzero(mask)
    fired = {name: Counter() for name in ["clean", "clean_native", *corruptions]}
    detected = {name: [] for name in fired}
    intended = {name: [] for name in corruptions}
    named = {name: [] for name in ("swapped_la_ra", "swapped_ra_ll") if name in corruptions}
    affected = []
    for count, k in enumerate(rows):
        x = np.asarray(X[k], dtype=np.float64)
        for name in ["clean", *(corruptions if count % corrupt_every == 0 else ())]:
            y = x if name == "clean" else corruptions[name](x, np.random.default_rng(int(meta["ids"][k])))
            report = assess(y)
            detected[name].append(not report.ok)
            fired[name].update(report.failed)
            if name in INTENDED:
                intended[name].append(INTENDED[name] in report.failed)
            if name in named and report["limb_reversal"].failed:
                named[name].append(name.split("_", 1)[1].replace("_", "/").upper() in report["limb_reversal"].message)
            if name == "clipped_2mV":
                affected.append(clip_affected(x))
        native = int(meta["native"][k])
        y = x if native == FS else resample(x.astype(np.float32), FS, native)
        report = assess(y, native)
        detected["clean_native"].append(not report.ok)
        fired["clean_native"].update(report.failed)
        if progress and count % 200 == 0:
            print(f"{progress}: {count}/{rows.size}", flush=True)
    out = {}
    affected = np.array(affected)
    for name in fired:
        hits = np.array(detected[name])
        entry = {"records": int(hits.size), "flagged": float(hits.mean()),
                 "checks_fired": {check: n / hits.size for check, n in fired[name].most_common()}}
        if name in intended:
            entry["detected_by_intended_check"] = float(np.mean(intended[name]))
        if name in named:
            entry["swap_named_correctly_when_flagged"] = float(np.mean(named[name])) if named[name] else None
        if name == "clipped_2mV":
            entry.update(changed_records=int(affected.sum()), changed_share=float(affected.mean()),
                         flagged_among_changed=float(hits[affected].mean()),
                         intended_among_changed=float(np.array(intended[name])[affected].mean()),
                         flagged_among_unchanged=float(hits[~affected].mean()) if (~affected).any() else None)
        out[name] = entry
    return out


def run_cpsc() -> dict:
    """Flag rate on the genuine CPSC records (whole record), with the checks that fired."""
    from ecgfm import read

    paths = cpsc_paths()
    fired, flagged, failures = Counter(), [], []
    for path in paths:
        try:
            ecg = read(path)
        except Exception as exc:  # noqa: BLE001 - counted and reported: the reader is another issue's work
            failures.append(f"{path.name}: {exc}")
            continue
        report = assess_quality(ecg)
        flagged.append(not report.ok)
        fired.update(report.failed)
    n = len(flagged)
    return {"records": n, "unreadable": failures, "flagged": float(np.mean(flagged)) if n else None,
            "checks_fired": {check: c / n for check, c in fired.most_common()}}


def time_assess(X, repeats: int = 5, n: int = 100) -> dict:
    ecgs = [ECG(np.asarray(X[k]), FS, STANDARD_LEADS) for k in range(min(n, len(X)))]
    per_record, cpu_per_record = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for ecg in ecgs:
            assess_quality(ecg)
        per_record.append((time.perf_counter() - start) / len(ecgs) * 1000)
        cpu_per_record.append((time.process_time() - cpu) / len(ecgs) * 1000)
    return {"records": len(ecgs), "record": "10 s, 12 leads, 500 Hz", "repeats": repeats,
            "ms_per_record": per_record, "median_ms_per_record": statistics.median(per_record),
            "cpu_ms_per_record": cpu_per_record, "median_cpu_ms_per_record": statistics.median(cpu_per_record),
            "load_average_1min": os.getloadavg()[0]}


def fit_reconstruction(X, meta, n: int = 1000, seed: int = 1) -> np.ndarray:
    """Least-squares map from V1..V6 to I and II (FILTER_BAND_HZ, every 5th sample) on ``n`` records of folds 1-8."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(meta["folds"] <= 8), n, replace=False)
    chest, limb = [], []
    for k in rows:
        filtered = bandpass(np.asarray(X[k]), FS, *FILTER_BAND_HZ, order=2)[:, ::5]
        chest.append(filtered[6:].T)
        limb.append(filtered[:2].T)
    weights, *_ = np.linalg.lstsq(np.concatenate(chest), np.concatenate(limb), rcond=None)
    return weights.T


#: Corruptions drawn in docs/trust.md, on one genuine fold-10 record (500 Hz file).
FIGURES = ("clean", "zeroed_lead", "swapped_la_ra", "white_noise_0db", "baseline_wander", "clipped_2mV")


def draw_examples(out_dir: str | Path, ecg_id: int = 1850, dpi: int = 55) -> list[Path]:
    """PNGs of one PTB-XL record clean and corrupted, titled with what ``assess_quality`` says about each."""
    from ecgfm.datasets.ptbxl import PTBXL
    from ecgfm.plotting.ecg import plot_ecg

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ecg = PTBXL().read_record(ecg_id, fs=FS)
    x = ecg.signal.astype(np.float64)
    paths = []
    for name in FIGURES:
        y = x if name == "clean" else CORRUPTIONS[name](x, np.random.default_rng(ecg_id))
        report = assess(y)
        verdict = "ok" if report.ok else "; ".join(report.problems)
        title = textwrap.fill(f"PTB-XL {ecg_id}, {name.replace('_', ' ')}: {verdict}", 120)
        fig = plot_ecg(y, FS, STANDARD_LEADS, title=title, row_inches=0.5, width_inches=11.0)
        path = out_dir / f"quality_{name}.png"
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 records per split, no CPSC")
    parser.add_argument("--fit-reconstruction", action="store_true", help="print the chest-to-limb map and exit")
    parser.add_argument("--tune-every", type=int, default=4,
                        help="corrupt every Nth record of folds 1-9 (all clean records are checked)")
    parser.add_argument("--figures", metavar="DIR", help="draw the example figures of docs/trust.md into DIR and exit")
    parser.add_argument("--timing-only", action="store_true",
                        help="re-measure the timing and update it in an existing result file")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "quality.json"))
    args = parser.parse_args(argv)
    if args.figures:
        for path in draw_examples(args.figures):
            print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
        return
    X, meta = load_ptbxl(limit=200 if args.quick else None)
    if args.timing_only:
        result = json.loads(Path(args.out).read_text())
        result["timing"] = time_assess(X)
        write_result(args.out, result)
        print(result["timing"])
        return
    if args.fit_reconstruction:
        print(np.array2string(fit_reconstruction(X, meta), precision=3, separator=", "))
        return
    corruptions = {**CORRUPTIONS, **EXTRA}
    result = {"benchmark": "ecgfm.signal.quality.assess_quality on clean and corrupted PTB-XL records",
              "command": command_line(argv), "cpu": _cpu_name(),
              "python": platform.python_version(), "timing": time_assess(X)}
    for split, mask, every in (("tune_folds_1_9", meta["folds"] <= 9, args.tune_every),
                               ("test_fold_10", meta["folds"] == 10, 1)):
        result[split] = run_split(X, meta, mask, corruptions, progress=split, corrupt_every=every)
    result["tune_folds_1_9"]["note"] = (f"clean records: all; corruptions: every {args.tune_every}th record "
                                        "(run time on a shared two-core machine)")
    if not args.quick:
        result["cpsc"] = run_cpsc()
    test = result["test_fold_10"]
    result["targets"] = {
        "clean_fold10_flagged": test["clean"]["flagged"],
        "clean_fold10_flagged_at_native_rate": test["clean_native"]["flagged"],
        **{name: test[name]["flagged_among_changed" if name == "clipped_2mV" else "flagged"] for name in CORRUPTIONS},
    }
    write_result(args.out, result)
    for key, value in result["targets"].items():
        print(f"{key:40s} {value:.3f}")


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
