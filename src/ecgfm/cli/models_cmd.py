"""``ecgfm models``: the shipped weights and the registered architectures."""
from __future__ import annotations

import typer

from ecgfm.cli.common import console


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models_command(
        fs: float = typer.Option(100.0, "--fs", help="Sampling rate (Hz) for the FLOP count of a 10-s ECG."),
    ) -> None:
        """List the shipped weights (names for --model) and the registered architectures with their parameters and
        FLOPs per 10-s 12-lead ECG.

        Example: ecgfm models
        """
        from rich.table import Table

        from ecgfm.models import count_flops, count_params, create, get_weights, list_models, list_pretrained
        from ecgfm.models.registry import describe

        weights = Table(title="shipped weights (--model NAME; 'pretrained' is the first)")
        for column in ("name", "architecture", "labels", "test macro AUC", "description"):
            weights.add_column(column)
        for name in list_pretrained():
            entry = get_weights(name)
            summary = entry.info.metrics.get("test", {}).get("summary", {})
            auc = summary.get("macro_auc", {}).get("value")
            weights.add_row(name, entry.info.arch, str(entry.info.num_labels), "-" if auc is None else f"{auc:.3f}",
                            entry.description)
        console.print(weights)
        table = Table(title=f"architectures (FLOPs for one 10-s 12-lead ECG at {fs:g} Hz, 71 labels)")
        for column in ("model", "parameters", "GFLOPs", "embedding size", "description"):
            table.add_column(column, justify="left" if column in ("model", "description") else "right")
        for name in list_models():
            try:
                net = create(name, 71)
            except (TypeError, ValueError):  # e.g. an ensemble is built from trained members, not from defaults
                table.add_row(name, "-", "-", "-", describe(name))
                continue
            table.add_row(name, f"{count_params(net) / 1e6:.2f} M",
                          f"{count_flops(net, (1, 12, int(round(10 * fs)))) / 1e9:.2f}", str(net.num_features),
                          describe(name))
        console.print(table)
