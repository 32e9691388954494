"""Options every command shares, declared once, and the helpers that turn them into library arguments.

One vocabulary across commands: ``--model`` (a shipped name, default ``pretrained``; a model folder, run folder or
checkpoint), ``--out`` for whatever a command writes, ``--labels A,B`` (matched case-insensitively), one data source
(``--data PATH``, or explicitly ``--ptbxl``/``--manifest``/``--store``) with folds written ``1-8`` or ``1,3,5-7``,
``--device auto``, ``--threads`` (torch CPU threads), ``--workers`` (processes or threads reading input files),
``--config FILE`` + ``--set key=value`` for every other setting of a command's configuration dataclass.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional, Sequence

import typer

from ecgfm.config import DEFAULT_MODEL

Model = Annotated[str, typer.Option("--model", "-m", help="Model: a shipped name ('pretrained', the default; see "
                                    "`ecgfm models`), a model folder, a run folder or a .pt checkpoint.")]
Labels = Annotated[Optional[str], typer.Option("--labels", "-l", help="Comma-separated label codes, e.g. "
                                               "DIG,1AVB (case-insensitive).")]
Data = Annotated[Optional[Path], typer.Option("--data", help="Labelled ECGs: a PTB-XL folder, a manifest "
                                              "(.csv/.parquet), an ingested store, or a folder of PhysioNet-Challenge "
                                              "records (SNOMED-CT labels); default: PTB-XL at $ECGFM_PTBXL_DIR.")]
Ptbxl = Annotated[Optional[Path], typer.Option("--ptbxl", help="PTB-XL folder (default $ECGFM_PTBXL_DIR).")]
Manifest = Annotated[Optional[Path], typer.Option("--manifest", help="Manifest CSV/Parquet naming ECG files, "
                                                  "patients, splits and labels.")]
Store = Annotated[Optional[Path], typer.Option("--store", help="Training store made by `ecgfm ingest`.")]
TrainFolds = Annotated[str, typer.Option("--train-folds", help="PTB-XL folds to train on, e.g. 1-8.")]
ValFolds = Annotated[str, typer.Option("--val-folds", help="PTB-XL folds for validation (early stopping, "
                                       "thresholds), e.g. 9.")]
TestFolds = Annotated[str, typer.Option("--test-folds", help="PTB-XL folds held out for testing, e.g. 10.")]
Device = Annotated[str, typer.Option("--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: torch's).")]
Workers = Annotated[int, typer.Option("--workers", min=0, help="Processes or threads reading input files while "
                                      "the model runs (0: read inline).")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars (stderr).")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="JSON file of settings (the command's "
                                                    "configuration fields; see --set).")]
Settings = Annotated[Optional[list[str]], typer.Option("--set", help="One setting KEY=VALUE (JSON value; "
                                                       "repeatable), applied after --config.")]


def split_list(text: str | None) -> list[str]:
    """``"DIG, 1AVB,LAO/LAE"`` -> ``["DIG", "1AVB", "LAO/LAE"]``."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def match_labels(text: str | Sequence[str] | None, vocabulary: Sequence[str], what: str = "label") -> list[str]:
    """Label codes as the vocabulary spells them (case-insensitive); an unknown one is an error with a
    did-you-mean."""
    by_key = {name.lower(): name for name in vocabulary}
    names = split_list(text) if isinstance(text, str) or text is None else list(text)
    out = []
    for name in names:
        found = by_key.get(name.lower())
        if found is None:
            close = difflib.get_close_matches(name.lower(), list(by_key), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(by_key[c] for c in close)}?" if close else ""
            raise ValueError(f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(vocabulary)[:40])}"
                             f"{' ...' if len(vocabulary) > 40 else ''})")
        out.append(found)
    return out


def source_kwargs(data: Path | None = None, ptbxl: Path | None = None, manifest: Path | None = None,
                  store: Path | None = None) -> dict[str, Path]:
    """The one data source given, as keyword arguments of :func:`ecgfm.datasets.load_labelled`."""
    return {name: value for name, value in (("data", data), ("ptbxl", ptbxl), ("manifest", manifest),
                                            ("store", store)) if value is not None}


def settings(config_file: Path | None, items: Sequence[str] | None) -> dict[str, Any]:
    """``--config FILE`` then ``--set KEY=VALUE`` items as one dict (values parsed as JSON, else kept as text)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values.update(json.loads(Path(config_file).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{config_file}: not a readable JSON settings file ({exc})") from None
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            values[key.strip()] = value
    return values


def apply_settings(config, values: dict[str, Any]):
    """``config`` (a dataclass) with ``values`` set, nested dataclasses reached as ``train.lr``; unknown keys are an
    error naming the known ones."""
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        (nested.setdefault(head, {}).__setitem__(rest, value) if rest else flat.__setitem__(key, value))
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted((set(flat) | set(nested)) - fields)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for {type(config).__name__}; known: {', '.join(sorted(fields))}")
    for head, inner in nested.items():
        flat[head] = apply_settings(getattr(config, head), inner)
    return dataclasses.replace(config, **flat)


def model_name(model: str | None) -> str:
    """The model argument as given, the default shipped model when empty."""
    return model or DEFAULT_MODEL


def command_line(ctx: typer.Context) -> str:
    """The command as an equivalent, copy-pasteable line built from the parsed options (for reports)."""
    parts = ["ecgfm", ctx.info_name or ""]
    # Options the user typed first, then the defaults in force (so the line still reproduces if defaults change).
    ordered = sorted(ctx.command.params,
                     key=lambda p: getattr(ctx.get_parameter_source(p.name), "name", "") != "COMMANDLINE")
    for param in ordered:
        value = ctx.params.get(param.name)
        if value is None or value == [] or value == ():
            continue
        flag = param.opts[0] if param.opts else f"--{param.name}"
        if isinstance(value, bool):
            parts += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            for item in value:
                parts += [flag, str(item)] if flag.startswith("-") else [str(item)]
        else:
            parts += [flag, str(value)] if flag.startswith("-") else [str(value)]
    return shlex.join(parts)
