"""The shipped foundation model: loads offline, and its predictions on PTB-XL fold 10 reproduce its stored metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ecgfm
from ecgfm.models import default_weights_dir, get_weights, list_pretrained, load


@pytest.fixture(scope="module")
def shipped():
    return load()


def test_shipped_model_loads_offline_and_describes_itself(shipped):
    model, info = shipped, shipped.info
    assert list_pretrained()[0] == "anylead" and default_weights_dir() == get_weights("anylead").path
    assert info.arch in ecgfm.list_models() and get_weights().info.to_dict() == info.to_dict()
    assert ecgfm.load_pretrained().info.to_dict() == info.to_dict()  # the top-level name for the same thing
    assert len(info.labels) == model.num_labels >= 40
    assert set(info.thresholds) == set(info.labels)
    assert info.preprocess["steps"], "the model must carry its preprocessing"
    assert all(info.label_descriptions.get(label) for label in info.labels)
    assert (default_weights_dir() / "model.safetensors").stat().st_size < 30e6
    summary = info.metrics["test"]["summary"]
    assert 0.5 < summary["macro_auc"]["value"] <= 1.0


def test_the_shipped_name_and_the_default_are_the_same_weights(shipped):
    named = load("anylead")
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.3, (2, shipped.info.in_leads, 1000)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(named(x), shipped(x))
    with pytest.raises(ValueError, match="no shipped weights named 'default9'"):
        get_weights("default9")


def test_a_model_folder_written_without_a_checksum_still_loads(tmp_path):
    """Folders from before checksums (the shipped default8 folder of 3d3b983 is one) load as they are."""
    from ecgfm.models import ModelInfo, create, save

    model = create("resnet1d_small", 2).eval()
    model.info = ModelInfo.from_model(model, ["A", "B"], fs=100.0)
    save(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("extra")
    (tmp_path / "config.json").write_text(json.dumps(config))
    x = torch.randn(1, 12, 1000)
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path)(x), model(x))


@pytest.mark.parametrize("name", list_pretrained())
def test_shipped_weights_reproduce_their_fold10_metrics(ptbxl_dir, name):
    from ecgfm.datasets import load_labelled
    from ecgfm.evaluation.metrics import roc_auc
    from ecgfm.evaluation.model_eval import score

    shipped = load(name)
    info = shipped.info
    stored = info.metrics["test"]["per_label"]
    data = load_labelled(ptbxl=ptbxl_dir, labels=info.labels, pipeline=info.pipeline(), train_folds=(),
                         progress=False)
    test = data.part("test")
    probs = score(shipped, test)
    for label in stored:
        j = info.labels.index(label)
        auc = roc_auc(test.Y[:, j], probs[:, j])
        assert auc == pytest.approx(stored[label]["auc"], abs=1e-4), label
    macro = np.mean([stored[label]["auc"] for label in stored])
    assert macro == pytest.approx(info.metrics["test"]["summary"]["macro_auc"]["value"], abs=1e-9)


@pytest.mark.parametrize(("card", "name"), [("MODEL_CARD.md", "anylead"),
                                          ("docs/model_card_default8.md", "default8")])
def test_model_card_tables_are_the_shipped_metrics(card, name):
    """Each card's metric tables are exactly what ``card_tables`` renders from its weights' config.json."""
    from pathlib import Path

    from ecgfm.evaluation.release import CARD_END, CARD_START, card_tables

    text = (Path(__file__).resolve().parents[1] / card).read_text()
    config = json.loads((get_weights(name).path / "config.json").read_text())
    block = text.split(CARD_START, 1)[1].split(CARD_END, 1)[0]
    assert block.strip() == card_tables(config)
    assert f"| macro AUC | {config['metrics']['test']['summary']['macro_auc']['value']:.4f} (" in block


def test_update_card_rewrites_only_the_generated_block(tmp_path):
    from ecgfm.evaluation.release import CARD_END, CARD_START, card_tables, update_card

    config = json.loads((default_weights_dir() / "config.json").read_text())
    card = tmp_path / "CARD.md"
    card.write_text(f"# Card\n\nprose before\n\n{CARD_START}\nstale table\n{CARD_END}\n\nprose after\n")
    update_card(card, config)
    text = card.read_text()
    assert text.startswith("# Card\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert "stale table" not in text and card_tables(config) in text
    card.write_text("no markers here")
    with pytest.raises(ValueError, match="CARD.md: no generated block"):
        update_card(card, config)


def test_card_tables_leave_out_intervals_the_bootstrap_could_not_give():
    from ecgfm.evaluation.release import card_tables

    config = json.loads((default_weights_dir() / "config.json").read_text())
    label = next(iter(config["metrics"]["test"]["per_label"]))
    config["metrics"]["test"]["per_label"][label].update(auc=0.5, auc_ci_low=float("nan"), auc_ci_high=float("nan"))
    row = next(line for line in card_tables(config).splitlines() if line.startswith(f"| {label} |"))
    assert "| 0.500 |" in row and "nan" not in row


# --- anylead: the shipped default reads reduced lead sets -----------------------------------------------------------
def test_anylead_reads_a_single_lead_file_with_that_sets_thresholds(tmp_path, synthetic_ecg, write_wfdb):
    from ecgfm.inference.predictor import Predictor
    from ecgfm.signal.leads import reorder_leads

    info = get_weights("anylead").info
    assert info.lead_mask and set(info.extra["lead_set_thresholds"]) == {"12-lead", "limb6", "I+II", "V1-V6", "I"}
    assert set(info.metrics["lead_sets"]) == set(info.extra["lead_set_thresholds"])
    predictor = Predictor.from_pretrained("anylead")
    single = predictor.predict(write_wfdb(tmp_path, "wearable", reorder_leads(synthetic_ecg(), ("I",), derive=False)))
    assert single.leads == {"lead_set": "I", "used": ["I"], "derived": [], "ignored": []}
    assert single.quality["ok"], single.quality  # a single-lead record is not "eleven leads missing" to this model
    assert all(f.threshold == info.extra["lead_set_thresholds"]["I"][f.label] for f in single.findings)
    assert predictor.predict(synthetic_ecg()).leads["lead_set"] == "12-lead"


def test_a_model_needing_every_lead_names_the_one_that_reads_fewer(tmp_path, synthetic_ecg, write_wfdb):
    from ecgfm.errors import ECGReadError
    from ecgfm.inference.predictor import Predictor
    from ecgfm.signal.leads import reorder_leads

    chest = write_wfdb(tmp_path, "chest", reorder_leads(synthetic_ecg(), ("V1", "V2", "V3"), derive=False))
    with pytest.raises(ECGReadError, match=r"chest\.hea.*lacks leads.*--model anylead"):
        Predictor.from_pretrained("default8").predict(chest)
    eight = reorder_leads(synthetic_ecg(), ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"), derive=False)
    loud = eight.replace(signal=eight.signal * 20, source="loud.xml")  # an 8-lead export, gain wrong
    with pytest.raises(ECGReadError, match=r"loud\.xml.*preprocessing failed: implausible amplitude") as refused:
        Predictor.from_pretrained("default8").predict(loud)
    assert "anylead" not in str(refused.value)  # its leads are enough: the hint would mislead


def test_anylead_reproduces_its_fold10_lead_set_metrics(ptbxl_dir):
    from ecgfm.datasets import load_labelled
    from ecgfm.evaluation.leadsets import lead_set_probabilities
    from ecgfm.evaluation.metrics import per_label_auc

    model = load("anylead")
    test = load_labelled(ptbxl=ptbxl_dir, labels=model.info.labels, pipeline=model.info.pipeline(), train_folds=(),
                         progress=False).part("test")
    scored = [j for j, n in enumerate(np.nansum(test.Y == 1, axis=0)) if n >= 5]
    for name in ("12-lead", "I"):
        auc = per_label_auc(test.Y[:, scored], lead_set_probabilities(model, test, name)[:, scored])
        assert np.mean(auc) == pytest.approx(model.info.metrics["lead_sets"][name]["macro_auc"]["value"], abs=1e-4)


def test_anylead_card_tables_show_each_lead_set():
    from ecgfm.evaluation.release import card_tables

    config = json.loads((get_weights("anylead").path / "config.json").read_text())
    assert f"| I | {config['metrics']['lead_sets']['I']['macro_auc']['value']:.4f} (" in card_tables(config)
