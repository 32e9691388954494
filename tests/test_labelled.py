"""The one labelled-data type (``ecgfm.datasets.LabelledSet``) and the one way to get it from any source
(``load_labelled``: a PTB-XL folder, a manifest, an ingested store, a folder of PhysioNet-Challenge records)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgfm import read
from ecgfm.datasets import LabelledSet, detect_source, from_arrays, load_labelled, parse_folds
from ecgfm.datasets.ptbxl import PTBXL
from ecgfm.datasets.synthetic import SYNTHETIC_LABELS, SyntheticSource, write_synthetic_wfdb
from ecgfm.signal import Pipeline

PIPELINE = Pipeline.default(fs=100.0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))


def small_set(n: int = 6) -> LabelledSet:
    rng = np.random.default_rng(0)
    return from_arrays(rng.normal(size=(n, 12, 100)).astype(np.float32), (rng.random((n, 3)) > 0.5),
                       ["A", "B", "C"], preprocess=PIPELINE.to_dict(),
                       split=["train", "train", "val", "val", "test", "test"][:n], ids=[f"r{i}" for i in range(n)],
                       patient_ids=[str(i // 2) for i in range(n)], folds=np.array([1, 1, 9, 9, 10, 10][:n]),
                       label_descriptions={"A": "alpha"})


# --- LabelledSet ---------------------------------------------------------------------------------------------------

def test_subsets_parts_and_label_selections_share_the_signals():
    data = small_set()
    assert len(data) == 6 and data.fs == 100.0 and data.leads == list(PIPELINE.leads)
    assert repr(data) == "LabelledSet(6 records (train 2, val 2, test 2), 3 labels, arrays)"
    sub = data.subset(data.folds == 9)
    assert list(sub.ids) == ["r2", "r3"] and sub.X is data.X and list(sub.rows) == [2, 3]
    np.testing.assert_array_equal(sub.Y, data.Y[[2, 3]])
    np.testing.assert_array_equal(sub.signals(), data.X[[2, 3]])
    assert list(data.subset([5, 0]).ids) == ["r5", "r0"] and list(data.subset([5, 0]).folds) == [10, 1]
    train, val, test = (data.part(s) for s in ("train", "val", "test"))
    assert (list(train.ids), list(val.ids), list(test.ids)) == (["r0", "r1"], ["r2", "r3"], ["r4", "r5"])
    assert list(data.part("val", "test").ids) == ["r2", "r3", "r4", "r5"]
    picked = data.select_labels(["C", "A"])
    np.testing.assert_array_equal(picked.Y, data.Y[:, [2, 0]])
    assert picked.labels == ["C", "A"] and picked.label_descriptions == {"C": "C", "A": "alpha"}
    external = data.with_split("test")
    assert set(external.split) == {"test"} and set(data.split) == {"train", "val", "test"}  # a copy
    joined = train.concat(test)
    assert list(joined.ids) == ["r0", "r1", "r4", "r5"] and list(joined.folds) == [1, 1, 10, 10]
    assert data.positives() == {name: int(n) for name, n in zip(data.labels, data.Y.sum(axis=0))}
    assert data.describe() == {"kind": "arrays", "records": {"train": 2, "val": 2, "test": 2}, "n_patients": 3}


def test_torch_view_gives_items_in_order_and_may_repeat_records():
    data = small_set().part("val", "test")
    items = data.torch(np.array([3, 3, 0]))
    assert len(items) == 3 and items.Y.shape == (3, 3)
    x, y = items[0]
    assert x.dtype == torch.float32 and x.shape == (12, 100)
    np.testing.assert_array_equal(x.numpy(), data.signal(3))
    np.testing.assert_array_equal(y.numpy(), data.Y[3])
    torch.testing.assert_close(items[1][0], items[0][0])
    x[0, 0] = 99.0  # items are copies: the backing signals are never changed through them
    assert data.signal(3)[0, 0] != 99.0


def test_bad_sets_and_requests_are_refused_with_the_reason():
    data = small_set()
    with pytest.raises(ValueError, match=r"labels \['Z'\] not in this dataset"):
        data.select_labels(["Z"])
    with pytest.raises(ValueError, match="unknown split.*'training'"):
        data.part("training")
    with pytest.raises(ValueError, match="LabelledSet.ids has 6 entries for 5 records"):
        LabelledSet(X=data.X, Y=data.Y[:5], labels=data.labels, ids=data.ids, patient_ids=data.patient_ids[:5],
                    split=data.split[:5], preprocess={})
    with pytest.raises(ValueError, match="duplicates"):
        from_arrays(data.X, np.zeros((6, 2)), ["A", "A"])
    with pytest.raises(ValueError, match="same labels"):
        data.concat(data.select_labels(["A"]))
    with pytest.raises(ValueError, match="same data"):
        data.concat(small_set())


def test_parse_folds_reads_one_syntax_everywhere():
    assert parse_folds("1-8") == tuple(range(1, 9)) and parse_folds("9") == (9,)
    assert parse_folds("1,3,5-7") == (1, 3, 5, 6, 7) and parse_folds(" 2, 2,1 ") == (2, 1)
    assert parse_folds(10) == (10,) and parse_folds([9, 10]) == (9, 10) and parse_folds(None) == ()
    with pytest.raises(ValueError, match="cannot read folds 'a-b'"):
        parse_folds("a-b")
    with pytest.raises(ValueError, match="runs backwards"):
        parse_folds("8-1")


# --- load_labelled: every source -------------------------------------------------------------------------------------

def test_ptbxl_folder_with_folds_as_text(fake_ptbxl, cache):
    data = load_labelled(ptbxl=fake_ptbxl, labels=["NORM", "IMI"], pipeline=PIPELINE, train_folds="1-7",
                         val_folds="8", test_folds="9-10", progress=False)
    direct = PTBXL(fake_ptbxl).load(["NORM", "IMI"], PIPELINE, train_folds=range(1, 8), val_folds=(8,),
                                    test_folds=(9, 10), progress=False)
    assert list(data.ids) == list(direct.ids) and list(data.split) == list(direct.split)
    np.testing.assert_array_equal(data.signals(), direct.signals())
    assert set(data.part("val").ids) == {"6"} and set(data.part("test").ids) == {"7", "8", "9"}
    found = load_labelled(data=fake_ptbxl, labels=["NORM"], pipeline=PIPELINE, progress=False)  # recognised
    assert found.source["kind"] == "ptbxl" and set(found.part("test").ids) == {"9"}
    defaults = load_labelled(ptbxl=fake_ptbxl, task="rhythm", min_count=2, progress=False)
    assert defaults.labels == ["SR"] and defaults.preprocess == Pipeline.default().to_dict()
    with pytest.raises(ValueError, match="no rhythm labels with >= 50 training positives"):
        load_labelled(ptbxl=fake_ptbxl, task="rhythm", min_count=50, progress=False)


def test_only_one_source_at_a_time(fake_ptbxl, tmp_path):
    with pytest.raises(ValueError, match="give one data source, not --ptbxl and --manifest"):
        load_labelled(ptbxl=fake_ptbxl, manifest=tmp_path / "m.csv")


def test_manifest_lists_unreadable_files_and_reads_lazily_on_request(tmp_path):
    table = write_synthetic_wfdb(tmp_path / "ecgs", 6, fs=500, seconds=10)
    table["path"] = "ecgs/" + table["path"]
    table["split"] = ["train", "train", "train", "train", "val", "test"]
    table["labels"] = [";".join(labels) for labels in table["labels"]]
    table["patient_id"] = [f"p{i}" for i in range(6)]
    (tmp_path / "ecgs" / "broken.hea").write_text("not a header\n")
    table.loc[len(table)] = {"path": "ecgs/broken.hea", "record_id": "broken", "patient_id": "p9", "labels": "SR",
                             "split": "test"}
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.warns(UserWarning, match="1 of 7 ECG files could not be read.*broken.hea"):
        data = load_labelled(manifest=tmp_path / "m.csv", labels=["SR", "STACH"], pipeline=PIPELINE, progress=False)
    assert len(data) == 6 and "broken" not in data.ids
    assert data.source["unreadable"] == 1 and "broken.hea" in next(iter(data.source["unreadable_files"]))
    assert list(data.split) == list(table["split"][:6]) and data.labels == ["SR", "STACH"]
    expected = PIPELINE.to_array(read(tmp_path / table["path"][0]))
    np.testing.assert_allclose(data.signal(0), expected, atol=1e-6)
    assert detect_source(tmp_path / "m.csv") == "manifest"
    lazy = load_labelled(data=tmp_path / "m.csv", labels=["SR"], pipeline=PIPELINE, lazy=True, progress=False)
    assert len(lazy) == 7  # nothing read yet: the unreadable file surfaces when it is asked for
    np.testing.assert_allclose(lazy.signal(0), data.signal(0), atol=1e-6)
    with pytest.raises(Exception, match="broken.hea"):
        lazy.signal(6)
    with pytest.raises(ValueError, match=r"labels \['XYZ'\] are not in the manifest"):
        load_labelled(manifest=tmp_path / "m.csv", labels=["XYZ"], pipeline=PIPELINE, progress=False)


def test_challenge_folder_labels_are_mapped_from_snomed(tmp_path):
    write_synthetic_wfdb(tmp_path / "cpsc", 6, fs=500, challenge=True)
    assert detect_source(tmp_path / "cpsc") == "challenge"
    data = load_labelled(data=tmp_path / "cpsc", labels=["SR", "STACH", "CLBBB", "NDT"], pipeline=PIPELINE,
                         progress=False)
    assert len(data) == 6 and data.signals().shape == (6, 12, 1000) and data.source["kind"] == "challenge"
    table = write_synthetic_wfdb(tmp_path / "again", 6, fs=500, challenge=True)  # the same records' SCP labels
    for j, name in enumerate(["SR", "STACH"]):  # coded in SNOMED-CT and mapped back
        assert data.Y[:, j].tolist() == [float(name in labels) for labels in table["labels"]]
    # the generator never codes a bundle branch block: SNOMED-CT can say it, so it is absent (0); no SNOMED-CT code
    # says "non-diagnostic T abnormalities", so it is unknown (NaN), not absent
    assert (data.Y[:, 2] == 0).all() and np.isnan(data.Y[:, 3]).all()
    from ecgfm.labels.snomed import snomed_to_scp

    unmapped = data.source["unmapped_snomed"]  # codes that say none of the four labels asked for (here SBRAD's)
    assert unmapped and all(not set(snomed_to_scp(code)) & {"SR", "STACH", "CLBBB", "NDT"} for code in unmapped)


def test_store_is_read_lazily_and_keeps_its_preprocessing(tmp_path):
    from ecgfm.datasets.ingest import ingest
    from ecgfm.datasets.store import ECGStore, StoreSignals

    ingest(SyntheticSource(12, fs=100), tmp_path / "s", shard_size=4, workers=1, progress=False)
    assert detect_source(tmp_path / "s") == "store"
    data = load_labelled(data=tmp_path / "s", labels=list(SYNTHETIC_LABELS))
    assert isinstance(data.X, StoreSignals) and data.preprocess == ECGStore(tmp_path / "s").spec.pipeline
    assert len(data) == 12 and data.source["kind"] == "store"
    same = load_labelled(store=tmp_path / "s", labels=["SR"], pipeline=Pipeline.from_dict(data.preprocess))
    np.testing.assert_array_equal(same.signal(3), data.signal(3))
    with pytest.raises(ValueError, match="ingest it again with the model's preprocessing"):
        load_labelled(store=tmp_path / "s", labels=["SR"], pipeline=Pipeline.default(fs=250.0))


def test_detect_source_explains_what_it_cannot_use(tmp_path):
    with pytest.raises(FileNotFoundError, match="data not found"):
        detect_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a PTB-XL folder, an ecgfm store or a folder of WFDB records"):
        detect_source(tmp_path / "empty")


def test_detect_source_names_the_extension_it_refuses(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"notes.txt: --data takes a folder.*not a \.txt$"):
        detect_source(tmp_path / "notes.txt")
