"""Writers for ECG files in every format ecgfm reads, built by the tests from a synthetic ECG: independent encoders
(Philips XLI, DICOM via pydicom, ISHNE), ecgfm's own writers, WFDB/Challenge records and headerless arrays.

``source_file(fmt, folder, ecg)`` writes one file of the named format; the fuzz and damage tests mutate them.
"""
from __future__ import annotations

import base64
import re
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.io.writers import write
from ecgfm.leads import STANDARD_LEADS

from conftest import write_challenge_record, write_wfdb_record


def adc_counts(ecg: ECG, uv: float) -> np.ndarray:
    return np.rint(ecg.signal.astype(np.float64) * 1000 / uv).astype(np.int64)


def lzw_encode(data: bytes) -> bytes:
    """10-bit MSB-first LZW codes ending with 1023, table capped at code 1022 (as the decoder expects)."""
    table, word, codes = {bytes([i]): i for i in range(256)}, b"", []
    for byte in data:
        grown = word + bytes([byte])
        if grown in table:
            word = grown
            continue
        codes.append(table[word])
        if len(table) <= 1022:
            table[grown] = len(table)
        word = bytes([byte])
    codes += [table[word], 1023] if word else [1023]
    bits = "".join(format(code, "010b") for code in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")



def xli_chunk(samples: np.ndarray) -> bytes:
    """Delta codes: x0, x1 kept; e[n] = 2x[n-1] - x[n-2] - x[n]; header carries e[2], codes[n-1] = e[n] + 64."""
    x = samples.astype(np.int64)
    e = 2 * x[1:-1] - x[:-2] - x[2:]  # e[2..N-1]
    codes = np.zeros_like(x)
    codes[:2] = x[:2]
    codes[2:-1] = e[1:] + 64
    u16 = codes.astype(np.int16).view(np.uint16)
    packed = (u16 >> 8).astype(np.uint8).tobytes() + (u16 & 0xFF).astype(np.uint8).tobytes()
    body = lzw_encode(packed)
    return struct.pack("<ihh", len(body), 1, int(e[0])) + body



def philips_residuals(counts: np.ndarray) -> np.ndarray:
    """Store III/aVR/aVL/aVF as Philips does: residuals from the limb-lead laws (floor division)."""
    i, ii, iii, avr, avl, avf = counts[:6]
    stored = counts.copy()
    stored[2] = ii - i - iii
    stored[3] = -avr - np.floor_divide(i + ii, 2)
    stored[4] = np.floor_divide(i - iii, 2) - avl
    stored[5] = np.floor_divide(ii + iii, 2) - avf
    return stored



def philips_xml(counts: np.ndarray, fs: int, uv: float, version: str = "1.04") -> str:
    payload = base64.b64encode(b"".join(xli_chunk(row) for row in philips_residuals(counts))).decode()
    ms = int(counts.shape[1] * 1000 / fs)
    if version == "1.03":
        waves = (f'<parsedwaveforms compressflag="True" compressmethod="XLI" dataencoding="Base64" '
                 f'durationperchannel="{ms}">{payload}</parsedwaveforms>')
        signal = (f"<samplingrate>{fs}</samplingrate><signalresolution>{uv:g}</signalresolution>"
                  "<acquisitiontype>STD-12</acquisitiontype><numberchannelsvalid>12</numberchannelsvalid>")
    else:
        waves = (f'<parsedwaveforms dataencoding="Base64" compression="XLI" numberofleads="12" '
                 f'leadlabels="{" ".join(STANDARD_LEADS)}" durationperchannel="{ms}" samplespersecond="{fs}" '
                 f'resolution="{uv:g}">{payload}</parsedwaveforms>')
        signal = f"<samplingrate>{fs}</samplingrate><resolution>{uv:g}</resolution>"
    return ('<?xml version="1.0" encoding="utf-16"?>\n<restingecgdata xmlns="http://www3.medical.philips.com">'
            f"<documentinfo><documentversion>{version}</documentversion></documentinfo>"
            f'<dataacquisition date="2020-01-02" time="03:04:05"><machine machineid="M7">PageWriter</machine>'
            f"<signalcharacteristics>{signal}</signalcharacteristics></dataacquisition>"
            "<patient><generalpatientdata><patientid>P9</patientid><sex>Female</sex></generalpatientdata></patient>"
            "<interpretations><interpretation><statement><leftstatement>Sinus rhythm</leftstatement></statement>"
            "</interpretation></interpretations>"
            f"<waveforms>{waves}</waveforms></restingecgdata>")


def write_dicom(path: Path, counts: np.ndarray, fs: float, sensitivity: float, unit: str, *, labels=STANDARD_LEADS,
           sop: str = "1.2.840.10008.5.1.4.1.1.9.1.1", padding: bytes | None = None, group_label: str = "RHYTHM"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from ecgfm.io.scp import SCP_LEAD_IDS

    codes = {name: code for code, name in SCP_LEAD_IDS.items()}
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientSex, ds.PatientAge = "D-3", "F", "061Y"
    ds.AcquisitionDateTime, ds.Manufacturer = "20190304050607", "Acme"
    group = Dataset()
    group.MultiplexGroupLabel, group.SamplingFrequency = group_label, fs
    group.NumberOfWaveformChannels, group.NumberOfWaveformSamples = counts.shape
    group.WaveformBitsAllocated, group.WaveformSampleInterpretation = 16, "SS"
    if padding is not None:
        group.WaveformPaddingValue = padding
    channels = []
    for label in labels:
        channel, source, units = Dataset(), Dataset(), Dataset()
        source.CodeValue = f"5.6.3-9-{codes[label]}" if label in codes else "PRESSURE"
        source.CodingSchemeDesignator, source.CodeMeaning = "SCPECG", f"Lead {label}"
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = unit, "UCUM", unit
        channel.ChannelSourceSequence, channel.ChannelSensitivityUnitsSequence = [source], [units]
        channel.ChannelSensitivity, channel.ChannelSensitivityCorrectionFactor = sensitivity, 1
        channel.ChannelBaseline = 0
        channels.append(channel)
    group.ChannelDefinitionSequence = channels
    group.WaveformData = counts.T.astype("<i2").tobytes()
    ds.WaveformSequence = [group]
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ishne(path: Path, counts: np.ndarray, fs: int, codes, resolution_nv: int = 2500, crc_ok: bool = True,
           magic: bytes = b"ISHNE1.0", truncate: int = 0) -> Path:
    from ecgfm.io.scp import crc_ccitt

    n_leads, n = counts.shape
    fixed = struct.pack("<iiiih40s40s20shh3h3h3h3hh12h12h12hh40sh80s80s88s", 0, n, 522, 522, 1, b"", b"", b"ID-9",
                        2, 0, 1, 1, 1970, 4, 5, 2022, 4, 5, 2022, 13, 14, 15, n_leads,
                        *(list(codes) + [-9] * (12 - n_leads)), *([0] * 12),
                        *([resolution_nv] * n_leads + [-9] * (12 - n_leads)), 0, b"Holter 3000", fs, b"", b"", b"")
    crc = crc_ccitt(fixed) ^ (0 if crc_ok else 1)
    data = counts.T.astype("<i2").tobytes()
    path.write_bytes(magic + struct.pack("<H", crc) + fixed + data[:len(data) - truncate])
    return path


def write_contec(path: Path, ecg: ECG) -> Path:
    """A Contec ECG90A ``.ECG``: 43-byte header, uint16 II, III, V1-V6 at 5 uV/count around 2048, 37-byte footer."""
    header = (b"0000001\x00" + b"\x00\x00" + b"2021-01-02 03:04:05\x00" + b"\x00\x00" + b"NAME\x00\x00\x00\x00"
              + bytes([1, 40, 70]))
    stored = [ecg.lead(name) for name in ("II", "III", "V1", "V2", "V3", "V4", "V5", "V6")]
    rows = np.round(2048 + np.array(stored).T * 200).astype("<u2")
    path.write_bytes(header + rows.tobytes() + b"\x00" * 37)
    return path


def write_csv(path: Path, ecg: ECG) -> Path:
    lines = [f"# fs={ecg.fs:g} unit=mV", ",".join(ecg.leads)]
    lines += [",".join(f"{v:.4f}" for v in row) for row in ecg.signal.T]
    path.write_text("\n".join(lines) + "\n")
    return path


#: Every format ``source_file`` writes (reader name -> file suffix).
FORMATS = {"wfdb": ".hea", "challenge": ".hea", "numpy": ".npy", "npz": ".npz", "csv": ".csv", "contec": ".ECG",
           "scp": ".scp", "muse": ".xml", "hl7_aecg": ".xml", "edf": ".edf", "dicom": ".dcm", "ishne": ".ecg",
           "philips": ".xml"}


#: Options ``ecgfm.read`` needs for a format that cannot declare them (a ``.npy`` holds no sampling rate).
READ_OPTIONS = {"numpy": {"fs": 500.0}}


def read_variants(source: Path, options: dict | None = None) -> list[dict]:
    """The option sets to read mutations of ``source`` with: CRC-protected formats (SCP-ECG, ISHNE) are also read
    with their CRC check off, so the mutations reach the decoder behind it."""
    from ecgfm.io import find_reader

    base = dict(options or {})
    return [base, {**base, "check_crc": False}] if find_reader(source).name in ("scp", "ishne") else [base]


def source_file(fmt: str, folder: Path, ecg: ECG, name: str = "src") -> Path:
    """One file of format ``fmt`` holding ``ecg`` (500 Hz, 12 leads) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{FORMATS[fmt]}"
    if fmt == "wfdb":
        return write_wfdb_record(folder, name, ecg)
    if fmt == "challenge":
        return write_challenge_record(folder, name, ecg)
    if fmt == "numpy":
        np.save(path, ecg.signal)
        return path
    if fmt == "npz":
        np.savez(path, signal=ecg.signal, fs=ecg.fs, leads=np.array(ecg.leads))
        return path
    if fmt == "csv":
        return write_csv(path, ecg)
    if fmt == "contec":
        return write_contec(path, ecg)
    if fmt == "dicom":
        return write_dicom(path, adc_counts(ecg, 2.5), ecg.fs, 2.5, "uV")
    if fmt == "ishne":
        return write_ishne(path, adc_counts(ecg, 2.5), int(ecg.fs), range(5, 17))
    if fmt == "philips":
        path.write_bytes(philips_xml(adc_counts(ecg, 5.0), int(ecg.fs), 5.0).encode("utf-16"))
        return path
    return write(ecg, path, format=fmt)


# --- seeded mutations for fuzzing (tests/test_io_fuzz.py, benchmarks/fuzz_readers.py) ------------------------------
#: Numbers a mutated header or table may carry instead of a genuine one: zero, negatives, non-finite, huge, tiny.
HOSTILE_NUMBERS = ("0", "-1", "-500", "nan", "inf", "1e9", "0.001", "99999999999", "4294967296", "", "1e308")
_INTERESTING_BYTES = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff")


def mutate(data: bytes, rng: np.random.Generator, text: bool = False) -> bytes:
    """One seeded mutation of a file's bytes: truncation, bit flips (half in the header), a splice, a deletion, an
    overwrite with boundary values, or (text files) a number replaced by a hostile one."""
    if not data:
        return bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    kinds = ["truncate", "flip", "flips", "splice", "delete", "overwrite"] + (["number"] * 3 if text else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    n = len(data)
    if kind == "truncate":
        return data[:int(rng.integers(0, n))]
    if kind in ("flip", "flips"):
        out = bytearray(data)
        for _ in range(1 if kind == "flip" else int(rng.integers(2, 17))):
            where = int(rng.integers(min(n, 1024))) if rng.random() < 0.5 else int(rng.integers(n))
            out[where] ^= 1 << int(rng.integers(8))
        return bytes(out)
    start, length = int(rng.integers(n)), int(rng.integers(1, max(2, n // 8)))
    if kind == "splice":
        where = int(rng.integers(n))
        return data[:where] + data[start:start + length] + data[where:]
    if kind == "delete":
        return data[:start] + data[start + length:]
    if kind == "overwrite":
        value = _INTERESTING_BYTES[int(rng.integers(len(_INTERESTING_BYTES)))] * int(rng.integers(1, 5))
        return data[:start] + value + data[start + len(value):]
    return _replace_number(data, rng)


def _replace_number(data: bytes, rng: np.random.Generator) -> bytes:
    """A random number in the text replaced by one of :data:`HOSTILE_NUMBERS`."""
    numbers = list(re.finditer(rb"-?\d+(?:\.\d+)?", data))
    if not numbers:
        return data
    match = numbers[int(rng.integers(len(numbers)))]
    value = HOSTILE_NUMBERS[int(rng.integers(len(HOSTILE_NUMBERS)))].encode()
    return data[:match.start()] + value + data[match.end():]


def iter_mutated(source: Path, folder: Path, count: int, seed: int) -> Iterator[Path]:
    """``count`` mutated copies of ``source`` written one at a time in ``folder``, each the file to read (a WFDB
    record: its header). WFDB records mutate their header (as text) or their signal file, alternately."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    companions = [p for p in source.parent.glob(source.stem + ".*") if p != source] if source.suffix == ".hea" else []
    text = source.suffix.lower() in (".hea", ".csv", ".xml")
    original = source.read_bytes()
    for i in range(count):
        name = f"m{seed}_{i}"
        target = folder / f"{name}{source.suffix}"
        if companions:
            header = original.replace(source.stem.encode(), name.encode())
            mutate_data = i % 2 == 1
            for companion in companions:
                body = companion.read_bytes()
                (folder / f"{name}{companion.suffix}").write_bytes(mutate(body, rng) if mutate_data else body)
            target.write_bytes(header if mutate_data else mutate(header, rng, text=True))
        else:
            target.write_bytes(mutate(original, rng, text=text))
        yield target


def mutated_copies(source: Path, folder: Path, count: int, seed: int) -> list[Path]:
    """The files of :func:`iter_mutated`, all written."""
    return list(iter_mutated(source, folder, count, seed))
