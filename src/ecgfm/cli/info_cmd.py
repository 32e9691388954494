"""``ecgfm info FILE``: what an ECG file holds (format, leads, rate, duration, amplitudes, statements, metadata)."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ecgfm.cli.common import console, user_errors


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        path: Path = typer.Argument(..., help="ECG file: WFDB .hea, MUSE/HL7 aECG/Philips .xml, .dcm, .edf, .scp, "
                                              "ISHNE/Contec .ecg, .npy/.csv."),
        format: str = typer.Option(None, "--format", help="Force a reader by name (e.g. muse, scp, edf)."),
        waveform: str = typer.Option(None, "--waveform", help="rhythm (default) or median beats (MUSE, HL7, "
                                                               "Philips, DICOM)."),
        start: float = typer.Option(None, "--start", help="Window start in seconds (EDF, ISHNE)."),
        duration: float = typer.Option(None, "--duration", help="Window length in seconds (EDF, ISHNE)."),
        lead_map: list[str] = typer.Option(None, "--lead-map", help="Name a channel's lead, e.g. --lead-map ECG1=II "
                                                                    "(repeatable; ISHNE channels by number: 1=II)."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    ) -> None:
        """Show what an ECG file holds: format, leads, sampling rate, duration, amplitude range per lead,
        diagnostic statements and patient/device metadata.

        Example: ecgfm info ../shared/data/formats/ge_muse_xml/musephi_muse_ecg1.xml --waveform median
        """
        from ecgfm.io.summary import describe_file

        options = {key: value for key, value in (("waveform", waveform), ("start", start), ("duration", duration))
                   if value is not None}
        with user_errors():
            if lead_map:
                options["lead_map"] = parse_lead_map(lead_map)
            summary = describe_file(path, format=format, **options)
        if as_json:
            typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        else:
            _print_summary(summary)


def parse_lead_map(items: list[str]) -> dict:
    """``["ECG1=II", "2=V5"]`` -> ``{"ECG1": "II", 2: "V5"}`` (numeric keys are channel numbers)."""
    mapping: dict = {}
    for item in items:
        key, sep, lead = item.partition("=")
        if not sep or not key.strip() or not lead.strip():
            raise ValueError(f"--lead-map expects CHANNEL=LEAD, got {item!r}")
        key = key.strip()
        mapping[int(key) if key.isdigit() else key] = lead.strip()
    return mapping


def _print_summary(summary: dict) -> None:
    console.print(f"[bold]{summary['source']}[/]  ({summary['reader']})", highlight=False)
    console.print(f"format {summary['format']}, {len(summary['leads'])} leads, {summary['fs_hz']:g} Hz, "
                  f"{summary['n_samples']} samples = {summary['duration_s']:g} s", highlight=False)
    table = Table("lead", "min mV", "max mV", "peak-to-peak mV")
    for lead, amp in summary["amplitude"].items():
        table.add_row(lead, f"{amp['min_mv']:.3f}", f"{amp['max_mv']:.3f}", f"{amp['ptp_mv']:.3f}")
    console.print(table)
    for statement in summary["statements"]:
        console.print(f"  statement: {statement}", highlight=False)
    if summary.get("snomed_labels"):
        labels = Table("SNOMED-CT label", "term", "SCP-ECG")
        for label in summary["snomed_labels"]:
            labels.add_row(label["snomed"], label["term"] or "(not a Challenge diagnosis)",
                           ", ".join(label["scp"]) or "(no SCP-ECG equivalent)")
        console.print(labels)
    for key, value in {**summary["metadata"], **summary["other"]}.items():
        console.print(f"  {key}: {value}", highlight=False)
