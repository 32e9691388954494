"""WFDB records (``.hea`` + ``.dat`` / ``.mat``) via the ``wfdb`` package: PTB-XL and PhysioNet Challenge 2020/21."""
from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import wfdb
from wfdb.io import _header, _signal

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import to_float32
from ecgfm.io.limits import check_extent, check_file_size, check_rate
from ecgfm.io.registry import register_reader
from ecgfm.signal.units import check_plausible_millivolts, unit_factor


def _record_base(path: Path) -> Path:
    """The record path without extension, as wfdb wants it."""
    return path.with_suffix("") if path.suffix.lower() in {".hea", ".dat", ".mat"} else path


#: Metadata keys a header comment never overwrites (a ``# source: ...`` comment is kept as ``header_source``).
_RESERVED_META = {"record_id", "source", "format", "comments", "header_quirks", "snomed", "scp", "statements",
                  "patient_id", "waveform", "labels"}


def parse_challenge_comments(comments: list[str]) -> dict:
    """Metadata from PhysioNet Challenge 2020/21 header comments (``# Age: 74``, ``# Sex: Male``, ``# Dx: 164889003,...``).

    ``snomed`` holds the Dx SNOMED-CT codes as strings; ``scp`` their SCP-ECG equivalents where a mapping exists.
    Every other ``Key: value`` comment is kept as text under its key in snake case (``# Dx_original_text: RBBB`` ->
    ``dx_original_text``, ``# Rx: Unknown`` -> ``rx``, unknown keys alike).
    """
    meta: dict = {}
    for line in comments:
        match = re.match(r"\s*([A-Za-z][\w ]*?)\s*:\s*(.*)$", line)
        if not match:
            continue
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        if key not in ("age", "sex", "dx"):
            name = re.sub(r"\W+", "_", key)
            meta["header_" + name if name in _RESERVED_META else name] = value
        elif key == "age":
            meta["age"] = float(value) if re.fullmatch(r"\d+(\.\d+)?", value) else None
        elif key == "sex":
            meta["sex"] = {"male": "M", "m": "M", "female": "F", "f": "F"}.get(value.lower())
        elif key == "dx":
            meta["snomed"] = [code.strip() for code in value.split(",") if code.strip()]
    if "snomed" in meta:
        from ecgfm.labels.snomed import snomed_to_scp

        meta["scp"] = sorted({scp for code in meta["snomed"] for scp in snomed_to_scp(code)})
    return meta


#: Bytes per sample of the WFDB storage formats (see the WFDB "signal" format spec). FLAC formats (508/516/524) are
#: compressed, so their size cannot be checked. wfdb itself reports a short file only as a NumPy reshape error.
BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3,
                    "311": 4 / 3}


def _signal_files(record) -> dict[str, tuple[str, int, int]]:
    """Each signal file: (format, byte offset, values it must hold = sig_len x samples per frame of its signals)."""
    offsets = record.byte_offset or [None] * record.n_sig
    frames = record.samps_per_frame or [1] * record.n_sig
    files: dict[str, tuple[str, int, int]] = {}
    for i, name in enumerate(record.file_name):
        fmt, offset, count = files.get(name, (record.fmt[i], offsets[i] or 0, 0))
        files[name] = (fmt, offset, count + (frames[i] or 1) * record.sig_len)
    return files


def check_signal_files(base: Path, record) -> None:
    """Refuse signal files whose size disagrees with the header (truncated data, or a header declaring too few samples)."""
    header_path = base.with_suffix(".hea")
    for name, (fmt, offset, n_values) in _signal_files(record).items():
        data_file = base.parent / name
        if data_file.suffix.lower() == ".mat":
            _check_mat4(header_path, data_file, record, offset)
        if fmt not in BYTES_PER_SAMPLE:
            continue
        size = data_file.stat().st_size
        needed = offset + int(n_values * BYTES_PER_SAMPLE[fmt])
        channels = record.file_name.count(name)
        if size < needed:
            held = int((size - offset) / BYTES_PER_SAMPLE[fmt]) // max(channels, 1)
            raise ECGReadError(header_path, f"signal file {name} is truncated or does not match the header: the header "
                                            f"declares {record.sig_len} samples x {channels} signals in format {fmt} "
                                            f"({needed} bytes) but the file has {size} bytes (~{max(held, 0)} samples)")
        frame_bytes = int(np.ceil(channels * BYTES_PER_SAMPLE[fmt]))
        if size - needed >= max(frame_bytes, 4):  # allow the padding byte(s) of packed formats (212, 310, 311)
            held = int((size - offset) / BYTES_PER_SAMPLE[fmt]) // max(channels, 1)
            raise ECGReadError(header_path, f"header/data length mismatch: the header declares {record.sig_len} "
                                            f"samples but signal file {name} holds ~{held} ({size} bytes)")


def _check_mat4(header_path: Path, data_file: Path, record, offset: int) -> None:
    """A WFDB ``.mat`` signal file must be MATLAB v4 (as ``wfdb2mat`` and the PhysioNet Challenges write), sized as declared."""
    with open(data_file, "rb") as fh:
        head = fh.read(max(offset, 20))
    if head.startswith(b"MATLAB"):
        raise ECGReadError(header_path, f"{data_file.name} is a MATLAB v5+ file; WFDB headers address raw samples at a "
                                        "byte offset, which only MATLAB v4 files (scipy savemat format='4') have")
    if len(head) < 20:
        raise ECGReadError(header_path, f"{data_file.name} is too short to be a MATLAB v4 file")
    # MATLAB v4 matrix header: five little-endian int32 (type, rows, cols, imaginary flag, name length).
    _, rows, cols, _, _ = np.frombuffer(head[:20], dtype="<i4")
    channels = record.file_name.count(data_file.name)
    if (rows, cols) != (channels, record.sig_len) and (rows, cols) != (record.sig_len, channels):
        raise ECGReadError(header_path, f"header/data length mismatch: the header declares {channels} signals x "
                                        f"{record.sig_len} samples but {data_file.name} holds a {rows} x {cols} array")


#: Largest header file read (a 12-lead header with comments is ~1 KB).
MAX_HEADER_BYTES = 1 << 20
#: The suffixes a record's files carry; a record line naming ``E00009.mat`` names the record ``E00009``.
_RECORD_NAME = re.compile(r"(?P<name>[^/]+?)(?P<ext>\.(?:mat|dat|hea))?(?P<segments>/\d+)?", re.IGNORECASE)


def read_header(path: str | Path) -> tuple[wfdb.Record, list[str]]:
    """The WFDB header of a record as a ``wfdb.Record`` (no signals) and the quirks it was read with.

    The header text is checked before wfdb parses it, because wfdb refuses some headers as released and silently
    defaults others: PhysioNet Challenge 2020 Georgia headers name the record with its extension on the record line
    (``E00009.mat 12 500 5000``), which is normalised to the record name (a quirk, listed); a missing, non-numeric,
    non-finite or implausible sampling rate (wfdb reads ``nan`` and ``-500`` as 250 Hz, ``1e9`` as 1 Hz) and a zero,
    negative or non-finite ADC gain (wfdb reads ``0`` as 200) are errors naming the file.
    """
    header_path = _record_base(Path(path)).with_suffix(".hea")
    text_lines = [line.strip() for line in _header_text(header_path).splitlines()]
    comments = [line for line in text_lines if line.startswith("#")]
    lines = [line for line in text_lines if line and not line.startswith("#")]
    if not lines:
        raise ECGReadError(header_path, "malformed WFDB header: no record line")
    record_line, quirks = _normalised_record_line(lines[0], header_path)
    fs, sig_len, n_sig = _declared_record(record_line, header_path)
    if len(lines) - 1 != n_sig:
        raise ECGReadError(header_path, f"malformed WFDB header: the record line declares {n_sig} signals but "
                                        f"{len(lines) - 1} signal lines follow")
    gains = [_declared_gain(line, i, header_path) for i, line in enumerate(lines[1:])]
    try:
        record_fields = _header._parse_record_line(record_line)
        signal_fields = parse_signal_lines(lines[1:])
    except ValueError as exc:  # wfdb's HeaderSyntaxError
        raise ECGReadError(header_path, f"malformed WFDB header: {exc}") from None
    same_rate = math.isclose(float(record_fields["fs"]), fs, rel_tol=1e-6)
    same_gains = all(declared is None or math.isclose(parsed, declared, rel_tol=1e-9)
                     for parsed, declared in zip(signal_fields["adc_gain"], gains))
    if not (same_rate and same_gains and (record_fields["sig_len"], record_fields["n_sig"]) == (sig_len, n_sig)):
        raise ECGReadError(header_path, f"malformed WFDB header: the record line {lines[0]!r} or a gain field is not "
                                        "written as plain decimal numbers (wfdb would misread it)")
    record = wfdb.Record()
    for name, value in {**signal_fields, **record_fields}.items():
        if name != "n_seg":
            setattr(record, name, value)
    record.comments = [line.strip(" \t#") for line in comments]
    return record, quirks


@lru_cache(maxsize=1)
def _signal_specs() -> tuple[tuple[str, Any, type | None], ...]:
    """(field, read default, int/float/None) of each signal-line field, from wfdb's own spec table, read once."""
    specs = _header.SIGNAL_SPECS
    casts = {id(_header.int_types): int, id(_header.float_types): float}
    return tuple((field, specs.loc[field, "read_default"], casts.get(id(specs.loc[field, "allowed_types"])))
                 for field in specs.index)


def parse_signal_lines(lines: list[str]) -> dict[str, list]:
    """The fields of WFDB signal lines, exactly as ``wfdb.io._header._parse_signal_lines`` returns them (same regex,
    same spec table and defaults; tests/test_io_wfdb.py compares both on every header), without its pandas lookup per
    field per signal, which took ~60 % of the time to read a PTB-XL record."""
    specs = _signal_specs()
    fields: dict[str, list] = {name: [None] * len(lines) for name, _, _ in specs}
    for channel, line in enumerate(lines):
        match = _header.rx_signal.match(line)
        if match is None:
            raise ValueError("invalid syntax in signal line")
        values = match.groupdict()
        for name, default, cast in specs:
            text = values[name]
            if text == "":  # a missing baseline defaults to the ADC zero when there is one
                value = int(values["adc_zero"]) if name == "baseline" and values["adc_zero"] != "" else default
            elif cast is int:
                value = int(text)
            elif cast is float:
                value = float(text)
                value = 200.0 if name == "adc_gain" and value == 0 else value  # wfdb's reading (refused above)
            else:
                value = text
            fields[name][channel] = value
    return fields


def _header_text(header_path: Path) -> str:
    """The header's text (ASCII, undecodable bytes dropped as wfdb does), refusing a huge file before reading it."""
    check_file_size(header_path, MAX_HEADER_BYTES, "WFDB header", "the WFDB header limit")
    try:
        return header_path.read_bytes().decode("ascii", errors="ignore")
    except FileNotFoundError:
        raise ECGReadError(header_path, "WFDB header (.hea) not found") from None
    except OSError as exc:
        raise ECGReadError(header_path, f"cannot open file: {exc.strerror or exc}") from None


def _normalised_record_line(line: str, header_path: Path) -> tuple[str, list[str]]:
    """The record line with a record name wfdb accepts; multi-segment records are refused."""
    tokens = line.split()
    match = _RECORD_NAME.fullmatch(tokens[0])
    if match is None or len(tokens) < 2:
        raise ECGReadError(header_path, f"malformed WFDB header: invalid record line {line!r}")
    if match.group("segments"):
        raise ECGReadError(header_path, f"multi-segment WFDB record ({tokens[0]}): ecgfm reads single-segment "
                                        "records; read one segment's header instead")
    quirks = []
    if match.group("ext"):
        quirks.append(f"record line names the record with its extension ({tokens[0]}), as PhysioNet Challenge "
                      "2020 Georgia headers do")
    return " ".join([match.group("name"), *tokens[1:]]), quirks


def _declared_record(record_line: str, header_path: Path) -> tuple[float, int | None, int]:
    """(rate, samples per signal or None, signal count) as the record line writes them, the rate checked."""
    tokens = record_line.split()
    if not tokens[1].isdigit() or int(tokens[1]) == 0:
        raise ECGReadError(header_path, f"malformed WFDB header: {tokens[1]!r} signals declared on the record "
                                        "line; expected a positive count")
    if len(tokens) < 3:
        raise ECGReadError(header_path, "WFDB header declares no sampling rate (wfdb would assume 250 Hz); "
                                        "add it to the record line")
    fs = check_rate(header_path, tokens[2].split("/", 1)[0], "WFDB header sampling rate")
    if len(tokens) < 4:
        return fs, None, int(tokens[1])
    if not tokens[3].isdigit():
        raise ECGReadError(header_path, f"malformed WFDB header: {tokens[3]!r} samples per signal declared; "
                                        "expected a count")
    return fs, int(tokens[3]), int(tokens[1])


def _declared_gain(line: str, index: int, header_path: Path) -> float | None:
    """The ADC gain a signal line declares (``None`` when omitted: 200 by the WFDB spec); refuses 0, < 0, nan, inf."""
    tokens = line.split()
    if len(tokens) < 3:
        return None
    text = re.match(r"[^(/]*", tokens[2]).group(0)
    try:
        gain = float(text)
    except ValueError:
        raise ECGReadError(header_path, f"signal {index + 1}: ADC gain {tokens[2]!r} is not a number") from None
    if not math.isfinite(gain) or gain <= 0:
        name = " ".join(tokens[8:]) or f"signal {index + 1}"
        raise ECGReadError(header_path, f"{name}: ADC gain {tokens[2]!r} must be a positive number (wfdb reads 0 as "
                                        "200 units/mV, a negative gain inverts the signal); the header is wrong")
    return gain


@register_reader("wfdb", (".hea", ".dat", ".mat"), description="WFDB record (.hea with .dat or .mat signal file)")
def read_wfdb(path: Path, *, sampfrom: int = 0, sampto: int | None = None, check_units: bool = True) -> ECG:
    """Read a WFDB record; ``sampfrom``/``sampto`` select a window (in samples)."""
    base = _record_base(Path(path))
    header_path = base.with_suffix(".hea")
    if not header_path.exists():
        raise ECGReadError(header_path, "WFDB header (.hea) not found")
    record, quirks = read_header(header_path)
    _check_before_decoding(base, record, sampfrom, sampto)
    signal = _decode(base, record, sampfrom, sampto)
    try:
        factors = np.array([unit_factor(u or "mV") for u in record.units], dtype=np.float64)
    except ValueError as exc:
        raise ECGReadError(header_path, str(exc)) from None
    signal = to_float32((signal * factors).T, header_path)
    if not np.isfinite(signal).all():
        lead, sample = np.argwhere(~np.isfinite(signal))[0]
        raise ECGReadError(header_path, f"signal contains NaN or infinite samples (missing-value markers), first in "
                                        f"{record.sig_name[lead]} at sample {sampfrom + sample}")
    meta = {"record_id": record.record_name, "source": str(header_path), "format": "wfdb",
            "comments": list(record.comments or []), **({"header_quirks": quirks} if quirks else {})}
    meta.update(parse_challenge_comments(record.comments or []))
    ecg = ECG(signal=signal, fs=float(record.fs), leads=tuple(record.sig_name), meta=meta)
    if check_units:
        try:
            check_plausible_millivolts(ecg.signal, fs=ecg.fs, leads=ecg.leads)
        except ValueError as exc:
            raise ECGReadError(header_path, str(exc)) from None
    return ecg


def _check_before_decoding(base: Path, record: wfdb.Record, sampfrom: int, sampto: int | None) -> None:
    """Signal files present and sized as the header declares, and the window within the limits."""
    header_path = base.with_suffix(".hea")
    for name in sorted(set(record.file_name)):
        if not (base.parent / name).is_file():
            raise ECGReadError(header_path, f"signal file {name} named in the header is missing")
    if record.sig_len is None:
        record.sig_len = _inferred_length(base, record)
    if record.sig_len == 0:
        raise ECGReadError(header_path, "zero-length signal: the WFDB header declares 0 samples")
    end = record.sig_len if sampto is None else sampto
    if not 0 <= sampfrom < end <= record.sig_len:
        raise ECGReadError(header_path, f"invalid window sampfrom={sampfrom}, sampto={sampto} for a record of "
                                        f"{record.sig_len} samples")
    check_extent(header_path, float(record.fs), end - sampfrom, record.n_sig, "sampfrom=/sampto=")
    check_signal_files(base, record)


def _inferred_length(base: Path, record: wfdb.Record) -> int:
    """Samples per signal of a header that omits them, from the size of its first signal file (as wfdb does)."""
    first = record.file_name[0]
    per_frame = sum(spf or 1 for name, spf in zip(record.file_name, record.samps_per_frame) if name == first)
    if record.fmt[0] not in BYTES_PER_SAMPLE:
        raise ECGReadError(base.with_suffix(".hea"), f"WFDB header declares no sample count and format "
                                                     f"{record.fmt[0]} does not tell it from the file size")
    size = (base.parent / first).stat().st_size - (record.byte_offset[0] or 0)
    return int(size / (BYTES_PER_SAMPLE[record.fmt[0]] * per_frame))


def _decode(base: Path, record: wfdb.Record, sampfrom: int, sampto: int | None) -> np.ndarray:
    """Physical samples (samples, signals) decoded by wfdb, as ``wfdb.rdrecord`` does for a single-segment record.

    rdrecord itself cannot be used: it re-reads the header from disk and refuses the Challenge record lines.
    """
    header_path = base.with_suffix(".hea")
    sampto = record.sig_len if sampto is None else sampto
    channels = list(range(record.n_sig))
    try:
        record.check_read_inputs(sampfrom, sampto, channels, True, True, 64)
        record.e_d_signal = _signal._rd_segment(
            file_name=record.file_name, dir_name=str(base.parent), pn_dir=None, fmt=record.fmt, n_sig=record.n_sig,
            sig_len=record.sig_len, byte_offset=record.byte_offset, samps_per_frame=record.samps_per_frame,
            skew=record.skew, init_value=record.init_value, sampfrom=sampfrom, sampto=sampto, channels=channels,
            ignore_skew=False, no_file=False, sig_data=None, return_res=64)
        record._arrange_fields(channels=channels, sampfrom=sampfrom, smooth_frames=True)
        record.dac(expanded=False, return_res=64, inplace=True)
    except Exception as exc:  # wfdb raises bare Exception/ValueError/IndexError on data it cannot decode
        raise ECGReadError(header_path, f"cannot read WFDB signal data: {type(exc).__name__}: {exc}") from exc
    signal = record.p_signal
    if signal is None or signal.shape[0] != sampto - sampfrom:
        got = 0 if signal is None else signal.shape[0]
        raise ECGReadError(header_path, f"signal file is truncated or does not match the header: expected "
                                        f"{sampto - sampfrom} samples per lead, found {got}")
    return signal
