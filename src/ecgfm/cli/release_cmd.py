"""``ecgfm release``: thresholds, test metrics and model card for a trained model (``ecgfm.evaluation.release``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, user_errors
from ecgfm.cli.options import Data, Manifest, Ptbxl, Store, command_line, source_kwargs


def register(app: typer.Typer) -> None:
    @app.command("release")
    def release_command(
        ctx: typer.Context,
        model: str = typer.Argument(..., help="The trained model: a run folder, model folder or .pt checkpoint."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder of the released model (e.g. "
                                 "src/ecgfm/weights/NAME)."),
        data: Data = None,
        ptbxl: Ptbxl = None,
        manifest: Manifest = None,
        store: Store = None,
        threshold: str = typer.Option("f1", "--threshold", help="Rule fitting each label's threshold on the "
                                      "validation records."),
        n_bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the CIs."),
        report_dir: Path = typer.Option(Path("runs/release-evaluation"), "--report-dir",
                                        help="Where the full evaluation report goes."),
        card: Optional[Path] = typer.Option(None, "--card", help="A model card (MODEL_CARD.md) whose generated "
                                            "metric tables to rewrite."),
    ) -> None:
        """Release a trained model: per-label thresholds fitted on the validation records, test metrics with 95% CIs
        stored in its config.json, and (with --card) the model card's metric tables regenerated from them.

        Example: ecgfm release runs/fm8 --ptbxl ../shared/data/ptbxl --out src/ecgfm/weights/default8 --card docs/model_card_default8.md
        """
        from ecgfm.datasets import load_labelled
        from ecgfm.evaluation.release import release, update_card
        from ecgfm.models import load

        with user_errors():
            net = load(model)
            labelled = load_labelled(**source_kwargs(data, ptbxl, manifest, store), labels=net.info.labels,
                                     pipeline=net.info.pipeline(), progress=False)
            path = release(net, labelled, out, rule=threshold, n_bootstrap=n_bootstrap, report_dir=report_dir,
                           command=command_line(ctx))
            config = json.loads((Path(path) / "config.json").read_text())
            if card is not None:
                update_card(card, config)
                console.print(f"updated the metric tables of {card}")
        console.print(config["metrics"]["test"]["summary"]["text"], highlight=False)
        console.print(f"released to {path}")
