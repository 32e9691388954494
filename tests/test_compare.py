"""The fine-tune vs scratch vs embeddings comparison: identical splits, statistics, resumability, reports."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_transfer_finetune import novel_dataset, tiny_foundation

import ecgfm.transfer.compare as cmp
from ecgfm.datasets import LabelledSet
from ecgfm.evaluation.delong import delong_test
from ecgfm.transfer.analysis import median_interval, target_checks
from ecgfm.transfer.compare import (CompareConfig, Comparison, cell_path, load_cell, run_comparison, save_cell, slug,
                                    training_meta)
from ecgfm.transfer.config import FinetuneConfig, quick_config
from ecgfm.transfer.report import write_compare_report


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def labelled(n_patients=100, seed=0) -> LabelledSet:
    data = novel_dataset(n_patients=n_patients, seed=seed)
    split = np.where(data.folds >= 9, "test", "train")  # 20 % of patients held out
    return dataclasses.replace(data.with_split(split), source={"kind": "synthetic"})


def config(**kw) -> CompareConfig:
    ft = FinetuneConfig.for_strategy(epochs=2, patience=None, warmup_epochs=1, min_epoch_samples=16, batch_size=16,
                                     device="cpu")
    return CompareConfig(**{"labels": ["NEW1"], "sizes": [4, "all"], "seeds": [0], "neg_ratio": 2.0,
                            "finetune": ft, "n_bootstrap": 100, **kw})


def with_train(finetune: FinetuneConfig, **changes) -> FinetuneConfig:
    return dataclasses.replace(finetune, train=dataclasses.replace(finetune.train, **changes))


def test_slug_and_cell_round_trip(tmp_path):
    assert slug("DIG") == "DIG" and slug("LAO/LAE").startswith("LAO_LAE-") and slug("LAO/LAE") != slug("LAO_LAE")
    path = cell_path(tmp_path, "LAO/LAE", 10, 0, "test", "finetune-abc")
    save_cell(path, np.array([0.1, 0.9]), np.array([4, 7]), {"arm": "finetune", "x": 1.5})
    scores, index, meta = load_cell(path)
    assert scores.tolist() == [0.1, 0.9] and index.tolist() == [4, 7] and meta == {"arm": "finetune", "x": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["finetune-abc.npz"]  # no temporary file left behind


def test_arm_keys_follow_the_recipe_not_the_runtime():
    base = config()
    assert base.arm_key("finetune").startswith("finetune-") and base.arm_key("scratch").startswith("scratch-")
    same = config(finetune=with_train(base.finetune, device="cuda", num_threads=4, progress=True))
    assert same.arm_key("finetune") == base.arm_key("finetune") and same.arm_key("scratch") == base.arm_key("scratch")
    other = config(finetune=dataclasses.replace(with_train(base.finetune, lr=3e-3), warmup_epochs=0))
    assert other.arm_key("finetune") != base.arm_key("finetune")
    assert other.arm_key("scratch") == base.arm_key("scratch")  # the scratch arm ignores the fine-tuning recipe
    longer = config(finetune=with_train(base.finetune, epochs=5))
    assert longer.arm_key("scratch") != base.arm_key("scratch") and longer.scratch.train.epochs == 5
    # the scratch arm: the fine-tuning arm's budget with the pre-training recipe
    scratch = base.scratch
    assert scratch.strategy == "scratch" and (scratch.train.lr, scratch.train.schedule) == (1e-2, "onecycle")
    assert (scratch.train.batch_size, scratch.train.patience, scratch.min_epoch_samples) == (16, None, 16)
    assert CompareConfig.from_dict(json.loads(json.dumps(base.to_dict()))) == base


def test_quick_preset():
    quick = quick_config(["DIG"], seeds=[0, 1])
    assert quick.sizes == [10, 25] and quick.seeds == [0, 1] and quick.n_bootstrap == 500
    assert (quick.finetune.train.epochs, quick.finetune.train.patience, quick.finetune.warmup_epochs) == (12, 4, 2)
    assert (quick.scratch.train.epochs, quick.scratch.train.patience) == (12, 4)


def test_fixed_comparison_statistics_and_outputs(tmp_path):
    data = labelled()
    cfg = config()
    result = run_comparison(tiny_foundation(), data, cfg, tmp_path)
    assert not (tmp_path / "report.html").exists()  # the caller writes the report
    paths = write_compare_report(result, tmp_path, command="ecgfm compare ...")
    assert {p.name for p in paths.values()} == {"compare.json", "summary.csv", "per_seed.csv", "table.md",
                                                "data_efficiency.png", "report.html"}
    assert [r["size"] for r in result.summary] == [4, "all"]
    test = np.flatnonzero(data.split == "test")
    y = data.Y[test, 0]
    for row in result.per_seed:
        scores = {}
        for arm in ("finetune", "scratch", "embeddings"):
            s, index, meta = load_cell(cell_path(tmp_path, "NEW1", row["size"], 0, "test", cfg.arm_key(arm)))
            assert np.array_equal(index, test)  # every arm scored on the same held-out records
            scores[arm] = s
            assert row[f"auc_{arm}"] == pytest.approx(roc_auc_score(y, s))
            assert row[f"auc_{arm}_ci_low"] <= row[f"auc_{arm}"] + 1e-9
            assert row[f"auc_{arm}_ci_high"] >= row[f"auc_{arm}"] - 1e-9
        reference = delong_test(y, scores["finetune"], scores["scratch"])
        assert row["p_delong_finetune_scratch"] == pytest.approx(reference.p_value)
        assert row["diff_finetune_scratch"] == pytest.approx(reference.diff)
    small = result.summary[0]
    assert small["train_pos_patients"] == 4 and small["train_records"] == 4 * 3 * 2  # 4 pos + 8 neg patients x 2 ECGs
    assert small["test_pos"] == int(y.sum()) and small["seeds"] == 1
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("| Label | Diagnosis | Train positives")
    assert "| NEW1 | first new finding | 4 |" in table and "all (" in table
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "ecgfm compare ..." in html and "Per seed" in html
    document = json.loads((tmp_path / "compare.json").read_text())
    assert document["schema"] == "ecgfm.compare/1" and len(document["summary"]) == 2
    assert len(pd.read_csv(tmp_path / "per_seed.csv")) == 2


def test_training_sets_are_identical_across_arms_and_disjoint_from_test(tmp_path, monkeypatch):
    seen = []
    real = cmp.finetune

    def spy(foundation, train, val, config, **kwargs):
        seen.append((config.strategy, tuple(train.ids), tuple(val.ids)))
        return real(foundation, train, val, config, **kwargs)

    monkeypatch.setattr(cmp, "finetune", spy)
    data = labelled()
    run_comparison(tiny_foundation(), data, config(arms=["finetune", "scratch"], sizes=[4]), tmp_path)
    (s1, train1, val1), (s2, train2, val2) = seen
    assert (s1, s2) == ("full", "scratch") and train1 == train2 and val1 == val2
    test_patients = set(data.patient_ids[data.split == "test"])
    used = set(data.patient_ids[np.isin(data.ids, train1 + val1)])
    assert used and not used & test_patients


def test_killed_comparison_resumes_only_missing_cells(tmp_path, monkeypatch):
    data = labelled()
    cfg = config(sizes=[4, 8])
    reference = run_comparison(tiny_foundation(), data, cfg, tmp_path / "reference")

    class Kill(RuntimeError):
        pass

    def killer(done, total, cell, event):
        if event == "start" and done == 3:
            raise Kill()

    comparison = Comparison(tiny_foundation(), data, cfg, tmp_path / "killed")
    with pytest.raises(Kill):
        comparison.run(progress=killer)
    assert len(list((tmp_path / "killed" / "cells").rglob("*.npz"))) == 3
    calls = []
    real = cmp.finetune
    monkeypatch.setattr(cmp, "finetune", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = run_comparison(tiny_foundation(), data, cfg, tmp_path / "killed")
    assert len(calls) == 2  # size 8: finetune + scratch; the three finished cells were reused
    for a, b in zip(reference.per_seed, resumed.per_seed):
        for key in ("auc_finetune", "auc_scratch", "auc_embeddings"):
            assert a[key] == pytest.approx(b[key]), key  # same result as the uninterrupted run
    calls.clear()
    run_comparison(tiny_foundation(), data, cfg, tmp_path / "killed")
    assert not calls
    # another fine-tuning recipe in the same folder trains only its own arm; scratch and embeddings are reused
    other = config(sizes=[4], finetune=with_train(cfg.finetune, lr=3e-3))
    run_comparison(tiny_foundation(), data, other, tmp_path / "killed")
    assert len(calls) == 1
    with pytest.raises(ValueError, match="neg_ratio|settings"):
        run_comparison(tiny_foundation(), data, config(sizes=[4, 8], neg_ratio=3.0), tmp_path / "killed")
    with pytest.raises(ValueError, match="foundation_weights"):
        run_comparison(tiny_foundation(seed=1), data, cfg, tmp_path / "killed")


def test_cross_validation_pools_out_of_fold_predictions(tmp_path):
    data = labelled(n_patients=60)
    cfg = config(split="cv", cv_folds=3, sizes=[3], seeds=[0, 1], arms=["finetune", "embeddings"])
    result = run_comparison(tiny_foundation(), data, cfg, tmp_path)
    row = result.summary[0]
    assert row["test_pos"] + row["test_neg"] == len(data)  # every record tested once per repeat
    assert row["test_pos"] == int(data.Y[:, 0].sum()) and row["seeds"] == 2
    folds = [load_cell(cell_path(tmp_path, "NEW1", 3, 0, f"f{k}", cfg.arm_key("finetune")))[1] for k in range(3)]
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(data)))
    assert "diff_finetune_embeddings" in row and "diff_finetune_scratch" not in row


def test_sizes_beyond_the_pool_are_skipped_and_reported(tmp_path):
    data = labelled()
    result = run_comparison(tiny_foundation(), data, config(sizes=[4, 500], arms=["embeddings"]), tmp_path)
    assert [r["size"] for r in result.summary] == [4]
    assert result.skipped[0]["size"] == 500 and "positive patients" in result.skipped[0]["reason"]
    assert "Sizes not run" in write_compare_report(result, tmp_path)["html"].read_text()


def test_labels_seen_by_the_foundation_are_refused(tmp_path):
    data = labelled()
    with pytest.raises(ValueError, match="not novel labels"):
        Comparison(tiny_foundation(labels=("NEW1", "OLD")), data, config(), tmp_path)
    Comparison(tiny_foundation(labels=("NEW1", "OLD")), data, config(allow_seen_labels=True), tmp_path)


def test_median_interval_over_seeds_uses_shared_resamples():
    reps = [np.array([0.6, 0.7, 0.8, np.nan]), np.array([0.7, 0.8, 0.9, np.nan]), np.array([0.5, 0.9, 1.0, 0.7])]
    low, high = median_interval(reps, 0.5)
    medians = np.array([0.6, 0.8, 0.9, 0.7])  # per resample; the last has one defined seed
    assert (low, high) == pytest.approx(tuple(np.quantile(medians, [0.25, 0.75])))


def test_target_checks_report_where_scratch_wins():
    rows = [{"label": "A", "size": 10, "train_pos_patients": 10, "diff_finetune_scratch": 0.2,
             "diff_finetune_scratch_ci_low": 0.05, "diff_finetune_scratch_ci_high": 0.3},
            {"label": "A", "size": "all", "train_pos_patients": 40, "diff_finetune_scratch": -0.01,
             "diff_finetune_scratch_ci_low": -0.1, "diff_finetune_scratch_ci_high": 0.08},
            {"label": "B", "size": 10, "train_pos_patients": 10, "diff_finetune_scratch": 0.1,
             "diff_finetune_scratch_ci_low": -0.02, "diff_finetune_scratch_ci_high": 0.2}]
    checks = target_checks(rows, config())
    assert checks["finetune_higher_at_smallest_on_all_labels"]
    assert checks["labels_with_ci_excluding_zero_at_smallest"] == 1
    assert checks["sizes_where_scratch_beats_finetune"] == [{"label": "A", "size": "all", "diff": -0.01}]


def test_analyse_refuses_arms_scored_on_different_records(tmp_path):
    data = labelled()
    cfg = config(sizes=[4], arms=["finetune", "scratch"])
    comparison = Comparison(tiny_foundation(), data, cfg, tmp_path)
    comparison.run()
    path = cell_path(tmp_path, "NEW1", 4, 0, "test", cfg.arm_key("scratch"))
    scores, index, meta = load_cell(path)
    save_cell(path, scores[1:], index[1:], meta)
    with pytest.raises(ValueError, match="different test records"):
        comparison.analyse()


def test_training_meta_counts_gradient_epochs_and_the_kept_model():
    from types import SimpleNamespace

    def result(selected, best, stages):
        history = [{"stage": s, "epoch": e} for s, n in stages for e in range(0 if s == "probe" else 1, n + 1)]
        info = SimpleNamespace(training={"selected_stage": selected, "stage_best_epochs": best, "best_epoch": 99})
        return SimpleNamespace(info=info, history=history)

    probe_kept = training_meta(result("probe", {"probe": 0, "final": 3}, [("probe", 0), ("final", 9)]))
    assert probe_kept == {"epochs_run": 9, "best_epoch": 0, "final_stage_epochs": 9, "selected_stage": "probe",
                          "selected_recipe": None, "candidates_val_macro_auc": None}
    tuned = training_meta(result("final", {"probe": 0, "final": 4}, [("probe", 0), ("final", 9)]))
    assert tuned["best_epoch"] == 4 and tuned["epochs_run"] == 9
    warm = training_meta(result("final", {"warmup": 2, "final": 5}, [("warmup", 3), ("final", 10)]))
    assert warm["best_epoch"] == 3 + 5 and warm["epochs_run"] == 13
    assert training_meta(result("warmup", {"warmup": 2, "final": 5}, [("warmup", 3), ("final", 6)]))["best_epoch"] == 2
    both = result("final", {"warmup": 1, "final": 2}, [("probe", 0), ("final", 9)])  # the whole-body candidate kept
    both.history += [{"candidate": "whole body", "stage": s, "epoch": e} for s, n in [("warmup", 2), ("final", 4)]
                     for e in range(1, n + 1)]
    both.info.training.update(selected_recipe="whole body", candidates_val_macro_auc={"fine-tuned": 0.8, "whole body": 0.9})
    assert training_meta(both) | {"candidates_val_macro_auc": None} == {
        "epochs_run": 6, "best_epoch": 2 + 2, "final_stage_epochs": 4, "selected_stage": "final",
        "selected_recipe": "whole body", "candidates_val_macro_auc": None}
