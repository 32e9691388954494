"""``ecgfm plot``: the standard 12-lead printout of an ECG file (PNG, PDF or SVG; PDF and SVG at true scale)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import err_console, user_errors

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def register(app: typer.Typer) -> None:
    @app.command("plot")
    def plot(
        path: str = typer.Argument(..., help="The ECG file (any supported format; WFDB: the .hea file)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output figure: .pdf or .svg (true scale) or .png."),
        speed: float = typer.Option(25.0, "--speed", help="Paper speed, mm/s: 25 or 50."),
        gain: float = typer.Option(10.0, "--gain", help="Amplitude scale, mm/mV: 5, 10 or 20."),
        layout: str = typer.Option("standard", "--layout", help="standard (3 x 4 + lead II rhythm strip) or rows "
                                   "(one row per lead, for long records)."),
        start: float = typer.Option(0.0, "--start", min=0.0, help="First second to draw."),
        seconds: Optional[float] = typer.Option(None, "--seconds", help="Rows layout: seconds to draw (default: "
                                                "the rest of the record, at most 60)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Print this model's findings in the "
                                            "header ('pretrained' for the shipped model, or a model folder, run "
                                            "folder, .pt or .onnx)."),
        dpi: int = typer.Option(150, "--dpi", min=30, max=600, help="PNG resolution (the page is 297 x 210 mm)."),
    ) -> None:
        """Draw the standard ECG printout: 3 x 4 leads and a 10-s lead II rhythm strip at 25 mm/s and 10 mm/mV on
        1 mm / 5 mm paper, a 1 mV calibration pulse, and a header with the record, date and heart rate (and the
        model's findings with --model). PDF and SVG print at true scale.

        Example: ecgfm plot ../shared/data/ptbxl/records500/00000/00001_hr.hea --out ecg.pdf --model pretrained
        """
        from ecgfm.files import atomic_write
        from ecgfm.io import read
        from ecgfm.printout import printout

        with user_errors():
            if out.suffix.lower() not in FIGURE_SUFFIXES:
                raise ValueError(f"--out must end in {', '.join(FIGURE_SUFFIXES)}, got {out.name!r}")
            ecg = read(path)
            findings, quality, model_name = None, None, None
            if model is not None:
                from ecgfm.inference.predictor import Predictor

                predictor = Predictor.from_pretrained(model)
                result = predictor.predict(ecg).to_dict()  # plain data: future fields (quality, rule) come along
                findings, quality = result["findings"], result.get("quality")
                model_name = predictor.info.arch
            figure = printout(ecg, findings=findings, speed=speed, gain=gain, layout=layout, start=start,
                              seconds=seconds, quality=quality, model=model_name)
            atomic_write(out, lambda tmp: figure.savefig(tmp, dpi=dpi, format=out.suffix.lower()[1:],
                                                         metadata=_metadata(out.suffix.lower())))
        err_console.print(f"wrote {out}", highlight=False)


def _metadata(suffix: str) -> dict:
    """Only the creator: the record id or patient never goes into file metadata."""
    return {"Creator": "ecgfm"} if suffix in (".pdf", ".svg") else {"Software": "ecgfm"}
