"""Predictor: inputs (files, folders, globs), preprocessing from the model, windowed inference, thresholds, failures."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from ecgfm import ECG, STANDARD_LEADS, read
from ecgfm.errors import ECGReadError
from ecgfm.inference import Predictor, discover_inputs
from ecgfm.inference.predictor import output_format
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
    assert np.allclose(predictor.predict_proba(x[None])[0], list(result.probabilities.values()), atol=1e-6)


def test_windowed_inference_matches_trainer_aggregation(model_dir):
    """The predictor scores records with the trainer's sliding windows and aggregation (max of window logits)."""
    from ecgfm.models import load_pretrained
    from ecgfm.training.data import ArrayDataset
    from ecgfm.training.predict import predict_logits

    predictor = Predictor.from_pretrained(model_dir)
    model, info = load_pretrained(model_dir)
    X = np.stack([synthetic_signal(100, 10, seed=s).astype(np.float32) for s in range(5)])
    expected = predict_logits(model, ArrayDataset(X, np.zeros((5, 3))), window=info.window, stride=info.stride,
                              aggregate=info.aggregate)
    assert np.allclose(predictor.backend(X), expected, atol=1e-5)
    for aggregate, stride in (("mean", 100), ("max", 60)):
        other = Predictor.from_pretrained(model_dir)
        other.backend.module.aggregate, other.backend.module.stride = aggregate, stride
        expected = predict_logits(model, ArrayDataset(X, np.zeros((5, 3))), window=info.window, stride=stride,
                                  aggregate=aggregate)
        assert np.allclose(other.backend(X), expected, atol=1e-5)


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
    for batch_size, workers, loader in ((3, 2, "process"), (64, 1, "thread"), (2, 2, "thread")):
        again = predictor.predict_many(inputs, batch_size=batch_size, num_workers=workers, loader=loader)
        assert [p.record_id for p in again.predictions] == [p.record_id for p in reference.predictions]
        a = np.array([list(p.probabilities.values()) for p in again.predictions])
        b = np.array([list(p.probabilities.values()) for p in reference.predictions])
        assert np.abs(a - b).max() < 1e-5
        assert len(again.failures) == 2


def test_model_sources_folder_checkpoint_and_errors(model_dir, tmp_path):
    from ecgfm.models import load_pretrained
    from ecgfm.models.checkpoint import torch_save_atomic

    model, info = load_pretrained(model_dir)
    ckpt = tmp_path / "best.pt"
    torch_save_atomic({"model": model.state_dict(), "info": info.to_dict()}, ckpt)
    x = synthetic_signal(100, 10, seed=9).astype(np.float32)[None]
    from_dir = Predictor.from_pretrained(model_dir).predict_proba(x)
    from_ckpt = Predictor.from_pretrained(ckpt).predict_proba(x)
    assert np.allclose(from_dir, from_ckpt)
    with pytest.raises(FileNotFoundError, match="model not found"):
        Predictor.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="backend"):
        Predictor.from_pretrained(model_dir, backend="tensorflow")


def test_report_writes_csv_json_parquet(predictor, ecg_folder, tmp_path):
    report = predictor.predict_many([ecg_folder])
    for ext in ("csv", "json", "parquet"):
        out = report.write(tmp_path / f"pred.{ext}")
        if ext == "json":
            rows = json.loads(out.read_text())
            assert rows[0]["findings"][0]["label"] == "NORM" and set(rows[0]["probabilities"]) == set(LABELS)
            continue
        table = pd.read_csv(out) if ext == "csv" else pd.read_parquet(out)
        assert list(table.columns[:2]) == ["record_id", "source"] and set(LABELS) <= set(table.columns)
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
    for header in (files[0], files[-1]):
        x, record_id, source = predictor.preprocess(header)
        assert x.shape == (12, 1000) and record_id == header.stem and source == str(header)
    probs = np.array([list(p.probabilities.values()) for p in report.predictions])
    assert np.isfinite(probs).all() and probs.std(axis=0).min() > 0  # outputs depend on the record


def test_channels_last_is_on_for_cpu_where_supported_and_gives_the_same_logits(model_dir):
    """The shipped xresnet1d ensemble runs channels-last on CPU by default, with the 1-D path's logits."""
    fast, plain = Predictor.from_pretrained(), Predictor.from_pretrained(channels_last=False)
    assert all(m.channels_last for m in fast.backend.module.model.members)
    assert not any(m.channels_last for m in plain.backend.module.model.members)
    X = np.stack([synthetic_signal(100, 10, seed=s).astype(np.float32) for s in range(3)])
    np.testing.assert_allclose(fast.backend(X), plain.backend(X), atol=1e-4)
    tiny = Predictor.from_pretrained(model_dir)  # resnet1d: no channels-last mode, so the default leaves it
    assert not tiny.backend.module.model.channels_last
    with pytest.raises(ValueError, match="does not support channels-last"):
        Predictor.from_pretrained(model_dir, channels_last=True)
