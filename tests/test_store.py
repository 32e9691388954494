"""The training store: values, the direct shard reader against zarr-python, the lazily read LabelledSet, its torch
Dataset and DataLoader workers."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from ecgfm.datasets.ingest import ingest, quantise
from ecgfm.datasets.store import ECGStore, ShardReader, StoreSignals, read_spec
from ecgfm.datasets.synthetic import SYNTHETIC_LABELS, SyntheticSource, synthetic_ecg, synthetic_labels
from ecgfm.signal import Pipeline

N, SHARD = 45, 8  # 6 shards, the last one partial


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s"
    report = ingest(SyntheticSource(N, fs=100), path, shard_size=SHARD, workers=1, progress=False)
    assert (report.written, report.failed, report.shards_total) == (N, 0, 6)
    return path


def test_store_holds_the_pipeline_output_to_half_a_microvolt(store_path):
    store = ECGStore(store_path)
    pipeline = Pipeline.default(fs=100, seconds=10)
    assert store.pipeline == pipeline and store.fs == 100 and store.n_samples == 1000 and len(store.leads) == 12
    for i in (0, 17, N - 1):
        expected = pipeline.to_array(synthetic_ecg(int(store.index["row"][i]), fs=100))
        got = store.signal(i)
        assert got.dtype == np.float32 and got.shape == (12, 1000)
        np.testing.assert_allclose(got, expected, atol=0.0005 + 1e-6, rtol=0)
    ecg = store[3]
    assert ecg.record_id == store.index["record_id"][3] and ecg.meta["labels"] == synthetic_labels(3)


def test_direct_reader_agrees_with_zarr_on_every_record(store_path):
    spec = read_spec(store_path)
    direct, reference = ShardReader(store_path, spec, mode="direct"), zarr.open_array(store_path / "signals", mode="r")
    assert direct.mode == "direct"
    for row in range(N):
        np.testing.assert_array_equal(direct.read(row), reference[row])
    with pytest.raises(IndexError):
        direct.read(N)
    via_zarr = ShardReader(store_path, spec, mode="zarr")
    np.testing.assert_array_equal(via_zarr.read(5), reference[5])


def test_reader_keeps_a_bounded_number_of_files_and_indexes(store_path):
    reader = ShardReader(store_path, read_spec(store_path), max_open_files=2, max_cached_indexes=3)
    for row in range(0, N, 3):
        reader.read(row)
    assert len(reader._files) <= 2 and len(reader._indexes) <= 3
    reader.close()
    assert not reader._files


def test_load_gives_items_labels_and_patient_level_splits(store_path):
    store = ECGStore(store_path)
    data = store.load(list(SYNTHETIC_LABELS))
    assert isinstance(data.X, StoreSignals) and data.preprocess == store.spec.pipeline and data.fs == 100
    assert data.source["kind"] == "store" and data.labels == list(SYNTHETIC_LABELS)
    sets = {split: data.part(split) for split in ("train", "val", "test")}
    assert sum(len(d) for d in sets.values()) == N
    patients = [set(d.patient_ids) for d in sets.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    train = sets["train"]
    items = train.torch()
    x, y = items[0]
    assert x.dtype == torch.float32 and x.shape == (12, 1000) and y.shape == (len(SYNTHETIC_LABELS),)
    row = int(train.rows[0])
    assert [SYNTHETIC_LABELS[j] for j in np.flatnonzero(y.numpy())] == synthetic_labels(row)
    np.testing.assert_array_equal(x.numpy(), store.read_row(row))
    np.testing.assert_array_equal(train.Y, np.stack([items[i][1].numpy() for i in range(len(items))]))
    subset = store.load(["STACH"]).part("train")
    assert subset.Y.shape == (len(train), 1) and subset.labels == ["STACH"]
    np.testing.assert_array_equal(subset.Y[:, 0], train.Y[:, SYNTHETIC_LABELS.index("STACH")])
    default = store.load(min_count=1)  # labels with a training positive
    assert default.labels == store.frequent_labels(1)
    assert "STACH" not in store.load(min_count=1, exclude=["STACH"]).labels
    with pytest.raises(ValueError, match="not in the store"):
        store.load(["NOPE"])
    with pytest.raises(ValueError, match="unknown split"):
        data.part("training")
    with pytest.raises(IndexError):
        items[len(items)]


def test_dataloader_with_workers_matches_in_process_and_pickles(store_path):
    data = ECGStore(store_path).load(list(SYNTHETIC_LABELS)).torch()
    data[0]  # open a file in this process: workers must not reuse its descriptor
    assert data.X.reader._files
    clone = pickle.loads(pickle.dumps(data))
    assert not clone.X.reader._files
    torch.testing.assert_close(clone[7][0], data[7][0])
    serial = [batch for batch in DataLoader(data, batch_size=8, num_workers=0)]
    parallel = [batch for batch in DataLoader(data, batch_size=8, num_workers=2)]
    for (xa, ya), (xb, yb) in zip(serial, parallel, strict=True):
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)


def test_int16_clipping_is_counted_and_float16_store(tmp_path):
    source = SyntheticSource(6, fs=100)
    coarse = ingest(source, tmp_path / "fine", uv_per_lsb=0.02, shard_size=4, workers=1, progress=False)
    pipeline = Pipeline.default(fs=100, seconds=10)
    expected = [quantise(pipeline.to_array(source.load(i)), "int16", 0.02)[1] for i in range(6)]
    assert sum(expected) > 0 and coarse.clipped_samples == sum(expected)
    assert ECGStore(tmp_path / "fine").index["clipped"].tolist() == expected
    ingest(source, tmp_path / "half", dtype="float16", shard_size=4, workers=1, progress=False)
    half = ECGStore(tmp_path / "half")
    assert half.spec.uv_per_lsb is None and half.summary()["dtype"] == "float16"
    reference = pipeline.to_array(source.load(int(half.index["row"][2])))
    np.testing.assert_allclose(half.signal(2), reference, rtol=1e-3, atol=1e-4)


def test_stores_refuse_what_they_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="normalises"):
        ingest(SyntheticSource(2, fs=100), tmp_path / "z", pipeline=Pipeline.default(normalize="zscore"),
               workers=1, progress=False)
    with pytest.raises(ValueError, match="fixing the rate"):
        ingest(SyntheticSource(2, fs=100), tmp_path / "z", pipeline=Pipeline(()), workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match="not an ecgfm store"):
        ECGStore(tmp_path)


def test_label_counts_and_the_loaded_set_agree_with_the_index(store_path):
    store = ECGStore(store_path)
    counts = store.label_counts()
    data = store.load(list(SYNTHETIC_LABELS))
    for split in ("train", "val", "test"):
        expected = data.part(split).positives()
        assert {k: int(counts.loc[k, split]) for k in counts.index} == {k: v for k, v in expected.items() if k in counts.index}
    assert store.frequent_labels(min_count=10 ** 6) == [] and set(store.frequent_labels(1)) <= set(SYNTHETIC_LABELS)
    positions = store.positions("val")
    val = data.part("val")
    index = store.index.iloc[positions]
    assert list(val.ids) == list(index["record_id"]) and list(val.patient_ids) == list(index["patient_id"].astype(str))
    signals = val.signals()
    assert signals.shape == (len(val), 12, 1000) and signals.dtype == np.float32
    for i in range(len(val)):
        np.testing.assert_array_equal(signals[i], store.signal(int(positions[i])))
        np.testing.assert_array_equal(val.signal(i), signals[i])
