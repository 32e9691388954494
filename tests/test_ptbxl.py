"""PTB-XL dataset: metadata, rate fallback, label tasks (any likelihood counts), summary, ``load`` and its cache.

Most tests run on a small PTB-XL-shaped folder the fixtures generate; ``ptbxl``-marked ones check the shared subset.
"""
import ast
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

import ecgfm
from ecgfm.datasets import ptbxl as ptbxl_module
from ecgfm.datasets.ptbxl import PTBXL, split_of_fold
from ecgfm.signal import Pipeline


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def expected_summary(root):
    """What the summary must say, computed straight from the CSV and the file system."""
    meta = pd.read_csv(root / "ptbxl_database.csv")
    has = {rate: np.array([(root / f"{name}.hea").exists() and (root / f"{name}.dat").exists()
                           for name in meta[column]])
           for rate, column in ((500, "filename_hr"), (100, "filename_lr"))}
    split = meta["strat_fold"].map(lambda f: "train" if f <= 8 else "val" if f == 9 else "test")
    return {
        "records": len(meta), "patients": meta["patient_id"].nunique(),
        "records_500hz": int(has[500].sum()), "records_100hz": int(has[100].sum()),
        "records_both_rates": int((has[500] & has[100]).sum()),
        "records_500hz_only": int((has[500] & ~has[100]).sum()),
        "records_100hz_only": int((has[100] & ~has[500]).sum()),
        "records_missing": int((~has[500] & ~has[100]).sum()),
        "records_per_split": {s: int((split == s).sum()) for s in ("train", "val", "test")},
        "records_per_fold": {int(k): int(v) for k, v in meta["strat_fold"].value_counts().sort_index().items()},
    }, meta, split, has[500] | has[100]


def test_errors_for_a_folder_that_is_not_ptbxl(tmp_path, monkeypatch):
    monkeypatch.delenv("ECGFM_PTBXL_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="ECGFM_PTBXL_DIR"):
        PTBXL()
    with pytest.raises(FileNotFoundError, match="ptbxl_database.csv not found"):
        PTBXL(tmp_path)


def test_summary_matches_the_csv(fake_ptbxl):
    summary = PTBXL(fake_ptbxl).summary("superdiagnostic")
    expected, *_ = expected_summary(fake_ptbxl)
    assert {k: summary[k] for k in expected} == expected
    assert expected["records_missing"] == 1 and summary["missing_ids"] == [10]
    # record 10 (IMI, fold 10) has no file: counts cover records with a signal file only
    assert summary["label_counts"]["MI"] == {"description": "myocardial infarction", "train": 3, "val": 0, "test": 0,
                                             "total": 3}


def test_rate_fallback(fake_ptbxl):
    data = PTBXL(fake_ptbxl)
    assert data.record_path(1, fs=100)[1] == 500  # only 500 Hz present
    assert data.record_path(2, fs=500)[1] == 100  # only 100 Hz present
    assert data.record_path(3, fs=100)[1] == 100 and data.record_path(3, fs=500)[1] == 500
    # never upsample when a higher rate exists: 250 Hz comes from the 500 Hz file, 50 Hz from the 100 Hz one
    assert data.record_path(3, fs=250)[1] == 500 and data.record_path(3, fs=50)[1] == 100
    assert data.record_path(3, fs=1000)[1] == 500
    assert data.record_path(10) is None
    with pytest.raises(FileNotFoundError, match="record 10 has no signal file"):
        data.read_record(10)


def test_read_record_carries_ptbxl_metadata(fake_ptbxl):
    ecg = PTBXL(fake_ptbxl).read_record(3, fs=100)
    assert ecg.fs == 100 and ecg.n_samples == 1000 and ecg.leads == ecgfm.STANDARD_LEADS
    assert ecg.meta["record_id"] == "3" and ecg.meta["patient_id"] == "102" and ecg.meta["strat_fold"] == 2
    assert ecg.meta["age"] == 43.0 and ecg.meta["sex"] == "F" and ecg.meta["scp"] == ["IMI", "PVC", "SR"]


def test_label_tasks_count_any_likelihood_including_zero(fake_ptbxl):
    data = PTBXL(fake_ptbxl)
    assert data.labels("all")[5] == {"ASMI", "NDT", "SR"}  # every likelihood is 0.0 in record 5
    assert data.labels("diagnostic")[5] == {"ASMI", "NDT"}
    assert data.labels("form")[5] == {"NDT"}
    assert data.labels("rhythm")[5] == {"SR"}
    assert data.labels("subdiagnostic")[5] == {"AMI", "STTC"}
    assert data.labels("superdiagnostic")[5] == {"MI", "STTC"}
    assert data.labels("form")[3] == {"PVC"}
    with pytest.raises(ValueError, match="unknown PTB-XL task"):
        data.labels("everything")


def test_label_counts_and_names(fake_ptbxl):
    data = PTBXL(fake_ptbxl)
    counts = data.label_counts("rhythm")
    assert counts.loc["SR"].to_dict() == {"train": 5, "val": 1, "test": 1, "total": 7}
    assert counts.loc["AFIB"].to_dict() == {"train": 1, "val": 1, "test": 0, "total": 2}
    assert data.label_counts("rhythm", available_only=False).loc["SR", "test"] == 2
    assert data.label_names("all") == ["AFIB", "ASMI", "CLBBB", "IMI", "LVH", "NDT", "NORM", "PVC", "SR"]
    assert data.label_names("all", min_count=2) == ["IMI", "SR"]
    assert data.label_names("superdiagnostic", exclude=["NORM"]) == ["CD", "HYP", "MI", "STTC"]
    with pytest.raises(ValueError, match="cannot exclude unknown"):
        data.label_names("superdiagnostic", exclude=["IMI"])


def test_load_shapes_labels_and_rate_fallback(fake_ptbxl, cache):
    data = PTBXL(fake_ptbxl)
    loaded = data.load(task="superdiagnostic", pipeline=Pipeline.default(fs=100), progress=False)
    assert loaded.X.shape == (9, 12, 1000) and loaded.X.dtype == np.float32 and len(loaded) == 9
    assert list(loaded.ids) == [str(i) for i in range(1, 10)]  # record 10 has no file
    assert loaded.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert loaded.label_descriptions["MI"] == "myocardial infarction" and loaded.source["kind"] == "ptbxl"
    row = list(loaded.ids).index("5")
    assert loaded.Y[row].tolist() == [0, 0, 1, 0, 1]
    assert loaded.patient_ids[list(loaded.ids).index("3")] == "102" and loaded.folds.tolist()[:3] == [1, 2, 2]
    assert loaded.preprocess == Pipeline.default(fs=100).to_dict() and loaded.fs == 100
    # record 1 exists only at 500 Hz: it is read there and resampled by the pipeline
    expected = Pipeline.default(fs=100).to_array(ecgfm.read(fake_ptbxl / "records500/00000/00001_hr.hea"))
    np.testing.assert_array_equal(loaded.signal(0), expected)
    train, val, test = (loaded.part(s) for s in ("train", "val", "test"))
    assert len(train) + len(val) + len(test) == 9 and set(test.ids) == {"9"} and set(val.ids) == {"7", "8"}
    assert not set(train.patient_ids) & (set(val.patient_ids) | set(test.patient_ids))
    # other folds give other splits; folds given by no split leave records unassigned
    refolded = data.load(["NORM"], Pipeline.default(fs=100), train_folds=(1, 2), val_folds=(3,), test_folds=(9, 10),
                         progress=False)
    assert set(refolded.part("test").ids) == {"7", "8", "9"} and set(refolded.part("val").ids) == {"4"}
    assert set(refolded.ids[refolded.split == ""]) == {"5", "6"}
    # the default labels: every statement of the task present in the training folds
    assert data.load(task="rhythm", progress=False).labels == data.label_names("rhythm")


def test_load_cache_and_process_pool_give_identical_arrays(fake_ptbxl, cache, monkeypatch):
    data = PTBXL(fake_ptbxl)
    first = data.load(["NORM", "IMI"], progress=False, workers=1)
    assert len(list((cache / "ptbxl").glob("signals-*.npy"))) == 2  # signals + readable-record mask
    cached = data.load(["NORM", "IMI"], progress=False)
    assert isinstance(cached.X, np.memmap)
    np.testing.assert_array_equal(cached.X, first.X)
    monkeypatch.setattr(ptbxl_module, "MIN_RECORDS_FOR_POOL", 0)
    monkeypatch.setattr(ptbxl_module, "_CHUNK", 2)
    pooled = data.load(["NORM", "IMI"], progress=False, workers=2, cache=False)
    np.testing.assert_array_equal(pooled.X, first.X)
    np.testing.assert_array_equal(pooled.Y, first.Y)


def test_load_skips_unreadable_records_with_a_warning(fake_ptbxl, tmp_path, cache):
    root = tmp_path / "copy"
    shutil.copytree(fake_ptbxl, root)
    broken = root / "records100/00000/00004_lr.dat"
    broken.write_bytes(broken.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable PTB-XL records: .*00004_lr\.hea.*truncated"):
        loaded = PTBXL(root).load(["NORM"], progress=False)
    assert "4" not in loaded.ids and len(loaded) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cached result remembers which records were skipped, silently
        again = PTBXL(root).load(["NORM"], progress=False)
    assert list(again.ids) == list(loaded.ids)


def test_load_refuses_labels_outside_the_task(fake_ptbxl, cache):
    with pytest.raises(ValueError, match=r"\['IMI'\] are not superdiagnostic labels"):
        PTBXL(fake_ptbxl).load(["MI", "IMI"], task="superdiagnostic", progress=False)


def test_split_of_fold():
    assert [split_of_fold(f) for f in range(1, 11)] == ["train"] * 8 + ["val", "test"]


# --- the shared PTB-XL subset --------------------------------------------------------------------------------------
@pytest.mark.ptbxl
def test_real_summary_matches_csv_and_readme(ptbxl_dir):
    data = PTBXL(ptbxl_dir)
    summary = data.summary("all")
    expected, meta, split, available = expected_summary(ptbxl_dir)
    assert {k: summary[k] for k in expected} == expected
    # the subset's README: 4322 records from 4126 patients; 2550 at 500 Hz, 1987 at 100 Hz (215 at both)
    assert (summary["records"], summary["patients"], summary["records_500hz"], summary["records_100hz"],
            summary["records_both_rates"]) == (4322, 4126, 2550, 1987, 215)
    # label counts per split, counted independently from the raw scp_codes strings
    codes = meta["scp_codes"].map(ast.literal_eval)
    for label in ("SR", "NORM", "IMI", "AFIB", "LVOLT"):
        for name in ("train", "val", "test"):
            independent = int(sum(label in c for c, s, a in zip(codes, split, available) if s == name and a))
            assert summary["label_counts"][label][name] == independent, (label, name)


@pytest.mark.ptbxl
def test_real_folds_are_patient_disjoint(ptbxl_dir):
    meta = PTBXL(ptbxl_dir).metadata
    assert (meta.groupby("patient_id")["split"].nunique() == 1).all()


@pytest.mark.ptbxl
def test_real_known_record_labels(ptbxl_dir):
    data = PTBXL(ptbxl_dir)
    if 1 not in data.metadata.index:
        pytest.skip("record 1 not in this PTB-XL copy")
    # ecg_id 1: {'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}
    assert data.labels("all")[1] == {"NORM", "LVOLT", "SR"}
    assert data.labels("diagnostic")[1] == {"NORM"} and data.labels("superdiagnostic")[1] == {"NORM"}
    assert data.labels("form")[1] == {"LVOLT"} and data.labels("rhythm")[1] == {"SR"}


@pytest.mark.ptbxl
def test_real_rate_fallback_reads_the_rate_present(ptbxl_dir):
    data = PTBXL(ptbxl_dir)
    meta = data.metadata
    only_100 = meta.index[meta["has_100"] & ~meta["has_500"]][0]
    only_500 = meta.index[meta["has_500"] & ~meta["has_100"]][0]
    assert data.read_record(only_100, fs=500).fs == 100
    assert data.read_record(only_500, fs=100).fs == 500
    assert os.fspath(data.record_path(only_500, 100)[0]).endswith("_hr.hea")


def test_default_workers_counts_idle_cpus(monkeypatch):
    monkeypatch.setattr(ptbxl_module.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(ptbxl_module.os, "getloadavg", lambda: (3.2, 3.0, 2.0))
    assert ptbxl_module.default_workers() == 13
    monkeypatch.setattr(ptbxl_module.os, "getloadavg", lambda: (40.0, 30.0, 20.0))
    assert ptbxl_module.default_workers() == 1


def test_statement_groups_follow_the_statement_flags(fake_ptbxl):
    from ecgfm.labels.ptbxl import read_statements, statement_groups

    groups = statement_groups(read_statements(fake_ptbxl / "scp_statements.csv"))
    assert groups["rhythm"] == ["SR", "AFIB"] and groups["form"] == ["NDT", "PVC"]
    assert "NDT" in groups["diagnostic"] and "SR" not in groups["diagnostic"]
