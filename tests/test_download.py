"""PTB-XL download against a local HTTP server (with Range support) serving a fake PTB-XL tree: no real network."""
from __future__ import annotations

import hashlib
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ecgfm.datasets.download import (CHECKSUMS_NAME, RemoteFile, download_ptbxl, fetch_file, parse_checksums,
                                     select_ptbxl_files)

IDS = (1, 2, 3, 17, 25)


def make_fake_ptbxl_tree(root: Path) -> Path:
    """PTB-XL's layout with random contents (tables, records100 and records500) and its SHA256SUMS.txt."""
    rng = np.random.default_rng(0)
    files = {"ptbxl_database.csv": b"ecg_id,patient_id\n1,10\n", "scp_statements.csv": b",description\nNORM,normal\n",
             "LICENSE.txt": b"CC BY 4.0\n"}
    for ecg_id in IDS:
        for rate, suffix, size in ((100, "lr", 24_000), (500, "hr", 120_000)):
            stem = f"records{rate}/00000/{ecg_id:05d}_{suffix}"
            files[f"{stem}.hea"] = f"{ecg_id:05d}_{suffix} 12 {rate} {rate * 10}\n".encode()
            files[f"{stem}.dat"] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    lines = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {rel}")
    (root / CHECKSUMS_NAME).write_text("\n".join(lines) + "\n")
    return root


class FakePhysioNet(BaseHTTPRequestHandler):
    """Serves ``root`` with single-range ``Range`` support; can cut a transfer short or ignore ``Range``."""

    root: Path
    requests: list  # (path, Range header or None)
    cut_after: dict  # path -> bytes to send before dropping the connection (once)
    ignore_range = False

    def do_GET(self):  # noqa: N802 (http.server API)
        rel = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
        range_header = self.headers.get("Range")
        self.requests.append((rel, range_header))
        file = self.root / rel
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not self.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_after.pop(rel, None)
        self.wfile.write(body if cut is None else body[:cut])  # a cut transfer: the connection closes early

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture()
def server(tmp_path):
    root = make_fake_ptbxl_tree(tmp_path / "remote")
    handler = type("Handler", (FakePhysioNet,), {"root": root, "requests": [], "cut_after": {}})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler, root
    finally:
        httpd.shutdown()
        httpd.server_close()


def _same_tree(a: Path, b: Path, paths) -> bool:
    return all((a / p).read_bytes() == (b / p).read_bytes() for p in paths)


def test_download_subset_completes_verifies_and_skips_present_files(server, tmp_path):
    url, handler, remote = server
    dest = tmp_path / "ptbxl"
    report = download_ptbxl(dest, rates=(100,), max_records=3, base_url=url, workers=3, progress=False)
    assert report.ok and not report.present
    expected = ["LICENSE.txt", "ptbxl_database.csv", "scp_statements.csv"] + [
        f"records100/00000/{i:05d}_lr.{ext}" for i in IDS[:3] for ext in ("dat", "hea")]
    assert sorted(report.downloaded) == sorted(expected)
    assert _same_tree(dest, remote, expected) and (dest / CHECKSUMS_NAME).exists()
    assert not (dest / "records500").exists() and not list(dest.rglob("*.part"))
    assert report.bytes == sum((remote / p).stat().st_size for p in expected)

    handler.requests.clear()
    again = download_ptbxl(dest, rates=(100,), max_records=3, base_url=url, progress=False)
    assert again.ok and not again.downloaded and sorted(again.present) == sorted(expected)
    assert handler.requests == [(CHECKSUMS_NAME, None)]  # nothing fetched twice


def test_checksum_mismatch_is_detected_and_not_kept(server, tmp_path):
    url, handler, remote = server
    (remote / "records100/00000/00002_lr.dat").write_bytes(b"tampered")  # no longer matches SHA256SUMS.txt
    dest = tmp_path / "ptbxl"
    report = download_ptbxl(dest, rates=(100,), ecg_ids=[1, 2], base_url=url, retries=1, progress=False)
    assert list(report.failed) == ["records100/00000/00002_lr.dat"]
    assert "checksum mismatch" in report.failed["records100/00000/00002_lr.dat"]
    assert not (dest / "records100/00000/00002_lr.dat").exists()
    assert not (dest / "records100/00000/00002_lr.dat.part").exists()
    assert (dest / "records100/00000/00001_lr.dat").exists() and len(report.downloaded) == 6
    with pytest.raises(RuntimeError, match="1 file"):
        report.raise_for_failures()


def test_resume_after_interrupted_transfer(server, tmp_path):
    url, handler, remote = server
    rel = "records500/00000/00003_hr.dat"
    handler.cut_after[rel] = 50_000
    dest = tmp_path / "ptbxl"
    first = download_ptbxl(dest, rates=(500,), ecg_ids=[3], base_url=url, retries=0, progress=False)
    assert list(first.failed) == [rel]  # the run reports the broken transfer ...
    part = dest / (rel + ".part")
    assert part.stat().st_size == 50_000  # ... and keeps what arrived
    handler.requests.clear()
    second = download_ptbxl(dest, rates=(500,), ecg_ids=[3], base_url=url, progress=False)
    assert second.ok and second.downloaded == [rel]
    assert (rel, "bytes=50000-") in handler.requests  # only the missing bytes were requested
    assert second.bytes == 120_000 - 50_000
    assert (dest / rel).read_bytes() == (remote / rel).read_bytes() and not part.exists()


def test_retry_resumes_within_one_run(server, tmp_path):
    url, handler, remote = server
    rel = "records100/00000/00017_lr.dat"
    handler.cut_after[rel] = 10_000
    report = download_ptbxl(tmp_path / "d", rates=(100,), ecg_ids=[17], base_url=url, retries=2, progress=False)
    assert report.ok and (rel, "bytes=10000-") in handler.requests
    assert (tmp_path / "d" / rel).read_bytes() == (remote / rel).read_bytes()


def test_server_ignoring_range_and_complete_part_file(server, tmp_path):
    url, handler, remote = server
    rel = "records100/00000/00025_lr.dat"
    data = (remote / rel).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    target = tmp_path / "x.dat"
    part = tmp_path / "x.dat.part"
    part.write_bytes(data[:5000])
    handler.ignore_range = True  # the whole file comes back with 200: the partial file is overwritten, not appended
    assert fetch_file(url + rel, target, sha) == len(data)
    assert target.read_bytes() == data
    handler.ignore_range = False
    part.write_bytes(data)  # a complete .part file: the server answers 416 and the file is verified as it is
    assert fetch_file(url + rel, target, sha) == 0 and target.read_bytes() == data and not part.exists()


def test_parse_and_select():
    text = ("a" * 64 + "  ptbxl_database.csv\n" + "b" * 64 + " *records100/00000/00001_lr.hea\n\n"
            + "c" * 64 + "  records500/00000/00001_hr.dat\n" + "d" * 64 + "  records100/00000/00009_lr.dat\n")
    files = parse_checksums(text)
    assert files[1] == RemoteFile("records100/00000/00001_lr.hea", "b" * 64)
    assert [f.path for f in select_ptbxl_files(files, rates=(100,), max_records=1)] == [
        "ptbxl_database.csv", "records100/00000/00001_lr.hea"]
    assert len(select_ptbxl_files(files, rates=(100, 500))) == 4
    with pytest.raises(ValueError, match="unsafe path"):
        parse_checksums("e" * 64 + "  ../etc/passwd\n")
    with pytest.raises(ValueError, match="line 1"):
        parse_checksums("not a checksum line\n")
    with pytest.raises(ValueError, match="250"):
        select_ptbxl_files(files, rates=(250,))
