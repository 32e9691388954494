"""``ecgfm embed``: one embedding vector per ECG from a trained model (a thin shell over ``ecgfm.models.embedding``)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from ecgfm.cli.common import console, err_console, fail, user_errors


def _is_ptbxl_folder(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "ptbxl_database.csv").exists()


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed(
        checkpoint: Path = typer.Argument(..., help="Model: a .pt checkpoint (best.pt) or a folder with "
                                          "model.safetensors + config.json."),
        inputs: List[str] = typer.Argument(..., help="ECG files, folders or globs, or one PTB-XL folder (every "
                                           "record is embedded, with patient_id and strat_fold columns)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output: .parquet (id, source, f0..fN), .npz "
                                 "(embeddings, ids) or .npy (matrix; ids in <name>.ids.txt)."),
        batch_size: int = typer.Option(256, "--batch-size", min=1, help="Windows per forward pass."),
        device: str = typer.Option("cpu", "--device", help="torch device."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Embed ECGs: the model's pooled features (forward_features), averaged over its test-time windows.

        Inputs are preprocessed with the model's own spec. Unreadable files are listed and skipped.
        Exit code: 0 all embedded, 1 some inputs failed, 2 usage error.

        Example: ecgfm embed runs/fm/best.pt ../shared/data/ptbxl --out embeddings.parquet
        """
        from ecgfm.models import load_checkpoint
        from ecgfm.models.embedding import EMBEDDING_FORMATS, embed_files, embed_ptbxl

        with user_errors():
            if out.suffix.lower() not in EMBEDDING_FORMATS:
                raise ValueError(f"--out must end in {', '.join(EMBEDDING_FORMATS)}, got {out.name!r}")
            if not checkpoint.exists():
                raise FileNotFoundError(f"model not found: {checkpoint}")
            model, info = load_checkpoint(checkpoint, map_location=device)
            if len(inputs) == 1 and _is_ptbxl_folder(inputs[0]):
                result = embed_ptbxl(model, info, inputs[0], batch_size=batch_size, device=device, progress=progress)
            else:
                result = embed_files(model, info, inputs, batch_size=batch_size, device=device)
            if not result.ids:
                for source, reason in result.failures[:20]:
                    err_console.print(f"{source}: {reason}", highlight=False)
                fail("no ECG could be embedded")
            result.write(out)
        console.print(f"wrote {len(result.ids)} embeddings of size {result.vectors.shape[1]} to {out}")
        if result.failures:
            for source, reason in result.failures[:50]:
                err_console.print(f"[red]failed[/] {source}: {reason}", highlight=False)
            raise typer.Exit(code=1)
