"""Ingest: per-file failures, resuming a killed ingest, idempotence, parallel writers, PTB-XL / Challenge / CLI."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from typer.testing import CliRunner

from ecgfm.cli.main import app
from ecgfm.datasets.ingest import ingest
from ecgfm.datasets.manifest import Manifest
from ecgfm.datasets.store import ECGStore
from ecgfm.datasets.synthetic import SyntheticSource, write_synthetic_wfdb
from ecgfm.signal import Pipeline


def _files_digest(path: Path) -> dict[str, str]:
    """Content hash of every file under ``path`` (relative name -> sha256)."""
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def _store_content(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.read_parquet(path / "index.parquet"), zarr.open_array(path / "signals", mode="r")[:]


def test_failures_are_reported_and_the_rest_ingested(tmp_path, synthetic_ecg, write_wfdb):
    table = write_synthetic_wfdb(tmp_path / "files", 3, fs=100)
    write_wfdb(tmp_path / "files", "fewleads", synthetic_ecg(fs=100, leads=("V1", "V2")))
    (tmp_path / "files" / "broken.hea").write_text("this is not a WFDB header\n")
    rows = [*table["path"], "fewleads.hea", "broken.hea", "absent.hea", "notes.txt"]
    (tmp_path / "files" / "notes.txt").write_text("hello")
    manifest_file = tmp_path / "files" / "manifest.csv"
    pd.DataFrame({"path": rows, "labels": ["SR"] * len(rows)}).to_csv(manifest_file, index=False)
    report = ingest(manifest_file, tmp_path / "store", shard_size=2, workers=1, progress=False)
    assert (report.records, report.written, report.failed) == (7, 3, 4)
    failures = pd.read_csv(tmp_path / "store" / "failures.csv")
    assert [Path(p).name for p in failures["path"]] == ["fewleads.hea", "broken.hea", "absent.hea", "notes.txt"]
    reasons = dict(zip(failures["record_id"], failures["reason"]))
    assert "lacks leads" in reasons["fewleads"] and "not found" in reasons["absent"]
    assert "unknown file type" in reasons["notes"] and reasons["broken"]
    store = ECGStore(tmp_path / "store")
    assert list(store.index["record_id"]) == list(table["record_id"]) and len(store.failures) == 4
    assert store.signal(2).shape == (12, 1000)


def test_killed_ingest_resumes_without_redoing_finished_shards(tmp_path):
    source = dict(n=60, fs=100.0)
    killed = tmp_path / "killed"
    code = ("from ecgfm.datasets.ingest import ingest; from ecgfm.datasets.synthetic import SyntheticSource; "
            f"ingest(SyntheticSource(**{source!r}), {str(killed)!r}, shard_size=4, workers=1, progress=False)")
    process = subprocess.Popen([sys.executable, "-c", code])
    first_marker = killed / "progress" / "shard-000000.json"
    deadline = time.monotonic() + 60
    while not first_marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = sorted((killed / "progress").glob("shard-*.json"))
    assert 1 <= len(done) < 15, "the ingest was not killed part-way"
    assert not (killed / "index.parquet").exists()
    with pytest.raises(ValueError, match="incomplete store"):
        ECGStore(killed)
    stamps = {p.name: p.stat().st_mtime_ns for p in done}
    (killed / "signals" / "c" / "14").mkdir(parents=True, exist_ok=True)
    (killed / "signals" / "c" / "14" / "0.deadbeef.partial").write_bytes(b"torn write")  # a killed shard write
    resumed = ingest(SyntheticSource(**source), killed, shard_size=4, workers=1, progress=False)
    assert resumed.shards_skipped == len(done) and resumed.shards_processed == 15 - len(done)
    assert {p.name: p.stat().st_mtime_ns for p in done} == stamps  # finished shards were not rewritten
    assert not list((killed / "signals").rglob("*.partial"))
    fresh = tmp_path / "fresh"
    ingest(SyntheticSource(**source), fresh, shard_size=4, workers=1, progress=False)
    assert _files_digest(killed / "signals") == _files_digest(fresh / "signals")
    pd.testing.assert_frame_equal(pd.read_parquet(killed / "index.parquet"), pd.read_parquet(fresh / "index.parquet"))


def test_rerun_is_idempotent_and_parallel_equals_serial(tmp_path):
    source = SyntheticSource(20, fs=100)
    serial = tmp_path / "serial"
    ingest(source, serial, shard_size=4, workers=1, progress=False)
    before = _files_digest(serial)
    again = ingest(source, serial, shard_size=4, workers=1, progress=False)
    assert again.shards_processed == 0 and again.shards_skipped == 5
    assert _files_digest(serial) == before
    parallel = tmp_path / "parallel"
    ingest(source, parallel, shard_size=4, workers=2, progress=False)
    assert _files_digest(parallel) == before


def test_an_existing_store_is_never_mixed_with_another_job(tmp_path):
    out = tmp_path / "store"
    ingest(SyntheticSource(6, fs=100), out, shard_size=4, workers=1, progress=False)
    with pytest.raises(ValueError, match="uv_per_lsb"):
        ingest(SyntheticSource(6, fs=100), out, shard_size=4, uv_per_lsb=2.0, workers=1, progress=False)
    with pytest.raises(ValueError, match="plan_digest"):
        ingest(SyntheticSource(6, fs=100, seed=1), out, shard_size=4, workers=1, progress=False)
    report = ingest(SyntheticSource(6, fs=100, seed=1), out, shard_size=4, workers=1, progress=False, overwrite=True)
    assert report.shards_processed == 2 and ECGStore(out).index["record_id"][0].startswith("syn1-")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an ecgfm store"):
        ingest(SyntheticSource(2, fs=100), tmp_path / "other", workers=1, progress=False, overwrite=True)
    assert (tmp_path / "other" / "precious.txt").exists()


def test_ptbxl_records_match_read_record_and_pipeline(ptbxl_dir, tmp_path):
    from ecgfm.datasets.ptbxl import PTBXL

    ptbxl = PTBXL(ptbxl_dir)
    full = Manifest.from_ptbxl(ptbxl, fs=100)
    manifest = Manifest(full.records.iloc[:12].reset_index(drop=True), full.label_names, full.description)
    report = ingest(manifest, tmp_path / "ptbxl", shard_size=8, workers=1, progress=False)
    assert report.written == 12 and report.failed == 0 and report.clipped_records == 0
    store = ECGStore(tmp_path / "ptbxl")
    pipeline = Pipeline.default(fs=100)
    for i in (0, 11):
        ecg_id = int(store.index["record_id"][i])
        expected = pipeline.to_array(ptbxl.read_record(ecg_id, fs=100))
        np.testing.assert_allclose(store.signal(i), expected, atol=0.0005 + 1e-6, rtol=0)
        assert list(store.index["labels"][i]) == sorted(ptbxl.metadata.loc[ecg_id, "scp_codes"])
        assert store.index["split"][i] == {True: "train", False: "val/test"}.get(
            ptbxl.metadata.loc[ecg_id, "strat_fold"] <= 8, store.index["split"][i])
    assert store.summary()["bytes_per_record"] < 24000  # smaller than raw int16 at 100 Hz


def test_cli_ingests_a_ptbxl_folder_and_a_challenge_folder(tmp_path, fake_ptbxl):
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(fake_ptbxl), str(tmp_path / "p"), "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    store = ECGStore(tmp_path / "p")
    assert len(store) == 9 and store.index.set_index("record_id").loc["7", "split"] == "val"
    write_synthetic_wfdb(tmp_path / "challenge", 5, fs=500, challenge=True)
    result = runner.invoke(app, ["ingest", str(tmp_path / "challenge"), str(tmp_path / "c"), "--fs", "250",
                                 "--workers", "1", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert '"written": 5' in result.output
    challenge = ECGStore(tmp_path / "c")
    assert challenge.fs == 250 and challenge.n_samples == 2500
    assert set(challenge.label_names) <= {"SR", "SBRAD", "STACH", "LVOLT"} and challenge.label_names
    bad = runner.invoke(app, ["ingest", str(tmp_path / "nowhere"), str(tmp_path / "x")])
    assert bad.exit_code == 2 and "not found" in bad.output
    help_text = runner.invoke(app, ["ingest", "--help"]).output
    assert "Example: ecgfm ingest" in help_text


def test_pretrain_trains_from_a_store(tmp_path):
    from ecgfm.training.pretrain import training_data

    store = tmp_path / "store"
    ingest(SyntheticSource(48, fs=100), store, shard_size=16, workers=1, progress=False)
    data = training_data("xresnet1d50", store=store, min_count=1, exclude=["LVOLT"], progress=False)
    assert "LVOLT" not in data.labels and data.fs == 100 and data.preprocess == ECGStore(store).spec.pipeline
    assert data.source["kind"] == "store" and data.describe()["excluded_labels"] == ["LVOLT"]
    with pytest.raises(ValueError, match="cannot exclude"):
        training_data("xresnet1d50", store=store, exclude=["NOPE"], progress=False)
    result = CliRunner().invoke(app, ["pretrain", "--store", str(store), "--out", str(tmp_path / "run"),
                                      "--arch", "resnet1d_small", "--set", "epochs=1", "--set", "batch_size=8",
                                      "--min-count", "1", "--threads", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"ecgfm store"' in config and '"SR"' in config
    assert (tmp_path / "run" / "pretrained" / "model.safetensors").exists()
    # --data recognises a store too
    again = CliRunner().invoke(app, ["pretrain", "--data", str(store), "--out", str(tmp_path / "run2"),
                                     "--arch", "resnet1d_small", "--set", "epochs=1", "--set", "batch_size=8",
                                     "--min-count", "1", "--threads", "1", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert '"ecgfm store"' in (tmp_path / "run2" / "config.json").read_text()
