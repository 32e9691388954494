"""``ecgfm export``: write a model as ONNX (with its config.json beside it) for ONNX Runtime deployments."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, fail, user_errors


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        onnx: Optional[Path] = typer.Option(None, "--onnx", help="Write an ONNX model to this .onnx file; the "
                                            "model's config.json (preprocessing, labels, thresholds) goes beside it."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model folder or .pt checkpoint; "
                                            "default: the shipped model."),
        opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
        check: bool = typer.Option(True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch on random "
                                   "inputs and report the largest difference."),
    ) -> None:
        """Export a model for deployment (ONNX, dynamic batch size; sliding-window aggregation included).

        The exported folder is used by `ecgfm predict --backend onnx --model OUT.onnx` and `ecgfm serve`.

        Example: ecgfm export --onnx deploy/model.onnx --model runs/finetune/best
        """
        from ecgfm.inference.onnx import export_onnx, max_abs_difference
        from ecgfm.inference.predictor import load_model

        if onnx is None:
            fail("nothing to export: give --onnx OUT.onnx")
        with user_errors():
            if onnx.suffix.lower() != ".onnx":
                raise ValueError(f"--onnx must name a .onnx file, got {onnx}")
            torch_model, info = load_model(model)
            path = export_onnx(torch_model, info, onnx, opset=opset)
        console.print(f"wrote {path} and {path.parent / 'config.json'} ({path.stat().st_size / 1e6:.1f} MB, "
                      f"{len(info.labels)} labels)", highlight=False)
        if check:
            diff = max_abs_difference(torch_model, info, path)
            console.print(f"max |ONNX - PyTorch| logit difference on random inputs: {diff:.2e}", highlight=False)
            if diff > 1e-4:
                fail(f"ONNX output differs from PyTorch by {diff:.2e} (> 1e-4)", code=1)
