"""Hostile and careless input, each probe generated here: tiny files declaring huge work, headers wrong in ways wfdb
would silently default, flat signals, truncated DICOM, archive bombs, symbolic-link loops. Every probe ends in an
``ECGReadError`` (or ``ECGValueError``) naming the file and the limit, within seconds and a few MiB of memory."""
from __future__ import annotations

import io
import math
import os
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import ecgfm
from ecgfm.config import LIMITS_ENV, ReadLimits, read_limits
from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError, ECGValueError
from ecgfm.io import available_readers
from ecgfm.io.discover import discover_inputs
from ecgfm.io.limits import extract_zip
from ecgfm.signal import Pipeline
from ecgfm.signal.filters import resample

from conftest import make_synthetic_ecg, write_wfdb_record
from io_fixtures import adc_counts, write_dicom

#: Memory one refused probe may use (traced by tracemalloc, NumPy arrays included) and the time it may take.
PROBE_MEMORY_BYTES = 64 * 2**20
PROBE_SECONDS = 5.0


def refused(path: Path, match: str, **options) -> ECGReadError:
    """Read ``path``, expecting an ECGReadError naming it and matching ``match``, fast and small."""
    available_readers()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ECGReadError, match=match) as info:
            ecgfm.read(path, **options)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Path(info.value.path).stem == Path(path).stem, info.value
    assert elapsed < PROBE_SECONDS and peak < PROBE_MEMORY_BYTES, (elapsed, peak)
    return info.value


def ecg_of_amplitude(mv: float, seconds: float = 10.0) -> ECG:
    """A synthetic 12-lead ECG whose largest lead's QRS amplitude is ``mv`` (genuine records: 0.9-10.8, median 3)."""
    from ecgfm.signal.units import qrs_amplitudes

    ecg = make_synthetic_ecg(fs=500, seconds=seconds)
    return ecg.replace(signal=ecg.signal * (mv / float(qrs_amplitudes(ecg.signal, ecg.fs).max())))


@pytest.fixture
def record(tmp_path) -> Path:
    """00009_hr-like: a 10-s 12-lead WFDB record at 500 Hz, 1000/mV, largest QRS amplitude 4.1 mV (as 00009_hr)."""
    return write_wfdb_record(tmp_path, "00009_hr", ecg_of_amplitude(4.1))


def edit_header(header: Path, old: str, new: str, signal_lines: bool = False) -> Path:
    lines = header.read_text().splitlines()
    if signal_lines:
        lines[1:] = [line.replace(old, new, 1) for line in lines[1:]]
    else:
        lines[0] = lines[0].replace(old, new, 1)
    header.write_text("\n".join(lines) + "\n")
    return header


# --- WFDB headers wfdb would read silently wrong ---------------------------------------------------------------------
@pytest.mark.parametrize("rate, reason", [
    ("0.001", "0.001 Hz is outside the plausible ECG range 50-20000 Hz"),  # resampling it took 22 GiB
    ("nan", "must be a positive number, got 'nan'"),  # wfdb: 250 Hz
    ("-500", "must be a positive number, got '-500'"),  # wfdb: 250 Hz
    ("0", "must be a positive number"),
    ("1e9", "outside the plausible ECG range"),  # wfdb: 1 Hz
    ("10", "10 Hz is outside the plausible ECG range"),
])
def test_wfdb_rate_probes(record, rate, reason):
    refused(edit_header(record, " 500 5000", f" {rate} 5000"), reason)


def test_wfdb_missing_rate(record):
    refused(edit_header(record, " 500 5000", ""), "declares no sampling rate")


@pytest.mark.parametrize("gain", ["0(0)", "-1000(0)", "nan(0)", "inf"])
def test_wfdb_gain_probes(record, gain):
    """wfdb reads a 0 gain as 200 units/mV (x5); a negative gain inverts the signal."""
    refused(edit_header(record, "1000.0(0)", gain, signal_lines=True), "ADC gain .* must be a positive number")


@pytest.mark.parametrize("gain, reason", [("200(0)", "above the 16 mV"), ("100(0)", "above the 16 mV"),
                                          ("10000(0)", "below the 0.55 mV")])
def test_wfdb_gain_off_by_5_or_10(record, gain, reason):
    """Gain 200 or 100 where the samples were written at 1000/mV: x5, x10; 10000: /10."""
    refused(edit_header(record, "1000.0(0)", gain, signal_lines=True), f"implausible amplitude.*{reason}")


def test_wfdb_multi_segment_header_naming_itself(tmp_path):
    (tmp_path / "loop.hea").write_text("loop/2 12 500 1000\nloop 500\nloop 500\n")
    refused(tmp_path / "loop.hea", "multi-segment WFDB record")


# --- flat, constant and implausible arrays ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0.0, 0.7])
def test_flat_csv(tmp_path, value):
    lines = ["# fs=500", "I,II,III"] + [f"{value},{value},{value}"] * 5000
    (tmp_path / "flat.csv").write_text("\n".join(lines) + "\n")
    refused(tmp_path / "flat.csv", "flat signal: every lead is constant")


def test_npy_at_10_hz(tmp_path):
    np.save(tmp_path / "slow.npy", make_synthetic_ecg(fs=500).signal)
    refused(tmp_path / "slow.npy", "10 Hz is outside", fs=10)


def test_npy_declaring_a_terabyte(tmp_path):
    """A 128-byte .npy whose header declares shape (10^12,): NumPy itself raises MemoryError."""
    with open(tmp_path / "huge.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    assert (tmp_path / "huge.npy").stat().st_size < 200
    refused(tmp_path / "huge.npy", r"declares shape \(1000000000000,\).*over the limit", fs=500)


def write_npz_bomb(path: Path, shape=(12, 10**8), dtype="<f4") -> Path:
    """A .npz whose ``signal.npy`` really deflates to ``shape`` zeros (4.8 GB in ~4.6 MB), written without ever
    holding or compressing 4.8 GB: raw-deflate blocks of 1 MiB of zeros, fully flushed, are identical and repeat.
    The CRC is left 0: a reader must refuse from the header long before a CRC could be checked."""
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    data_bytes = math.prod(shape) * np.dtype(dtype).itemsize
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    head = deflate.compress(header.getvalue()) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(data_bytes, len(zeros))
    body = head + block * whole + deflate.compress(bytes(rest)) + deflate.flush(zlib.Z_FINISH)
    size, name = header.tell() + data_bytes, b"signal.npy"
    extra = struct.pack("<HHQQ", 1, 16, size, len(body))  # zip64: the member is over 4 GiB
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, 0, 0xFFFFFFFF, 0xFFFFFFFF, len(name),
                        len(extra)) + name + extra
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, 0, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(name), len(extra), 0, 0, 0, 0, 0) + name + extra
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    path.write_bytes(local + body + central + end)
    return path


def test_npz_bomb(tmp_path):
    """4.6 MB holding a deflated (12, 10^8) float32 array took the server to 5 GB before a 422."""
    bomb = write_npz_bomb(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 6 * 2**20
    with zipfile.ZipFile(bomb) as archive:  # a well-formed archive: the sizes it declares are the real ones
        assert archive.getinfo("signal.npy").file_size == 4_800_000_128
    refused(bomb, r"entry 'signal' inflates to 4800000128 bytes, over the 268435456 byte limit", fs=500)


def test_npz_member_declaring_more_values_than_allowed(tmp_path):
    """120 MB inflated is within the archive limit, but 120 million values are not: refused from the header."""
    with zipfile.ZipFile(tmp_path / "big.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("signal.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<i1", "fortran_order": False,
                                                          "shape": (12, 10**7)})
            for _ in range(120):
                member.write(bytes(10**6))
    refused(tmp_path / "big.npz", r"shape \(12, 10000000\) = 120000000 values, over the limit", fs=500)


# --- archives and big text -------------------------------------------------------------------------------------------
def write_zipped_csv(path: Path, megabytes: int) -> Path:
    """A zip holding a ``megabytes`` MB CSV of zeros, written chunk by chunk (never held in memory)."""
    chunk = ("0,0,0,0,0,0,0,0,0,0,0,0\n" * (2**20 // 24)).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("big.csv", "w", force_zip64=True) as member:
            member.write(b"# fs=500\nI,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6\n")
            written = 0
            while written < megabytes * 10**6:
                member.write(chunk)
                written += len(chunk)
    return path


def test_zip_holding_a_150_mb_csv(tmp_path):
    """A ~380 KB zip holding 150 MB of CSV: inflation stops at the archive limit; within it, the CSV is refused by
    size before parsing (parsing it took the server past 3.6 GB)."""
    archive = write_zipped_csv(tmp_path / "upload.zip", 150)
    assert archive.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ECGReadError, match="zip declares .* bytes unpacked, over the 104857600 byte limit"):
            extract_zip(archive, tmp_path / "strict", ReadLimits(max_unzipped_bytes=100 * 2**20))
        [csv_path] = extract_zip(archive, tmp_path / "out")  # default: 256 MiB allowed
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20 and csv_path.stat().st_size > 150 * 10**6  # streamed in 1 MiB chunks
    refused(csv_path, r"text file is 14\d\.\d MiB, over the 32 MiB limit \(ReadLimits.max_text_bytes\)")


@pytest.mark.parametrize("name, reason", [("../../etc/x.csv", None), ("a/" + "n" * 300 + ".csv", "255-byte"),
                                          ("dir/", None), ("..", "no usable file name")])
def test_zip_member_names(tmp_path, name, reason):
    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(name, "1,2\n")
    (tmp_path / "out").mkdir()
    if reason is None:  # folders dropped: nothing escapes the output folder
        written = extract_zip(archive, tmp_path / "out")
        assert all(path.parent == tmp_path / "out" for path in written)
    else:
        with pytest.raises(ECGReadError, match=reason):
            extract_zip(archive, tmp_path / "out")
        assert list((tmp_path / "out").iterdir()) == []


def test_corrupt_or_encrypted_zip(tmp_path):
    data = bytearray(write_zipped_csv(tmp_path / "good.zip", 2).read_bytes())
    corrupt = bytearray(data)
    corrupt[300:340] = b"\xff" * 40  # inside the deflate stream
    encrypted = bytearray(data)
    central = data.rindex(b"PK\x01\x02")
    encrypted[6] |= 1  # general-purpose flag bit 0 (encrypted), local header and central directory
    encrypted[central + 8] |= 1
    for name, blob in (("corrupt.zip", corrupt), ("encrypted.zip", encrypted), ("cut.zip", data[:len(data) // 2])):
        (tmp_path / name).write_bytes(bytes(blob))
        with pytest.raises(ECGReadError, match=f"{name}: "):
            extract_zip(tmp_path / name, tmp_path / name.replace(".zip", ""))
        assert list((tmp_path / name.replace(".zip", "")).iterdir()) == []  # nothing half-written is left


# --- truncated DICOM -------------------------------------------------------------------------------------------------
def test_truncated_dicom(tmp_path):
    """pydicom raised BytesLengthException (cut to 143 bytes) and struct.error (3,769 bytes) through ``ecgfm info``."""
    ecg = make_synthetic_ecg(fs=500, seconds=2)
    data = write_dicom(tmp_path / "full.dcm", adc_counts(ecg, 2.5), 500, 2.5, "uV").read_bytes()
    for cut in (143, 3769, *range(0, len(data), 997)):
        (tmp_path / f"cut{cut}.dcm").write_bytes(data[:cut])
        refused(tmp_path / f"cut{cut}.dcm", ".")


@pytest.mark.parametrize("cut", [143, 3769])
def test_truncated_vendor_dicom_in_info(tmp_path, cut):
    from typer.testing import CliRunner

    from ecgfm.cli.main import app

    root = Path(os.environ.get("ECGFM_FORMATS_DIR", "/nonexistent")) / "dicom_ecg"
    sources = sorted(root.glob("*.dcm"))
    if not sources:
        pytest.skip("vendor DICOM samples not found: set ECGFM_FORMATS_DIR")
    for source in sources:
        path = tmp_path / f"{source.stem}_{cut}.dcm"
        path.write_bytes(source.read_bytes()[:cut])
        refused(path, ".")
        result = CliRunner().invoke(app, ["info", str(path)])
        assert result.exit_code == 2 and path.name in result.output and "Traceback" not in result.output


# --- folders and globs -----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links on this platform")
def test_symlink_loop_glob_ends(tmp_path):
    """``loop/**/*.xml`` through two links back to a parent: glob.glob spins (paths double per level)."""
    (tmp_path / "loop" / "a" / "b").mkdir(parents=True)
    (tmp_path / "loop" / "a" / "x.xml").write_text("<x/>")
    (tmp_path / "loop" / "a" / "b" / "up").symlink_to(tmp_path / "loop", target_is_directory=True)
    (tmp_path / "loop" / "a" / "up2").symlink_to(tmp_path / "loop", target_is_directory=True)
    started = time.perf_counter()
    files, _ = discover_inputs([str(tmp_path / "loop" / "**" / "*.xml"), tmp_path / "loop"])
    assert files == [tmp_path / "loop" / "a" / "x.xml"] and time.perf_counter() - started < PROBE_SECONDS


# --- resampling output size, decided before allocating --------------------------------------------------------------
def test_resample_refuses_before_allocating():
    ecg = ECG(signal=make_synthetic_ecg(fs=500, seconds=10).signal, fs=0.001, leads=make_synthetic_ecg().leads)
    with pytest.raises(ECGValueError, match="ratio beyond 1000"):
        Pipeline.default(fs=100)(ecg)  # 5000 samples at 0.001 Hz = 500 million samples per lead at 100 Hz
    tracemalloc.start()
    try:
        with pytest.raises(ECGValueError, match="over the limit of 20000000 values"):
            resample(np.zeros((12, 2_000_000), np.float32), 500, 1000)  # 12 x 4M outputs
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20  # the 96 MB input is the only allocation; the 192 MB output never is


# --- the limits are configurable ------------------------------------------------------------------------------------
def test_limits_from_environment(tmp_path, monkeypatch):
    np.save(tmp_path / "fast.npy", make_synthetic_ecg(fs=500, seconds=2).signal)
    refused(tmp_path / "fast.npy", "30000 Hz is outside", fs=30_000)
    monkeypatch.setenv(LIMITS_ENV, "max_fs_hz=40000, max_values=1e6")
    assert read_limits() == ReadLimits(max_fs_hz=40_000, max_values=1_000_000)
    assert ecgfm.read(tmp_path / "fast.npy", fs=30_000, check_units=False).fs == 30_000
    np.save(tmp_path / "long.npy", np.zeros((12, 100_000), np.float32))
    refused(tmp_path / "long.npy", r"shape \(12, 100000\) = 1200000 values, over the limit of 1000000", fs=500)
    monkeypatch.setenv(LIMITS_ENV, "max_fs_hz=fast")
    with pytest.raises(ValueError, match="max_fs_hz must be a positive number"):
        read_limits()
