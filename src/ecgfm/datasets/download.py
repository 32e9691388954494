"""Download PTB-XL (or any PhysioNet-style file tree) with checksums, resume and optional parallelism.

PhysioNet publishes every database with a ``SHA256SUMS.txt`` (``<sha256>  <relative path>`` per line). The downloader
fetches that list, selects the files wanted (for PTB-XL: the metadata plus the records at the chosen rates, optionally
only some records), and fetches each file to ``<name>.part`` before renaming it into place once its SHA-256 matches.
An interrupted transfer keeps its ``.part`` file and continues with an HTTP ``Range`` request on the next attempt (or
the next run); a server that ignores ``Range`` simply sends the whole file again. Files already present with the right
checksum are not fetched again.

Example::

    from ecgfm.datasets.download import download_ptbxl
    report = download_ptbxl("data/ptbxl", rates=(100,), max_records=2000)   # ~50 MB instead of 3 GB
    report.raise_for_failures()

HTTP uses the standard library (``urllib``): it supports ``Range`` requests, and it keeps ``ecgfm`` free of an HTTP
client dependency; a download job needs nothing beyond it.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

#: PTB-XL v1.0.3 on PhysioNet (Wagner et al. 2020; CC BY 4.0).
PTBXL_URL = "https://physionet.org/files/ptb-xl/1.0.3/"
CHECKSUMS_NAME = "SHA256SUMS.txt"
#: PTB-XL's record folders by sampling rate.
PTBXL_RATE_FOLDERS = {100: "records100", 500: "records500"}
_RECORD_ID = re.compile(r"(\d+)_(?:lr|hr)\.(?:hea|dat)$")
_CHUNK = 1 << 16
_USER_AGENT = "ecgfm-downloader"


class ChecksumError(Exception):
    """A downloaded file's SHA-256 differs from the published one."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: its path relative to the base URL (POSIX) and its published SHA-256 (hex)."""

    path: str
    sha256: str


@dataclass
class DownloadReport:
    """What a download run did: files fetched, already present, and failed (with reasons); bytes transferred."""

    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_for_failures(self) -> None:
        if self.failed:
            lines = "\n".join(f"  {path}: {reason}" for path, reason in sorted(self.failed.items())[:20])
            raise RuntimeError(f"{len(self.failed)} file(s) failed to download:\n{lines}")


def parse_checksums(text: str) -> list[RemoteFile]:
    """Parse ``sha256sum`` output (``<hex>  <path>`` or ``<hex> *<path>`` lines); blank lines are skipped."""
    files = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *]?(.+)", line.strip())
        if not match:
            raise ValueError(f"{CHECKSUMS_NAME} line {number} is not '<sha256> <path>': {line[:80]!r}")
        path = match.group(2).strip()
        if path.startswith("/") or ".." in Path(path).parts:
            raise ValueError(f"{CHECKSUMS_NAME} line {number}: unsafe path {path!r}")
        files.append(RemoteFile(path.removeprefix("./"), match.group(1).lower()))
    return files


def select_ptbxl_files(files: Iterable[RemoteFile], rates: Sequence[int] = (100, 500),
                       ecg_ids: Iterable[int] | None = None, max_records: int | None = None) -> list[RemoteFile]:
    """The PTB-XL files needed: top-level metadata (CSV tables, license, ...) plus records at ``rates``.

    ``ecg_ids`` keeps only those records; ``max_records`` keeps the lowest ``max_records`` ids (ids are not ordered by
    fold, so any prefix spans all ten ``strat_fold`` folds).
    """
    unknown = set(rates) - set(PTBXL_RATE_FOLDERS)
    if unknown:
        raise ValueError(f"PTB-XL has records at {sorted(PTBXL_RATE_FOLDERS)} Hz, not {sorted(unknown)}")
    folders = tuple(PTBXL_RATE_FOLDERS[r] + "/" for r in rates)
    files = list(files)
    records = [f for f in files if f.path.startswith(folders) and _RECORD_ID.search(f.path)]
    if ecg_ids is not None:
        wanted = {int(i) for i in ecg_ids}
        records = [f for f in records if _record_id(f.path) in wanted]
    if max_records is not None:
        keep = set(sorted({_record_id(f.path) for f in records})[:max(0, int(max_records))])
        records = [f for f in records if _record_id(f.path) in keep]
    metadata = [f for f in files if "/" not in f.path]
    return metadata + records


def _record_id(path: str) -> int:
    return int(_RECORD_ID.search(path).group(1))


def sha256_of(path: Path, hasher=None) -> str:
    """Hex SHA-256 of a file (continuing ``hasher`` if given)."""
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": _USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def fetch_file(url: str, target: Path, sha256: str, timeout: float = 60.0,
               on_bytes: Callable[[int], None] | None = None) -> int:
    """Download ``url`` to ``target`` via ``target.part``, resuming a partial file; returns the bytes transferred.

    Raises:
        ChecksumError: the complete file's SHA-256 is not ``sha256`` (the ``.part`` file is deleted so the next
            attempt starts over).
        OSError / urllib.error.URLError / http.client.HTTPException: transfer failures (the ``.part`` file is kept
            for resuming).
    """
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    transferred = 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not start:  # 416: the .part file already holds the whole file
            raise
        response = None
    if response is not None:
        with response:
            if response.status == 206 and _range_start(response.headers.get("Content-Range")) != start:
                part.unlink(missing_ok=True)
                raise OSError(f"server sent bytes {response.headers.get('Content-Range')!r}, not from {start}")
            mode = "ab" if response.status == 206 else "wb"  # a 200 answer to a Range request is the whole file
            expected = response.headers.get("Content-Length")
            received = 0
            with open(part, mode) as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            transferred = received
            if expected is not None and received < int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - received)
    actual = sha256_of(part)
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"checksum mismatch: expected sha256 {sha256[:12]}..., got {actual[:12]}...")
    os.replace(part, target)
    return transferred


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def download_files(base_url: str, files: Sequence[RemoteFile], dest: str | os.PathLike, workers: int = 4,
                   retries: int = 3, timeout: float = 60.0, progress: bool = True) -> DownloadReport:
    """Fetch ``files`` (paths relative to ``base_url``) into ``dest``, verifying each against its SHA-256.

    Up to ``workers`` files download in parallel; a failed transfer is retried ``retries`` times (resuming from its
    ``.part`` file, with a short back-off). Failures are reported, not raised: see :meth:`DownloadReport.raise_for_failures`.
    """
    dest = Path(dest)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    report = DownloadReport()
    start_time = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="file", desc="download", dynamic_ncols=True)

    def count_bytes(n: int) -> None:
        report.bytes += n  # int += under the GIL: a lost update only skews the progress display, never the files

    def one(file: RemoteFile) -> tuple[str, str | None]:
        target = dest / file.path
        if target.exists():
            if sha256_of(target) == file.sha256:
                return "present", None
            target.unlink()  # stale or corrupt copy
        error = None
        for attempt in range(retries + 1):
            try:
                fetch_file(base_url + urllib.parse.quote(file.path), target, file.sha256, timeout, count_bytes)
                return "downloaded", None
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} {exc.reason}"
                if exc.code == 404:
                    break
            except ChecksumError as exc:
                error = str(exc)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < retries:
                time.sleep(min(0.2 * 2 ** attempt, 5.0))
        return "failed", error

    try:
        with ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix="ecgfm-download") as pool:
            futures = {pool.submit(one, f): f for f in files}
            for future in as_completed(futures):
                status, error = future.result()
                path = futures[future].path
                if status == "failed":
                    report.failed[path] = error or "unknown error"
                else:
                    (report.downloaded if status == "downloaded" else report.present).append(path)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{report.bytes / 1e6:.1f} MB, {len(report.failed)} failed", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    report.downloaded.sort()
    report.present.sort()
    report.seconds = time.perf_counter() - start_time
    return report


def fetch_checksums(base_url: str, dest: str | os.PathLike, timeout: float = 60.0) -> list[RemoteFile]:
    """Download ``SHA256SUMS.txt`` into ``dest`` and parse it."""
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _open(base_url + CHECKSUMS_NAME, 0, timeout) as response:
        text = response.read().decode("utf-8")
    files = parse_checksums(text)
    tmp = dest / (CHECKSUMS_NAME + ".part")
    tmp.write_text(text)
    os.replace(tmp, dest / CHECKSUMS_NAME)
    return files


def download_ptbxl(dest: str | os.PathLike, rates: Sequence[int] = (100,), ecg_ids: Iterable[int] | None = None,
                   max_records: int | None = None, base_url: str = PTBXL_URL, workers: int = 4, retries: int = 3,
                   timeout: float = 60.0, progress: bool = True) -> DownloadReport:
    """Download PTB-XL (or the chosen subset) into ``dest``, which then works as ``$ECGFM_PTBXL_DIR``.

    Args:
        dest: target folder (created); re-running completes and verifies an earlier, interrupted download.
        rates: which record folders to fetch: ``(100,)`` (~0.5 GB in full), ``(500,)`` (~2.5 GB) or both.
        ecg_ids / max_records: fetch only some records (see :func:`select_ptbxl_files`); metadata is always fetched.
        base_url: the PTB-XL release (default v1.0.3 on PhysioNet) or a mirror with the same layout.
        workers: parallel downloads; retries: attempts per file after the first (each resumes the partial file).
    """
    files = select_ptbxl_files(fetch_checksums(base_url, dest, timeout), rates, ecg_ids, max_records)
    return download_files(base_url, files, dest, workers=workers, retries=retries, timeout=timeout,
                          progress=progress)
