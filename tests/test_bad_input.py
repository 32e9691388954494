"""Bad input: every unreadable file raises ECGReadError naming the file and the reason, never a bare traceback.

Each case writes a broken file in ``tmp_path`` and returns ``(path to read, read kwargs, reason regex)``.
"""
import numpy as np
import pytest
import wfdb
from scipy.io import savemat

import ecgfm
from ecgfm import ECGReadError

from conftest import make_synthetic_ecg, write_challenge_record, write_wfdb_record


def _ecg(fs=500, seconds=2, **kw):
    return make_synthetic_ecg(fs=fs, seconds=seconds, **kw)


def _wfdb(tmp, name="rec", **kw):
    return write_wfdb_record(tmp, name, _ecg(), **kw)


# --- missing files -------------------------------------------------------------------------------------------------
def missing_hea(tmp):
    return tmp / "nothere.hea", {}, "not found"


def missing_npy(tmp):
    return tmp / "nothere.npy", {"fs": 500}, "file not found"


def missing_dat_beside_hea(tmp):
    header = _wfdb(tmp)
    (tmp / "rec.dat").unlink()
    return header, {}, r"signal file rec\.dat named in the header is missing"


def dat_without_header(tmp):
    _wfdb(tmp)
    (tmp / "rec.hea").unlink()
    return tmp / "rec.dat", {}, r"header \(\.hea\) not found"


# --- truncated / mismatched data -----------------------------------------------------------------------------------
def truncated_dat(tmp):
    header = _wfdb(tmp)
    data = (tmp / "rec.dat").read_bytes()
    (tmp / "rec.dat").write_bytes(data[: len(data) // 3])
    return header, {}, "truncated"


def truncated_dat_mid_frame(tmp):
    header = _wfdb(tmp)
    data = (tmp / "rec.dat").read_bytes()
    (tmp / "rec.dat").write_bytes(data[:-7])  # not even a whole sample frame
    return header, {}, "truncated"


def header_declares_more_samples(tmp):
    header = _wfdb(tmp)  # 1000 samples
    text = header.read_text().splitlines()
    text[0] = text[0].replace(" 1000", " 1200", 1)
    header.write_text("\n".join(text) + "\n")
    return header, {}, "truncated or does not match the header"


def header_declares_fewer_samples(tmp):
    header = _wfdb(tmp)
    text = header.read_text().splitlines()
    text[0] = text[0].replace(" 1000", " 800", 1)
    header.write_text("\n".join(text) + "\n")
    return header, {}, "header/data length mismatch"


def challenge_mat_truncated(tmp):
    header = write_challenge_record(tmp, "A0002", _ecg())
    data = (tmp / "A0002.mat").read_bytes()
    (tmp / "A0002.mat").write_bytes(data[:5000])
    return header, {}, "truncated"


def challenge_mat_v5(tmp):
    header = write_challenge_record(tmp, "A0003", _ecg())
    val = np.round(_ecg().signal * 1000).astype(np.int16)
    savemat(tmp / "A0003.mat", {"val": val})  # MATLAB v5: samples are not at byte offset 24
    return header, {}, "MATLAB v5"


def challenge_mat_wrong_shape(tmp):
    header = write_challenge_record(tmp, "A0004", _ecg())
    val = np.round(_ecg(seconds=2.5).signal * 1000).astype(np.int16)[:, :1000]
    savemat(tmp / "A0004.mat", {"val": val[:6]}, format="4")  # 6 leads where the header has 12
    return header, {}, "header/data length mismatch"


def malformed_header(tmp):
    (tmp / "junk.hea").write_text("this is not a WFDB header\nat all\n")
    return tmp / "junk.hea", {}, "malformed WFDB header|cannot read WFDB"


# --- non-finite samples --------------------------------------------------------------------------------------------
def wfdb_nan_marker(tmp):
    d = np.round(_ecg().signal.T * 1000).astype(np.int16)
    d[100, 3] = -32768  # format 16's "no sample" marker -> NaN
    wfdb.wrsamp("nan", fs=500, units=["mV"] * 12, sig_name=list(_ecg().leads), d_signal=d, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp))
    return tmp / "nan.hea", {}, "NaN or infinite"


def npy_nan(tmp):
    x = _ecg().signal.copy()
    x[2, 10] = np.nan
    np.save(tmp / "nan.npy", x)
    return tmp / "nan.npy", {"fs": 500}, "NaN or infinite samples .*lead III, sample 10"


def npy_inf(tmp):
    x = _ecg().signal.copy()
    x[0, 0] = np.inf
    np.save(tmp / "inf.npy", x)
    return tmp / "inf.npy", {"fs": 500}, "NaN or infinite"


def csv_nan(tmp):
    lines = [",".join(_ecg().leads)] + [",".join(f"{v:.4f}" for v in row) for row in _ecg().signal.T]
    lines[5] = lines[5].replace(lines[5].split(",")[0], "nan", 1)
    (tmp / "nan.csv").write_text("\n".join(lines) + "\n")
    return tmp / "nan.csv", {"fs": 500}, "NaN or infinite"


# --- wrong lead count ----------------------------------------------------------------------------------------------
def npy_wrong_lead_count(tmp):
    np.save(tmp / "x.npy", _ecg().signal)  # 12 rows
    return tmp / "x.npy", {"fs": 500, "leads": ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]}, "wrong lead count"


def npy_without_lead_names(tmp):
    np.save(tmp / "x.npy", _ecg().signal[:8])
    return tmp / "x.npy", {"fs": 500}, "lead names are needed"


def csv_short_row(tmp):
    lines = [",".join(_ecg().leads)] + [",".join(f"{v:.4f}" for v in row) for row in _ecg().signal.T]
    lines[7] = ",".join(lines[7].split(",")[:11])
    (tmp / "short.csv").write_text("\n".join(lines) + "\n")
    return tmp / "short.csv", {"fs": 500}, "missing value at data row 7, column V6 .*wrong lead count"


def csv_long_row(tmp):
    lines = [",".join(_ecg().leads)] + [",".join(f"{v:.4f}" for v in row) for row in _ecg().signal.T]
    lines[7] += ",0.1"
    (tmp / "long.csv").write_text("\n".join(lines) + "\n")
    return tmp / "long.csv", {"fs": 500}, "malformed table"


def square_ambiguous(tmp):
    np.save(tmp / "sq.npy", np.random.default_rng(0).normal(0, 0.3, (12, 12)))
    return tmp / "sq.npy", {"fs": 500}, "ambiguous"


def wfdb_unknown_lead(tmp):
    return _wfdb(tmp, sig_names=[*_ecg().leads[:11], "ECG13"]), {}, "unknown ECG lead name 'ECG13'"


def wfdb_duplicate_lead(tmp):
    header = _wfdb(tmp)  # wrsamp refuses duplicate names, so edit the header as a faulty exporter would write it
    lines = header.read_text().splitlines()
    lines[12] = lines[12].rsplit(" ", 1)[0] + " V5"
    header.write_text("\n".join(lines) + "\n")
    return header, {}, r"duplicate leads \['V5'\]"


# --- zero-length ---------------------------------------------------------------------------------------------------
def wfdb_zero_length(tmp):
    header = _wfdb(tmp)
    text = header.read_text().splitlines()
    text[0] = text[0].replace(" 1000", " 0", 1)
    header.write_text("\n".join(text) + "\n")
    (tmp / "rec.dat").write_bytes(b"")
    return header, {}, "zero-length signal|zero samples"


def npy_zero_length(tmp):
    np.save(tmp / "empty.npy", np.zeros((12, 0)))
    return tmp / "empty.npy", {"fs": 500}, "zero-length signal"


def csv_header_only(tmp):
    (tmp / "empty.csv").write_text("# fs=500\nI,II,V1\n")
    return tmp / "empty.csv", {}, "zero-length signal"


def csv_empty_file(tmp):
    (tmp / "blank.csv").write_text("")
    return tmp / "blank.csv", {"fs": 500}, "zero-length signal"


# --- non-numeric / not the declared format -------------------------------------------------------------------------
def csv_non_numeric(tmp):
    lines = [",".join(_ecg().leads)] + [",".join(f"{v:.4f}" for v in row) for row in _ecg().signal.T]
    cells = lines[3].split(",")
    cells[4] = "n/a"
    lines[3] = ",".join(cells)
    (tmp / "text.csv").write_text("\n".join(lines) + "\n")
    return tmp / "text.csv", {"fs": 500}, "non-numeric value 'n/a' at data row 3, column aVL"


def csv_binary(tmp):
    (tmp / "bin.csv").write_bytes(bytes(range(256)) * 4)
    return tmp / "bin.csv", {"fs": 500}, "not a text file"


def npy_corrupt(tmp):
    (tmp / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    return tmp / "bad.npy", {"fs": 500}, "not a readable NumPy file"


def npy_object_array(tmp):
    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return tmp / "obj.npy", {"fs": 500}, "holds Python objects"  # never unpickle: arbitrary code execution


def npy_strings(tmp):
    np.save(tmp / "str.npy", np.array([["a"] * 100] * 12))
    return tmp / "str.npy", {"fs": 500}, "must be real numbers"


def unknown_extension(tmp):
    (tmp / "ecg.xyz").write_text("1,2,3\n")
    return tmp / "ecg.xyz", {}, r"unknown file type '\.xyz'"


def no_extension(tmp):
    (tmp / "ecg").write_text("1,2,3\n")
    return tmp / "ecg", {}, "unknown file type"


def unknown_format_name(tmp):
    np.save(tmp / "x.npy", _ecg().signal)
    return tmp / "x.npy", {"format": "parquet"}, "unknown format 'parquet'"


# --- missing or conflicting declarations ---------------------------------------------------------------------------
def npy_without_rate(tmp):
    np.save(tmp / "x.npy", _ecg().signal)
    return tmp / "x.npy", {}, "sampling rate unknown"


def csv_without_rate(tmp):
    (tmp / "x.csv").write_text("I,II\n0.1,0.2\n0.2,0.3\n")
    return tmp / "x.csv", {}, "sampling rate unknown"


def npz_conflicting_rate(tmp):
    np.savez(tmp / "x.npz", signal=_ecg().signal, fs=500)
    return tmp / "x.npz", {"fs": 250}, "declares fs=500 but fs=250 was passed"


def unknown_unit(tmp):
    np.save(tmp / "x.npy", _ecg().signal)
    return tmp / "x.npy", {"fs": 500, "unit": "furlongs"}, "unknown amplitude unit"


def negative_rate(tmp):
    np.save(tmp / "x.npy", _ecg().signal)
    return tmp / "x.npy", {"fs": -500}, "sampling rate must be a positive number"


# --- wrong amplitude unit ------------------------------------------------------------------------------------------
def npy_microvolts_as_mv(tmp):
    np.save(tmp / "uv.npy", _ecg().signal * 1000)
    return tmp / "uv.npy", {"fs": 500, "unit": "mV"}, "microvolts"


def csv_microvolts_as_mv(tmp):
    lines = ["# fs=500 unit=mV", ",".join(_ecg().leads)]
    lines += [",".join(f"{v * 1000:.1f}" for v in row) for row in _ecg().signal.T]
    (tmp / "uv.csv").write_text("\n".join(lines) + "\n")
    return tmp / "uv.csv", {}, "microvolts"


def wfdb_microvolts_as_mv(tmp):
    ecg = _ecg()
    wfdb.wrsamp("uv", fs=500, units=["mV"] * 12, sig_name=list(ecg.leads), p_signal=ecg.signal.T * 1000.0,
                fmt=["16"] * 12, adc_gain=[1.0] * 12, baseline=[0] * 12, write_dir=str(tmp))
    return tmp / "uv.hea", {}, "microvolts"


def npy_volts_as_mv(tmp):
    np.save(tmp / "v.npy", _ecg().signal / 1000)
    return tmp / "v.npy", {"fs": 500}, "volts"


CASES = [missing_hea, missing_npy, missing_dat_beside_hea, dat_without_header, truncated_dat, truncated_dat_mid_frame,
         header_declares_more_samples, header_declares_fewer_samples, challenge_mat_truncated, challenge_mat_v5,
         challenge_mat_wrong_shape, malformed_header, wfdb_nan_marker, npy_nan, npy_inf, csv_nan,
         npy_wrong_lead_count, npy_without_lead_names, csv_short_row, csv_long_row, square_ambiguous,
         wfdb_unknown_lead, wfdb_duplicate_lead, wfdb_zero_length, npy_zero_length, csv_header_only, csv_empty_file,
         csv_non_numeric, csv_binary, npy_corrupt, npy_object_array, npy_strings, unknown_extension, no_extension,
         unknown_format_name, npy_without_rate, csv_without_rate, npz_conflicting_rate, unknown_unit, negative_rate,
         npy_microvolts_as_mv, csv_microvolts_as_mv, wfdb_microvolts_as_mv, npy_volts_as_mv]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_raises_read_error_naming_file_and_reason(tmp_path, case):
    path, kwargs, reason = case(tmp_path)
    with pytest.raises(ECGReadError, match=reason) as info:
        ecgfm.read(path, **kwargs)
    error = info.value
    assert path.stem in str(error), f"error does not name the file: {error}"
    assert error.path is not None and error.reason
