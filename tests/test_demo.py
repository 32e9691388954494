"""`ecgfm demo` end to end on the shared PTB-XL subset with a tiny budget: report written, stages resume."""
from __future__ import annotations

import json

from ecgfm.demo import HELD_OUT, DemoPreset, run_demo

TINY = DemoPreset(name="test", model="resnet1d_small", pretrain_epochs=1, n_bootstrap=50, compare_sizes=[10],
                  compare_seeds=[0], compare_epochs=1)


def test_demo_runs_every_stage_and_resumes(ptbxl_dir, tmp_path):
    lines: list[str] = []
    report = run_demo(tmp_path / "demo", ptbxl=ptbxl_dir, preset=TINY, device="cpu", log=lines.append)
    text = report.read_text()
    for label in HELD_OUT:
        assert label in text
    assert "data:image/png;base64" in text  # the data-efficiency plot is embedded
    config = json.loads((tmp_path / "demo" / "demo_config.json").read_text())
    assert set(config["timings_s"]) == {"pretrain_s", "evaluate_s", "compare_s", "explain_s"}
    explained = json.loads((tmp_path / "demo" / "explanation" / "explanation.json").read_text())
    assert explained["label"] == "CRBBB" and len(explained["lead_contribution"]) == 12
    assert "3. What the model sees" in text and f"ecgfm explain {explained['source']}" in text
    assert config["held_out"] == list(HELD_OUT)
    foundation = json.loads((tmp_path / "demo" / "foundation" / "pretrained" / "config.json").read_text())
    assert not set(HELD_OUT) & set(foundation["labels"])  # the held-out statements were removed from pre-training

    again: list[str] = []
    run_demo(tmp_path / "demo", ptbxl=ptbxl_dir, preset=TINY, device="cpu", log=again.append)
    assert any("done earlier" in line for line in again)
    assert not any(line.startswith("pre-training resnet1d_small") for line in again)
