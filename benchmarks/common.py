"""What every benchmark script shares: the command line it records and how it writes its JSON result."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def command_line(argv: list[str] | None) -> str:
    """The invocation as typed (script name and arguments), recorded in each result so it can be rerun."""
    return " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))


def write_result(out: str | Path, document: dict[str, Any], indent: int = 1) -> Path:
    """Write ``document`` as JSON to ``out`` atomically (temporary file, then rename), so an interrupted benchmark
    never leaves a truncated result in ``benchmarks/results/``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=indent, default=str) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return out
