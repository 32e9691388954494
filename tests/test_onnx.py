"""ONNX export: parity with PyTorch on real PTB-XL records, dynamic batch size, the ONNX backend of predict."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import file_mode, umask
from ecgfm.cli.main import app
from ecgfm.inference import Predictor
from ecgfm.inference.onnx import OnnxBackend, export_onnx, max_abs_difference, onnx_model_for
from ecgfm.models import load
from predict_fixtures import make_tiny_model, write_wfdb

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    """The tiny model exported once for the module with ``ecgfm export`` under umask 022: (onnx path, torch model
    with ``.info``, CLI output)."""
    out = tmp_path_factory.mktemp("deploy") / "model.onnx"
    with umask(0o022):
        result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["export", "--out", str(out), "--model",
                                                                str(model_dir)])
    assert result.exit_code == 0, result.output
    return out, load(model_dir), result.output


def test_parity_with_pytorch_on_real_ptbxl_records(exported, ptbxl_dir):
    path, model, _ = exported
    predictor = Predictor.from_pretrained(path.parent, backend="onnx")
    files = sorted((ptbxl_dir / "records100").glob("*/*.hea"))[:16] + sorted((ptbxl_dir / "records500").glob("*/*.hea"))[:16]
    batch = np.stack([predictor.preprocess(f).array for f in files])  # PTB-XL records: 10 s, the model's input
    diff = max_abs_difference(model, path, batch)
    print(f"ONNX vs PyTorch on {len(files)} PTB-XL records: max |logit difference| = {diff:.2e}")
    assert diff < 1e-4


def test_dynamic_batch_axis(exported):
    path, model, _ = exported
    info = model.info
    backend = OnnxBackend(path, num_threads=1)
    rng = np.random.default_rng(0)
    for batch_size in (1, 3, 17):
        x = rng.normal(0, 0.5, (batch_size, 12, 1000)).astype(np.float32)
        assert backend(x).shape == (batch_size, len(info.labels))
    assert max_abs_difference(model, path) < 1e-4  # random inputs, batch of 4


def test_config_beside_onnx_and_predictor_backends_agree(exported, model_dir, tmp_path):
    path, model, _ = exported
    info = model.info
    assert json.loads((path.parent / "config.json").read_text()) == info.to_dict()
    header = write_wfdb(tmp_path, "rec", fs=500, seed=3)
    via_onnx_file = Predictor.from_pretrained(path, backend="onnx").predict(header)
    via_torch = Predictor.from_pretrained(model_dir).predict(header)
    assert via_onnx_file.findings[0].label == via_torch.findings[0].label
    assert max(abs(via_onnx_file.probabilities[k] - via_torch.probabilities[k]) for k in info.labels) < 1e-5
    other = copy.deepcopy(model)
    other.info = info.replace(labels=["X", "Y", "Z"], thresholds={})
    with pytest.raises(ValueError, match="different model"):
        export_onnx(other, path)


def test_onnx_backend_exports_into_cache_once(exported, model_dir, tmp_path, monkeypatch):
    import ecgfm.inference.onnx as onnx_module

    path, _, _ = exported
    calls = []

    def fake_export(model, target):  # the real export is tested above; here only the caching logic
        calls.append(target)
        target.parent.mkdir(parents=True)
        target.write_bytes(path.read_bytes())
        (target.parent / "config.json").write_text(json.dumps(model.info.to_dict()))
        return target

    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_module, "export_onnx", fake_export)
    first, info = onnx_model_for(model_dir)
    assert first.is_relative_to(tmp_path / "cache") and info.labels == load(model_dir).info.labels
    again, _ = onnx_model_for(model_dir)
    assert again == first and len(calls) == 1
    predictor = Predictor.from_pretrained(model_dir, backend="onnx")  # served from the cache
    assert predictor.backend.path == first and len(calls) == 1


def test_export_cli_output_and_predict_with_onnx_backend(exported, model_dir, tmp_path):
    path, _, output = exported
    assert (path.parent / "config.json").exists() and "difference" in output
    # written with the usual permissions (0o666 minus the umask), not mkstemp's private 0o600
    assert file_mode(path) == 0o644 and file_mode(path.parent / "config.json") == 0o644
    runner = CliRunner(env={"COLUMNS": "250"})
    write_wfdb(tmp_path / "ecgs", "a", fs=250, seed=1)
    result = runner.invoke(app, ["predict", str(tmp_path / "ecgs"), "--model", str(path), "--backend", "onnx",
                                 "-o", str(tmp_path / "p.csv"), "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "model.txt"), "--model", str(model_dir)])
    assert result.exit_code == 2 and ".onnx" in result.output
