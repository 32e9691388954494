"""What every benchmark script shares: the command line it records and how it writes its JSON result."""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def cpu_flags() -> dict:
    """The CPU's model name and whether it has native bf16 instructions (Linux /proc/cpuinfo; the name only elsewhere)."""
    import torch  # here, so the scripts that do not need torch can import this module cheaply

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(),
                "capability": torch.backends.cpu.get_cpu_capability()}
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    return {"model": model or platform.processor() or platform.machine(),
            "capability": torch.backends.cpu.get_cpu_capability(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


def command_line(argv: list[str] | None) -> str:
    """The invocation as typed (script name and arguments), recorded in each result so it can be rerun."""
    return " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))


def write_result(out: str | Path, document: dict[str, Any], indent: int = 1) -> Path:
    """Write ``document`` as JSON to ``out`` atomically (temporary file, then rename), so an interrupted benchmark
    never leaves a truncated result in ``benchmarks/results/``."""
    from ecgfm.files import atomic_write_text

    out = atomic_write_text(out, json.dumps(document, indent=indent, default=str) + "\n")
    print(f"wrote {out}")
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path, *options: str, wait_s: float = 180) -> subprocess.Popen:
    """``ecgfm serve --port PORT OPTIONS`` as a process, returned once ``/health`` answers (its output in ``log``)."""
    import httpx

    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ecgfm.cli.main", "serve", "--port", str(port), *options],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "MPLBACKEND": "Agg"})
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"server did not start in {wait_s:g} s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server started by :func:`start_server`, killing it if it does not stop in 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
