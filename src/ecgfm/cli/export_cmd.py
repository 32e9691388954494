"""``ecgfm export``: write a model as ONNX (with its config.json beside it) for ONNX Runtime deployments."""
from __future__ import annotations

from pathlib import Path

import typer

from ecgfm.cli.common import console, fail, user_errors
from ecgfm.cli.options import Model


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        out: Path = typer.Option(..., "--out", "-o", help="The .onnx file to write; the model's config.json "
                                 "(preprocessing, labels, thresholds) goes beside it."),
        model: Model = "pretrained",
        opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
        check: bool = typer.Option(True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch on random "
                                   "inputs and report the largest difference."),
    ) -> None:
        """Export a model for deployment (ONNX, dynamic batch size; sliding-window aggregation included).

        The exported folder is used by `ecgfm predict --backend onnx --model OUT.onnx` and `ecgfm serve`.

        Example: ecgfm export --out deploy/model.onnx --model runs/finetune
        """
        from ecgfm.inference.onnx import export_onnx, max_abs_difference
        from ecgfm.models import load

        with user_errors():
            if out.suffix.lower() != ".onnx":
                raise ValueError(f"--out must name a .onnx file, got {out}")
            net = load(model)
            path = export_onnx(net, out, opset=opset)
        console.print(f"wrote {path} and {path.parent / 'config.json'} ({path.stat().st_size / 1e6:.1f} MB, "
                      f"{len(net.info.labels)} labels)", highlight=False)
        if check:
            diff = max_abs_difference(net, path)
            console.print(f"max |ONNX - PyTorch| logit difference on random inputs: {diff:.2e}", highlight=False)
            if diff > 1e-4:
                fail(f"ONNX output differs from PyTorch by {diff:.2e} (> 1e-4)", code=1)
