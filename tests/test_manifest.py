"""Manifests: CSV/Parquet parsing, label columns, patient-level hashed splits, PTB-XL and Challenge sources."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgfm.datasets.manifest import Manifest, assign_splits, read_manifest
from ecgfm.datasets.synthetic import SYNTHETIC_SNOMED, write_synthetic_wfdb


def test_assign_splits_is_patient_level_deterministic_and_close_to_fractions():
    patients = [f"p{i}" for i in range(20000)]
    splits = assign_splits(patients)
    assert list(splits) == list(assign_splits(patients))  # deterministic
    counts = pd.Series(splits).value_counts(normalize=True)
    assert abs(counts["train"] - 0.8) < 0.015 and abs(counts["val"] - 0.1) < 0.01 and abs(counts["test"] - 0.1) < 0.01
    # a patient's split does not depend on which other patients exist (stable when the dataset grows)
    assert list(assign_splits(patients[:100])) == list(splits[:100])
    assert assign_splits(["p1"], salt="other")[0] in ("train", "val", "test")
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(patients, val_fraction=0.6, test_fraction=0.5)


def test_csv_with_labels_column_relative_paths_and_hashed_splits(tmp_path):
    (tmp_path / "sub").mkdir()
    table = pd.DataFrame({"path": ["sub/a.hea", "sub/b.hea", "c.xml", str(tmp_path / "d.dcm")],
                          "patient_id": ["1", "1", "2", "3"],
                          "labels": ["NORM", "IMI;LVH", "", "AFIB; NORM"], "age": [50, 60, 70, 80]})
    table.to_csv(tmp_path / "m.csv", index=False)
    manifest = read_manifest(tmp_path / "m.csv")
    records = manifest.records
    assert list(records["record_id"]) == ["a", "b", "c", "d"]
    assert records["path"].iloc[0] == str(tmp_path.resolve() / "sub" / "a.hea")
    assert records["path"].iloc[3] == str(tmp_path / "d.dcm")
    assert records["labels"].tolist() == [["NORM"], ["IMI", "LVH"], [], ["AFIB", "NORM"]]
    assert manifest.label_names == ["AFIB", "IMI", "LVH", "NORM"]
    assert records["split"].iloc[0] == records["split"].iloc[1]  # same patient, same split
    assert manifest.metadata_columns == ["age"]


def test_per_label_columns_with_blanks_are_unknown(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,record_id,patient_id,split,AFIB,LVH,site\n"
                    "x1.hea,r1,p1,train,1,0,A\n"
                    "x2.hea,r2,p2,val,0,,B\n"
                    "x3.hea,r3,p3,test,,1,A\n")
    manifest = read_manifest(path)
    assert manifest.label_names == ["AFIB", "LVH"]
    assert manifest.records["labels"].tolist() == [["AFIB"], [], ["LVH"]]
    assert manifest.records["unknown_labels"].tolist() == [[], ["LVH"], ["AFIB"]]
    assert manifest.metadata_columns == ["site"]  # a text column is metadata, not a label
    assert manifest.records["split"].tolist() == ["train", "val", "test"]


def test_parquet_round_trip_keeps_lists(tmp_path):
    table = pd.DataFrame({"path": ["a.hea", "b.hea"], "patient_id": ["1", "2"], "split": ["train", "test"],
                          "labels": [["SR", "LVH"], []]})
    manifest = Manifest.from_table(table, root=tmp_path)
    manifest.write(tmp_path / "m.parquet")
    again = read_manifest(tmp_path / "m.parquet")
    assert again.records["labels"].tolist() == [["LVH", "SR"], []]
    manifest.write(tmp_path / "m2.csv")
    assert read_manifest(tmp_path / "m2.csv").records["labels"].tolist() == [["LVH", "SR"], []]


@pytest.mark.parametrize("content, message", [
    ("record_id,patient_id\nr1,p1\n", "'path' column"),
    ("path,record_id\na.hea,r1\nb.hea,r1\n", "duplicate record ids"),
    ("path,patient_id,split\na.hea,p1,train\nb.hea,p1,test\n", "more than one split"),
    ("path,split\na.hea,training\n", "unknown splits"),
    ("path,AFIB\na.hea,2\nb.hea,1\n", None),  # 2 is not binary: AFIB is metadata, not a label column
    ("path,split\na.hea,train\nb.hea,\n", "without a split"),
])
def test_bad_manifests_fail_clearly(tmp_path, content, message):
    path = tmp_path / "m.csv"
    path.write_text(content)
    if message is None:
        manifest = read_manifest(path)
        assert manifest.label_names == [] and manifest.metadata_columns == ["AFIB"]
        return
    with pytest.raises(ValueError, match=message) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_explicit_label_columns_must_be_binary(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,AFIB\na.hea,2\n")
    with pytest.raises(ValueError, match="must hold 0, 1 or blank"):
        read_manifest(path, label_columns=["AFIB"])
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "absent.csv")
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ValueError, match="csv"):
        read_manifest(tmp_path / "m.json")


def test_challenge_folder_labels_from_snomed(tmp_path):
    table = write_synthetic_wfdb(tmp_path / "g1", 4, fs=100, challenge=True)
    write_synthetic_wfdb(tmp_path / "g2", 2, fs=100, seed=7, challenge=True)
    manifest = Manifest.from_challenge(tmp_path)
    assert len(manifest) == 6
    first = manifest.records.set_index("record_id").loc[table["record_id"].iloc[0]]
    assert first["labels"] == table["labels"].iloc[0]  # SNOMED -> SCP recovers the generator's SCP labels
    assert first["snomed"] == ";".join(SYNTHETIC_SNOMED[lab] for lab in table["labels"].iloc[0])
    assert first["sex"] == "F" and 18 <= first["age"] < 90
    snomed = Manifest.from_challenge(tmp_path, labels="snomed")
    assert set(snomed.label_names) <= set(SYNTHETIC_SNOMED.values())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no WFDB headers"):
        Manifest.from_challenge(tmp_path / "empty")


def test_challenge_duplicate_names_use_relative_paths(tmp_path, synthetic_ecg, write_challenge):
    write_challenge(tmp_path / "a", "A0001", synthetic_ecg(fs=100, seed=1))
    write_challenge(tmp_path / "b", "A0001", synthetic_ecg(fs=100, seed=2))
    manifest = Manifest.from_challenge(tmp_path)
    assert sorted(manifest.records["record_id"]) == ["a/A0001", "b/A0001"]


def test_ptbxl_manifest_uses_official_folds(fake_ptbxl):
    manifest = Manifest.from_ptbxl(fake_ptbxl, fs=100, task="all")
    records = manifest.records.set_index("record_id")
    assert "10" not in records.index  # record 10 has no signal file
    assert records.loc["7", "split"] == "val" and records.loc["9", "split"] == "test"
    assert records.loc["1", "split"] == "train"
    assert records.loc["1", "path"].endswith("00001_hr.hea")  # only 500 Hz exists for record 1
    assert records.loc["2", "path"].endswith("00002_lr.hea")
    assert records.loc["3", "labels"] == ["IMI", "PVC", "SR"]
    assert np.array_equal(records["fold"].to_numpy(), np.array([1, 2, 2, 3, 5, 8, 9, 9, 10]))
