"""Benchmark: does ``ecgfm serve`` keep answering /predict while explanations run, and do hostile requests end fast?

Method. ``ecgfm serve`` with the shipped model on 127.0.0.1 (its defaults: 2 prediction workers x 1 thread on
2 cores, 1 explanation process at nice +10, 60-s explanation timeout; ``--rate-limit 0`` so the benchmark's own requests are not
throttled), once per ``--explain-workers`` setting. A PTB-XL record (500-Hz WFDB) is predicted ``--n`` times in a row
to measure /predict alone (after one warm-up call and one explanation that starts the explanation process); then two
*maximal* /explain requests (3 labels, 64 integrated-gradients steps: the per-request caps) are sent at once and
/predict is called in a loop until both have answered. Latencies are client-side wall times (upload + read + model +
JSON), reported as median and 95th percentile; the explanations' status and duration are recorded (with one
explanation process the second waits for the first, so it may reach its deadline: 504, and its process is replaced).
With one explanation process, one maximal explanation is also timed alone (no predictions meanwhile). Memory: the
resident and peak resident memory (VmRSS, VmHWM) of the server and of its explanation processes.

Probes (the service part of issue 29's target "every probe ends in a 4xx within 5 s and 1 GB RSS"): file names over
255 bytes (upload and zip member), a 54-label /explain, 10,000 IG steps, a body trickled after its headers, headers
trickled byte by byte, and a wrong API key (on a second server started with one). Each records its status, its time
and the server's resident memory (parent and explanation processes, from /proc) after it.

Run: ``python benchmarks/serve_load.py --ptbxl ../shared/data/ptbxl`` (writes benchmarks/results/serve_load.json).
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import command_line, cpu_flags, free_port, start_server, stop, write_result

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "benchmark-key-0123456789"


def rss_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory (MB) of a process, from /proc/PID/status."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values["rss_mb" if line.startswith("VmRSS") else "peak_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values


def children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def memory(proc: subprocess.Popen) -> dict:
    """The server's memory and its explanation processes' (multiprocessing's resource tracker is left out)."""
    kids = {pid: rss_mb(pid) for pid in children(proc.pid)}
    explain = {pid: m for pid, m in kids.items() if m.get("rss_mb", 0) > 100}
    return {"server": rss_mb(proc.pid), "explanation_processes": list(explain.values())}


def _largest(snapshot: dict) -> float:
    return max([m.get("rss_mb", 0) for m in snapshot["explanation_processes"]] or [0])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(seconds: list[float]) -> dict:
    return {"n": len(seconds), "median_ms": 1000 * statistics.median(seconds), "p95_ms": 1000 * percentile(seconds, 0.95),
            "max_ms": 1000 * max(seconds)}


def timed_predict(client, url: str, files) -> float:
    start = time.perf_counter()
    response = client.post(f"{url}/predict", files=files)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"/predict answered {response.status_code}: {response.text[:300]}")
    return elapsed


def load_scenario(url: str, proc: subprocess.Popen, files, n: int, explain_alone: bool) -> dict:
    """/predict alone, one maximal explanation alone (if ``explain_alone``), then /predict while two maximal
    explanations run."""
    import httpx

    with httpx.Client(timeout=120) as client:
        timed_predict(client, url, files)  # warm-up (first model call)
        start = time.perf_counter()
        warm = client.post(f"{url}/explain", files=files, params={"method": "lead-occlusion"})
        explain_start_s = time.perf_counter() - start
        if warm.status_code != 200:
            raise SystemExit(f"/explain answered {warm.status_code}: {warm.text[:300]}")
        alone = [timed_predict(client, url, files) for _ in range(n)]
        idle_memory = memory(proc)
        maximal = {"label": ["NORM", "SR", "IMI"], "steps": 64}
        single = None
        if explain_alone:
            start = time.perf_counter()
            response = client.post(f"{url}/explain", files=files, params=maximal)
            single = {"status": response.status_code, "seconds": time.perf_counter() - start,
                      "memory_after": memory(proc)}

        def explain_once(_):
            t0 = time.perf_counter()
            response = httpx.post(f"{url}/explain", files=files, params=maximal, timeout=300)
            return {"status": response.status_code, "seconds": time.perf_counter() - t0,
                    "detail": response.json().get("detail") if response.status_code != 200 else None}

        with ThreadPoolExecutor(2) as pool:
            explaining = [pool.submit(explain_once, i) for i in range(2)]
            time.sleep(0.5)
            during, peak = [], idle_memory
            while not all(f.done() for f in explaining):
                during.append(timed_predict(client, url, files))
                now = memory(proc)  # sampled while the explanations run; the largest explanation process kept
                if _largest(now) >= _largest(peak):
                    peak = now
            explanations = [f.result() for f in explaining]
    return {"explanation_process_start_s": explain_start_s, "predict_alone": summary(alone),
            "maximal_explanation_alone": single,
            "predict_during_two_maximal_explanations": summary(during), "explanations": explanations,
            "median_ratio": statistics.median(during) / statistics.median(alone),
            "memory_idle": idle_memory, "memory_during": peak, "memory_after": memory(proc)}


def raw_exchange(port: int, head: bytes, trickle: bytes, every_s: float, max_s: float = 120) -> tuple[int | None, float]:
    """Send ``head``, then ``trickle`` one byte every ``every_s``; the status the server answers and when (s)."""
    import select

    start = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=max_s) as sock:
        sock.sendall(head)
        for byte in list(trickle) + [None] * int(max_s / every_s):
            if byte is not None:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # closed by the server
                    pass
            if select.select([sock], [], [], every_s)[0]:
                chunk = sock.recv(65536)
                answer += chunk
                if not chunk or b"\r\n" in answer:
                    break
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else None
    return status, time.monotonic() - start


def probes(url: str, port: int, proc: subprocess.Popen, files) -> list[dict]:
    import httpx

    long_name = "a" * 300 + ".hea"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("folder/" + long_name, files[0][1][1])
    every_label = [label["label"] for label in httpx.get(f"{url}/labels").json()]
    http_probes = {
        "file name of 304 bytes": ("/predict", {"files": [("files", (long_name, files[0][1][1], "text/plain"))]}),
        "zip member name of 304 bytes": ("/predict", {"files": [("files", ("r.zip", buffer.getvalue(),
                                                                          "application/zip"))]}),
        f"/explain of all {len(every_label)} labels": ("/explain", {"files": files, "params": {"label": every_label}}),
        "/explain with 10,000 steps": ("/explain", {"files": files, "params": {"steps": 10_000}}),
    }
    results = []
    for name, (path, kwargs) in http_probes.items():
        start = time.perf_counter()
        response = httpx.post(f"{url}{path}", timeout=60, **kwargs)
        results.append({"probe": name, "status": response.status_code, "seconds": time.perf_counter() - start,
                        "detail": response.json().get("detail"), "memory": memory(proc)})
    body_head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 b"Content-Length: 100000\r\n\r\n--b\r\n")
    for name, head, trickle, every in [("body stalled after its headers", body_head, b"", 0.1),
                                       ("body trickled, 1 byte/s", body_head, b"x" * 200, 1.0),
                                       ("headers trickled, 1 byte/s", b"G", b"ET /health HTTP/1.1\r\n" + b"x" * 200,
                                        1.0)]:
        status, seconds = raw_exchange(port, head, trickle, every)
        results.append({"probe": name, "status": status, "seconds": seconds, "memory": memory(proc)})
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ptbxl", type=Path, default=os.environ.get("ECGFM_PTBXL_DIR"), help="PTB-XL folder.")
    parser.add_argument("--n", type=int, default=30, help="/predict calls alone.")
    parser.add_argument("--explain-workers", default="1,2", help="Settings of --explain-workers to compare.")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args(argv)
    if args.ptbxl is None:
        raise SystemExit("set --ptbxl or $ECGFM_PTBXL_DIR")
    header = sorted((Path(args.ptbxl) / "records500").glob("*/*.hea"))[0]
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in (header, header.with_suffix(".dat"))]
    load_before = os.getloadavg()
    started = time.time()
    document = {"benchmark": "serve_load", "command": command_line(argv),
                "machine": {"cpu": cpu_flags()["model"], "cores": os.cpu_count(), "load_average_before": load_before},
                "model": "shipped (src/ecgfm/weights)", "record": f"PTB-XL {header.name} (500 Hz, 10 s)",
                "settings": {"server": "ecgfm serve defaults, --rate-limit 0", "maximal_explanation":
                             "3 labels (NORM, SR, IMI), 64 integrated-gradients steps"}, "scenarios": {}}
    log_dir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    for workers in [int(w) for w in args.explain_workers.split(",")]:
        port = free_port()
        proc = start_server(port, log_dir / f"server{workers}.log", "--rate-limit", "0", "--explain-workers",
                            str(workers))
        try:
            url = f"http://127.0.0.1:{port}"
            scenario = load_scenario(url, proc, files, args.n, explain_alone=workers == 1)
            if workers == 1:
                scenario["probes"] = probes(url, port, proc, files)
            document["scenarios"][f"explain_workers={workers}"] = scenario
            print(workers, {k: v for k, v in scenario.items() if k.startswith("predict") or k == "median_ratio"})
        finally:
            stop(proc)
    port = free_port()
    proc = start_server(port, log_dir / "server_key.log", "--rate-limit", "0", "--api-key-file",
                        str(_key_file(log_dir)))
    try:
        import httpx

        start = time.perf_counter()
        status = httpx.post(f"http://127.0.0.1:{port}/predict", files=files, headers={"X-API-Key": "wrong" * 5}).status_code
        document["scenarios"]["explain_workers=1"]["probes"].append(
            {"probe": "wrong API key", "status": status, "seconds": time.perf_counter() - start, "memory": memory(proc)})
    finally:
        stop(proc)
    document["machine"]["load_average_after"] = os.getloadavg()
    document["wall_s"] = time.time() - started
    write_result(args.out, document)
    return 0


def _key_file(folder: Path) -> Path:
    path = folder / "keys"
    path.write_text(KEY + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
