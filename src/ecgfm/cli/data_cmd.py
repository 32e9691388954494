"""``ecgfm data ...``: inspect datasets (PTB-XL summary)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("summary")
    def summary(path: str = typer.Argument(None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR).")) -> None:
        """Summarise a PTB-XL folder: records per rate, missing files, label counts per split.

        Example: ecgfm data summary ../shared/data/ptbxl
        """
        raise NotImplementedError  # filled in by the PTB-XL dataset work
