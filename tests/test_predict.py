"""Predictor: inputs (files, folders, globs), preprocessing from the model, windowed inference, thresholds, failures."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from scipy.special import expit

from conftest import file_mode, umask
from ecgfm import ECG, STANDARD_LEADS, read
from ecgfm.errors import ECGReadError, ECGValueError
from ecgfm.inference import Predictor
from ecgfm.io.discover import discover_inputs
from ecgfm.inference.outputs import output_format
from ecgfm.signal import Pipeline
from predict_fixtures import DESCRIPTIONS, LABELS, make_tiny_model, synthetic_signal, write_wfdb

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_pretrained(model_dir, batch_size=4, num_workers=2)


@pytest.fixture()
def ecg_folder(tmp_path):
    """Three WFDB records (500 Hz, 250 Hz, 100 Hz), an 8-lead NumPy file (limb leads derived), a corrupt record and an
    unrelated file."""
    write_wfdb(tmp_path, "rec_a", fs=500, seed=1)
    write_wfdb(tmp_path / "sub", "rec_b", fs=250, seed=2)
    write_wfdb(tmp_path / "sub" / "deeper", "rec_c", fs=100, seconds=8, seed=3)
    eight = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    np.savez(tmp_path / "rec_d.npz", signal=synthetic_signal(360, 10, seed=4, leads=eight), fs=360.0,
             leads=np.array(eight))
    bad = write_wfdb(tmp_path, "rec_bad", fs=500, seed=5)
    data = bad.with_suffix(".dat")
    data.write_bytes(data.read_bytes()[:1000])  # truncated signal file
    (tmp_path / "notes.txt").write_text("not an ECG")
    return tmp_path


def test_discover_walks_folders_lists_wfdb_once_and_reports_missing(ecg_folder):
    files, failures = discover_inputs([ecg_folder, ecg_folder / "nope.hea", str(ecg_folder / "sub" / "*.dat")])
    names = sorted(p.name for p in files)
    assert names == ["rec_a.hea", "rec_b.hea", "rec_bad.hea", "rec_c.hea", "rec_d.npz"]  # .dat/.txt skipped, no dupes
    assert [(f.source, f.reason) for f in failures] == [(str(ecg_folder / "nope.hea"), "file not found")]
    files, failures = discover_inputs([ecg_folder / "rec_a.dat", str(ecg_folder / "*.xyz")])
    assert [p.name for p in files] == ["rec_a.hea"]  # a .dat argument means its record
    assert failures[0].reason == "no files match this pattern"


def test_predict_applies_model_preprocessing_and_thresholds(predictor, tmp_path):
    header = write_wfdb(tmp_path, "rec", fs=500, seed=7)
    result = predictor.predict(header)
    assert result.record_id == "rec" and result.source == str(header)
    assert result.duration_s == 10.0 and result.notes == ()
    assert list(result.probabilities) == LABELS
    assert all(0.0 <= p <= 1.0 for p in result.probabilities.values())
    # NORM's threshold is 0 (always positive), AFIB's is 1 (never), IMI uses the default 0.5.
    expected = {"NORM"} | ({"IMI"} if result.probabilities["IMI"] >= 0.5 else set())
    assert {f.label for f in result.findings} == expected
    assert {f.label: f.description for f in result.findings} == {k: DESCRIPTIONS[k] for k in expected}
    assert [f.probability for f in result.findings] == sorted((f.probability for f in result.findings), reverse=True)
    # Same numbers as doing it by hand: read, the model's own pipeline, the model, a sigmoid.
    x = Pipeline.from_dict(predictor.info.preprocess).to_array(read(header))
    assert x.shape == (12, 1000)
    assert np.allclose(expit(predictor.backend(x[None]))[0], list(result.probabilities.values()), atol=1e-6)
    assert np.allclose(expit(predictor.record_logits([x]))[0], list(result.probabilities.values()), atol=1e-6)


def test_predict_proba_preprocesses_raw_arrays_files_and_ecgs_like_predict(predictor, tmp_path):
    """scikit-learn style: raw 500-Hz signals with their rate, file paths and ECG objects give what ``predict``
    gives (the model's preprocessing is applied, never skipped)."""
    raw = np.stack([synthetic_signal(500, 10, seed=s) for s in (21, 22)])
    expected = np.array([list(predictor.predict(ECG(x, 500.0, STANDARD_LEADS)).probabilities.values()) for x in raw])
    np.testing.assert_allclose(predictor.predict_proba(raw, fs=500), expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba(raw[0], fs=500), expected[:1], atol=1e-6)  # one record
    np.testing.assert_allclose(predictor.predict_proba([ECG(x, 500.0, STANDARD_LEADS) for x in raw]), expected,
                               atol=1e-6)
    headers = [write_wfdb(tmp_path, f"r{s}", fs=500, seed=s) for s in (23, 24)]
    by_file = np.array([list(predictor.predict(h).probabilities.values()) for h in headers])
    np.testing.assert_allclose(predictor.predict_proba(headers), by_file, atol=1e-6)
    # leads in another order are put back in the model's order by name
    order = list(reversed(STANDARD_LEADS))
    shuffled = raw[:, [STANDARD_LEADS.index(name) for name in order]]
    np.testing.assert_allclose(predictor.predict_proba(shuffled, fs=500, leads=order), expected, atol=1e-6)
    # scoring the raw signal as if it were the model input would give other numbers
    assert not np.allclose(expit(predictor.backend(raw[:, :, :1000])), expected, atol=1e-3)
    with pytest.raises(ECGValueError, match="sampling rate"):
        predictor.predict_proba(raw)


def test_assigning_or_updating_thresholds_changes_the_findings(model_dir, tmp_path):
    predictor = Predictor.from_pretrained(model_dir)
    header = write_wfdb(tmp_path, "rec", fs=500, seed=8)
    assert "NORM" in {f.label for f in predictor.predict(header).findings}  # threshold 0 from the model
    predictor.thresholds = {"NORM": 1.5, "AFIB": 0.0}  # IMI not given: the default 0.5
    assert predictor.thresholds == {"NORM": 1.5, "AFIB": 0.0, "IMI": 0.5}
    result = predictor.predict(header)
    expected = {"AFIB"} | ({"IMI"} if result.probabilities["IMI"] >= 0.5 else set())
    assert {f.label for f in result.findings} == expected
    assert {f.label: f.threshold for f in result.findings}["AFIB"] == 0.0
    predictor.thresholds["AFIB"] = 1.5  # updating the dict in place counts too
    predictor.thresholds["IMI"] = 0.0
    assert {f.label for f in predictor.predict(header).findings} == {"IMI"}
    report = predictor.predict_many([header], num_workers=0)
    assert {f.label for f in report.predictions[0].findings} == {"IMI"}
    with pytest.raises(ValueError, match="does not predict.*'XYZ'"):
        predictor.thresholds = {"XYZ": 0.3}


def test_windowed_inference_matches_trainer_aggregation(model_dir):
    """The predictor scores records with the trainer's sliding windows and aggregation (max of window logits)."""
    from ecgfm.datasets import from_arrays
    from ecgfm.models import load
    from ecgfm.models.windowing import predict_logits

    predictor = Predictor.from_pretrained(model_dir)
    model = load(model_dir)
    info = model.info
    X = np.stack([synthetic_signal(100, 10, seed=s).astype(np.float32) for s in range(5)])
    data = from_arrays(X, np.zeros((5, 3)), LABELS).torch()
    expected = predict_logits(model, data)  # the window, stride and aggregation in model.info
    assert info.window == 250 and info.aggregate == "max"
    assert np.allclose(predictor.backend(X), expected, atol=1e-5)
    assert np.allclose(predictor.record_logits(list(X)), expected, atol=1e-5)  # 10-s records: one segment each
    whole = predict_logits(model, data, window=None)  # the network on whole records: other numbers
    assert not np.allclose(whole, expected, atol=1e-3)
    for how, stride in (("mean", 100), ("max", 60)):
        other = Predictor.from_pretrained(model_dir)
        other.backend.module.how, other.backend.module.stride = how, stride
        expected = predict_logits(model, data, window=info.window, stride=stride, how=how)
        assert np.allclose(other.backend(X), expected, atol=1e-5)


def test_long_records_are_read_whole_in_segments_combined_per_label(model_dir):
    """A 60-s record is scored over its whole length: the model's 10-s input every 5 s, segment logits combined per
    label by ``model.info.segment_rule()`` (mean or max). An abnormality outside the middle 10 s therefore changes
    the score (a centre crop would not see it)."""
    from ecgfm.models import load
    from ecgfm.models.runner import TorchRunner
    from ecgfm.models.windowing import combine_segments, segments

    model = load(model_dir)
    info = model.info.replace(reading={"aggregate": {"IMI": "max"}})  # one label by the max, the others the mean
    model.info = info
    predictor = Predictor(TorchRunner(model), info)
    input_samples, stride, how = info.segment_rule()
    assert (input_samples, stride, how) == (1000, 500, ["mean", "mean", "max"])
    fs = 500.0
    signal = np.array(synthetic_signal(fs, 60, seed=12))  # a writable copy
    signal[:, :int(10 * fs)] = synthetic_signal(fs, 10, seed=13) * 3.0  # the first 10 s differ, the middle does not
    loaded = predictor.preprocess(ECG(signal, fs, STANDARD_LEADS, {"record_id": "long"}))
    assert loaded.array.shape == (12, 6000) and loaded.notes == ()
    parts = segments(loaded.array, input_samples, stride)
    assert parts.shape == (11, 12, 1000)
    segment_logits = predictor.backend(parts)
    expected = combine_segments(segment_logits, how)
    np.testing.assert_allclose(predictor.record_logits([loaded.array])[0], expected, atol=1e-5)
    np.testing.assert_allclose(expected[:2], segment_logits[:, :2].mean(0), atol=1e-6)
    np.testing.assert_allclose(expected[2], segment_logits[:, 2].max(0), atol=1e-6)
    long = predictor.predict(ECG(signal, fs, STANDARD_LEADS))
    assert long.duration_s == 60.0
    np.testing.assert_allclose(list(long.probabilities.values()), expit(expected), atol=1e-5)
    middle = predictor.predict(ECG(signal[:, int(25 * fs):int(35 * fs)], fs, STANDARD_LEADS))
    assert middle.duration_s == 10.0
    assert max(abs(long.probabilities[k] - middle.probabilities[k]) for k in LABELS) > 1e-3
    # in a batch, records of different lengths are each read whole, as alone
    together = predictor.record_logits([loaded.array, loaded.array[:, 2000:3000], loaded.array[:, :1500]])
    np.testing.assert_allclose(together[0], expected, atol=1e-5)
    np.testing.assert_allclose(together[1], predictor.backend(loaded.array[None, :, 2000:3000])[0], atol=1e-5)
    np.testing.assert_allclose(together[2], predictor.record_logits([loaded.array[:, :1500]])[0], atol=1e-5)


def test_a_record_shorter_than_the_input_is_padded_and_says_so(predictor):
    short = predictor.predict(ECG(synthetic_signal(500, 6, seed=14), 500.0, STANDARD_LEADS, {"record_id": "s"}))
    assert short.duration_s == 6.0
    assert len(short.notes) == 1 and "short record: 6.00 s, zero-padded" in short.notes[0]
    loaded = predictor.preprocess(ECG(synthetic_signal(500, 6, seed=14), 500.0, STANDARD_LEADS))
    padded = np.pad(loaded.array, ((0, 0), (0, 1000 - loaded.array.shape[1])))
    np.testing.assert_allclose(list(short.probabilities.values()), expit(predictor.backend(padded[None]))[0],
                               atol=1e-6)


def test_predict_accepts_ecg_objects_and_any_rate(predictor):
    signal = synthetic_signal(500, 10, seed=3)
    at_500 = ECG(signal, 500.0, STANDARD_LEADS, {"record_id": "x"})
    from scipy.signal import resample_poly

    at_250 = at_500.replace(signal=resample_poly(signal, 1, 2, axis=1), fs=250.0)
    p500, p250 = predictor.predict(at_500), predictor.predict(at_250)
    assert p500.record_id == "x" and p500.source is None
    # the same ECG sampled at two rates reaches the model resampled to 100 Hz: nearly identical outputs
    assert max(abs(p500.probabilities[k] - p250.probabilities[k]) for k in LABELS) < 0.02


def test_predict_raises_read_error_naming_the_file(predictor, tmp_path):
    bad = tmp_path / "broken.hea"
    bad.write_text("this is not a header\n")
    with pytest.raises(ECGReadError, match="broken.hea"):
        predictor.predict(bad)
    three = ("V1", "V2", "V3")
    few_leads = ECG(synthetic_signal(100, 10, leads=three), 100.0, three, {"source": "three.npz"})
    with pytest.raises(ECGReadError, match="three.npz: preprocessing failed"):
        predictor.predict(few_leads)


def test_predict_many_keeps_order_reports_failures_and_is_batch_invariant(predictor, ecg_folder):
    inputs = [ecg_folder, ecg_folder / "missing.hea"]
    reference = predictor.predict_many(inputs, batch_size=1, num_workers=0)
    assert [p.record_id for p in reference.predictions] == ["rec_a", "rec_d", "rec_c", "rec_b"]
    reasons = {f.source.split("/")[-1]: f.reason for f in reference.failures}
    assert set(reasons) == {"missing.hea", "rec_bad.hea"}
    assert "truncated" in reasons["rec_bad.hea"]
    by_id = {p.record_id: p for p in reference.predictions}
    assert by_id["rec_c"].duration_s == 8.0 and "zero-padded" in by_id["rec_c"].notes[0]  # an 8-s record
    assert by_id["rec_a"].duration_s == 10.0 and by_id["rec_a"].notes == ()
    for batch_size, workers, loader in ((3, 2, "process"), (64, 1, "thread"), (2, 2, "thread")):
        again = predictor.predict_many(inputs, batch_size=batch_size, num_workers=workers, loader=loader)
        assert [p.record_id for p in again.predictions] == [p.record_id for p in reference.predictions]
        a = np.array([list(p.probabilities.values()) for p in again.predictions])
        b = np.array([list(p.probabilities.values()) for p in reference.predictions])
        assert np.abs(a - b).max() < 1e-5
        assert len(again.failures) == 2


def test_model_sources_folder_checkpoint_and_errors(model_dir, tmp_path):
    from ecgfm.models import load
    from ecgfm.models.hub import checkpoint_state

    ckpt = tmp_path / "best.pt"
    torch.save(checkpoint_state(load(model_dir), epoch=3), ckpt)
    x = synthetic_signal(100, 10, seed=9).astype(np.float32)[None]
    from_dir = Predictor.from_pretrained(model_dir).predict_proba(x, fs=100)
    from_ckpt = Predictor.from_pretrained(ckpt).predict_proba(x, fs=100)
    assert np.allclose(from_dir, from_ckpt)
    run = tmp_path / "run"  # a run folder: its pretrained/ model
    from ecgfm.models import save

    save(load(model_dir), run / "pretrained")
    assert np.allclose(Predictor.from_pretrained(run).predict_proba(x, fs=100), from_dir)
    with pytest.raises(FileNotFoundError, match="model not found"):
        Predictor.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="backend"):
        Predictor.from_pretrained(model_dir, backend="tensorflow")


def test_report_writes_csv_json_parquet(predictor, ecg_folder, tmp_path):
    report = predictor.predict_many([ecg_folder])
    for ext in ("csv", "json", "parquet"):
        with umask(0o022):
            out = report.write(tmp_path / f"pred.{ext}")
        assert file_mode(out) == 0o644  # the usual permissions, not mkstemp's private 0o600
        if ext == "json":
            rows = json.loads(out.read_text())
            assert rows[0]["findings"][0]["label"] == "NORM" and set(rows[0]["probabilities"]) == set(LABELS)
            assert {row["record_id"]: row["duration_s"] for row in rows}["rec_c"] == 8.0
            continue
        table = pd.read_csv(out) if ext == "csv" else pd.read_parquet(out)
        assert list(table.columns[:4]) == ["record_id", "source", "duration_s", "notes"]
        assert set(LABELS) <= set(table.columns)
        assert len(table) == len(report.predictions) == 4
        assert table["findings"].str.contains("NORM \\(normal ECG\\)").all()
    with pytest.raises(ValueError, match="output format"):
        output_format("pred.xlsx")


def test_import_ecgfm_does_not_import_torch():
    code = "import sys, ecgfm; assert 'torch' not in sys.modules; ecgfm.Predictor; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "ok\n"


def test_real_ptbxl_records_at_both_rates(predictor, ptbxl_dir):
    """Real data: PTB-XL records at 100 and 500 Hz all predict, each resampled to the model's 100 Hz x 10 s input."""
    files = sorted((ptbxl_dir / "records100").glob("*/*.hea"))[:8] + sorted((ptbxl_dir / "records500").glob("*/*.hea"))[:8]
    assert len(files) == 16, "PTB-XL folder has too few records"
    report = predictor.predict_many(files, batch_size=5)
    assert not report.failures and len(report.predictions) == 16
    assert [p.record_id for p in report.predictions] == [f.stem for f in files]
    assert all(p.duration_s == 10.0 and p.notes == () for p in report.predictions)
    for header in (files[0], files[-1]):
        loaded = predictor.preprocess(header)
        assert loaded.array.shape == (12, 1000) and loaded.record_id == header.stem and loaded.source == str(header)
    probs = np.array([list(p.probabilities.values()) for p in report.predictions])
    assert np.isfinite(probs).all() and probs.std(axis=0).min() > 0  # outputs depend on the record


def test_channels_last_is_on_for_cpu_where_supported_and_gives_the_same_logits(model_dir):
    """The shipped xresnet1d ensemble runs channels-last on CPU by default, with the 1-D path's logits."""
    fast, plain = Predictor.from_pretrained("default8"), Predictor.from_pretrained("default8", channels_last=False)
    assert all(m.channels_last for m in fast.backend.module.model.members)
    assert not any(m.channels_last for m in plain.backend.module.model.members)
    X = np.stack([synthetic_signal(100, 10, seed=s).astype(np.float32) for s in range(3)])
    np.testing.assert_allclose(fast.backend(X), plain.backend(X), atol=1e-4)
    tiny = Predictor.from_pretrained(model_dir)  # resnet1d: no channels-last mode, so the default leaves it
    assert not tiny.backend.module.model.channels_last
    with pytest.raises(ValueError, match="does not support channels-last"):
        Predictor.from_pretrained(model_dir, channels_last=True)
