"""``ecgfm embed``: one embedding vector per ECG from a trained model (a thin shell over ``ecgfm.inference.embed``)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ecgfm.cli.common import console, err_console, fail, user_errors
from ecgfm.cli.options import Data, Device, Model, Progress, Threads, source_kwargs


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed(
        inputs: Optional[List[str]] = typer.Argument(None, help="ECG files, folders or globs (or give --data)."),
        model: Model = "pretrained",
        data: Data = None,
        out: Path = typer.Option(..., "--out", "-o", help="Output: .parquet (id, source, f0..fN), .npz "
                                 "(embeddings, ids) or .npy (matrix; ids in <name>.ids.txt)."),
        batch_size: int = typer.Option(256, "--batch-size", min=1, help="Windows per forward pass."),
        device: Device = "auto",
        threads: Threads = None,
        progress: Progress = True,
    ) -> None:
        """Embed ECGs: the model's pooled features (forward_features), averaged over its test-time windows.

        Inputs are preprocessed with the model's own spec. With --data every record of a labelled dataset is embedded,
        with patient_id, split (and fold) columns. Unreadable files are listed and skipped.
        Exit code: 0 all embedded, 1 some inputs failed, 2 usage error.

        Example: ecgfm embed --data ../shared/data/ptbxl --out embeddings.parquet
        """
        from ecgfm.datasets import load_labelled
        from ecgfm.inference.embed import EMBEDDING_FORMATS, embed_files, embed_set
        from ecgfm.models import load
        from ecgfm.training import resolve_device

        with user_errors():
            if out.suffix.lower() not in EMBEDDING_FORMATS:
                raise ValueError(f"--out must end in {', '.join(EMBEDDING_FORMATS)}, got {out.name!r}")
            if bool(inputs) == (data is not None):
                raise ValueError("give ECG files or --data (a labelled dataset), one of the two")
            if threads:
                import torch

                torch.set_num_threads(threads)
            device = str(resolve_device(device))
            net = load(model, device=device)
            if data is not None:
                labelled = load_labelled(**source_kwargs(data), labels=[], pipeline=net.info.pipeline(),
                                         progress=progress)
                result = embed_set(net, labelled, batch_size=batch_size, device=device)
            else:
                result = embed_files(net, inputs, batch_size=batch_size, device=device)
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
