"""NumPy (.npy/.npz) and CSV readers: declared or explicit rate/leads/unit, orientation, registry dispatch."""
import numpy as np
import pytest

import ecgfm
from ecgfm import ECGReadError, STANDARD_LEADS
from ecgfm.io import available_readers, find_reader, supported_extensions


@pytest.fixture
def ecg(synthetic_ecg):
    return synthetic_ecg(fs=500, seconds=4)


def test_readers_are_registered():
    readers = available_readers()
    assert {"numpy", "csv"} <= set(readers)
    assert {".npy", ".npz", ".csv", ".tsv"} <= supported_extensions()
    assert find_reader("a/b.NPY").name == "numpy" and find_reader("x.csv").name == "csv"


@pytest.mark.parametrize("orientation", ["leads_first", "samples_first"])
def test_npy_either_orientation_with_explicit_rate_and_leads(tmp_path, ecg, orientation):
    data = ecg.signal if orientation == "leads_first" else ecg.signal.T
    np.save(tmp_path / "x.npy", data)
    out = ecgfm.read(tmp_path / "x.npy", fs=500, leads=list(ecg.leads), unit="mV")
    np.testing.assert_array_equal(out.signal, ecg.signal)
    assert out.fs == 500 and out.leads == STANDARD_LEADS
    assert out.meta["format"] == "numpy" and out.meta["source"] == str(tmp_path / "x.npy")


def test_npy_subset_of_leads_in_vendor_spelling(tmp_path, ecg):
    np.save(tmp_path / "x.npy", ecg.signal[[0, 1, 6]].T)
    out = ecgfm.read(tmp_path / "x.npy", fs=500, leads="I, II, v1")
    assert out.leads == ("I", "II", "V1")
    np.testing.assert_array_equal(out.signal, ecg.signal[[0, 1, 6]])


def test_npy_twelve_leads_default_to_standard_order(tmp_path, ecg):
    np.save(tmp_path / "x.npy", ecg.signal)
    assert ecgfm.read(tmp_path / "x.npy", fs=500).leads == STANDARD_LEADS


def test_npy_single_lead_1d(tmp_path, ecg):
    np.save(tmp_path / "x.npy", ecg.lead("II"))
    out = ecgfm.read(tmp_path / "x.npy", fs=500, leads=["II"])
    assert out.signal.shape == (1, ecg.n_samples)


def test_square_array_needs_an_explicit_layout(tmp_path):
    data = np.random.default_rng(0).normal(0, 0.3, (12, 12))
    np.save(tmp_path / "sq.npy", data)
    with pytest.raises(ECGReadError, match="ambiguous"):
        ecgfm.read(tmp_path / "sq.npy", fs=500)
    out = ecgfm.read(tmp_path / "sq.npy", fs=500, layout="samples_first")
    np.testing.assert_allclose(out.signal, data.T.astype(np.float32))


@pytest.mark.parametrize("unit, factor", [("uV", 1000.0), ("µV", 1000.0), ("mV", 1.0), ("V", 1e-3)])
def test_npz_declares_rate_leads_and_unit(tmp_path, ecg, unit, factor):
    np.savez(tmp_path / "x.npz", signal=ecg.signal.astype(np.float64) * factor, fs=500.0,
             leads=np.array(ecg.leads), unit=unit)
    out = ecgfm.read(tmp_path / "x.npz")
    np.testing.assert_allclose(out.signal, ecg.signal, rtol=1e-6, atol=1e-7)
    assert out.fs == 500 and out.leads == STANDARD_LEADS


def test_npz_single_unnamed_array_and_agreeing_argument(tmp_path, ecg):
    np.savez(tmp_path / "x.npz", recording=ecg.signal.T, fs=np.array([500]))
    out = ecgfm.read(tmp_path / "x.npz", fs=500)  # same rate as declared: accepted
    np.testing.assert_array_equal(out.signal, ecg.signal)


def test_unit_argument_converts_microvolts(tmp_path, ecg):
    np.save(tmp_path / "uv.npy", (ecg.signal * 1000).astype(np.int32))
    out = ecgfm.read(tmp_path / "uv.npy", fs=500, unit="uV")
    np.testing.assert_allclose(out.signal, ecg.signal, atol=1e-3)  # integer microvolts: 1 µV resolution


def _write_csv(path, ecg, header=True, comments=("# fs=500",), delimiter=",", time_column=True, fmt="{:.6f}"):
    lines = list(comments)
    if header:
        lines.append(delimiter.join((["time"] if time_column else []) + list(ecg.leads)))
    for i, row in enumerate(ecg.signal.T):
        cells = ([f"{i / ecg.fs:.4f}"] if time_column and header else []) + [fmt.format(v) for v in row]
        lines.append(delimiter.join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_with_header_rate_comment_and_time_column(tmp_path, ecg):
    out = ecgfm.read(_write_csv(tmp_path / "x.csv", ecg))
    assert out.fs == 500 and out.leads == STANDARD_LEADS and out.meta["format"] == "csv"
    np.testing.assert_allclose(out.signal, ecg.signal, atol=1e-6)


@pytest.mark.parametrize("delimiter, name", [(";", "x.csv"), ("\t", "x.tsv"), (" ", "x.csv")])
def test_csv_delimiters(tmp_path, ecg, delimiter, name):
    out = ecgfm.read(_write_csv(tmp_path / name, ecg, delimiter=delimiter, time_column=False))
    np.testing.assert_allclose(out.signal, ecg.signal, atol=1e-6)


def test_csv_without_header_uses_arguments_and_orientation(tmp_path, ecg):
    path = _write_csv(tmp_path / "x.csv", ecg, header=False, comments=())
    out = ecgfm.read(path, fs=500)
    assert out.leads == STANDARD_LEADS
    np.testing.assert_allclose(out.signal, ecg.signal, atol=1e-6)
    transposed = tmp_path / "t.csv"  # leads as rows
    transposed.write_text("\n".join(",".join(f"{v:.6f}" for v in lead) for lead in ecg.signal[:3]) + "\n")
    out = ecgfm.read(transposed, fs=500, leads=["I", "II", "III"])
    np.testing.assert_allclose(out.signal, ecg.signal[:3], atol=1e-6)


def test_csv_declared_unit_and_other_rate_spellings(tmp_path, ecg):
    lines = ["# exported by a cart", "# sampling_rate: 500Hz, unit=uV", ",".join(ecg.leads)]
    lines += [",".join(f"{v * 1000:.3f}" for v in row) for row in ecg.signal.astype(np.float64).T]
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    out = ecgfm.read(tmp_path / "x.csv")
    assert out.fs == 500
    np.testing.assert_allclose(out.signal, ecg.signal, atol=1e-6)


def test_explicit_format_overrides_extension(tmp_path, ecg):
    path = tmp_path / "signal.data"
    np.save(path.with_suffix(".npy"), ecg.signal)
    path.with_suffix(".npy").rename(path)
    out = ecgfm.read(path, format="numpy", fs=500)
    np.testing.assert_array_equal(out.signal, ecg.signal)


def test_csv_rate_spellings_and_heart_rate_is_not_a_sampling_rate(tmp_path, ecg):
    rows = [",".join(ecg.leads)] + [",".join(f"{v:.6f}" for v in row) for row in ecg.signal.T]
    (tmp_path / "a.csv").write_text("\n".join(["# Sampling rate: 500 Hz", *rows]) + "\n")
    assert ecgfm.read(tmp_path / "a.csv").fs == 500
    (tmp_path / "b.csv").write_text("\n".join(["# heart rate: 72 bpm", *rows]) + "\n")
    with pytest.raises(ECGReadError, match="sampling rate unknown"):
        ecgfm.read(tmp_path / "b.csv")


def test_npz_declared_leads_agree_with_a_lead_string(tmp_path, ecg):
    np.savez(tmp_path / "x.npz", signal=ecg.signal[:2], fs=500, leads=np.array(["I", "II"]))
    assert ecgfm.read(tmp_path / "x.npz", leads="i, ii").leads == ("I", "II")
    with pytest.raises(ECGReadError, match="declares leads"):
        ecgfm.read(tmp_path / "x.npz", leads="I, III")


def test_csv_values_parse_exactly_as_float(tmp_path, ecg):
    """The numeric fast path gives the values Python's float() gives, for short and 17-19 digit cells alike."""
    rng = np.random.default_rng(3)
    values = ecg.signal[:, :2000].T.astype(np.float64) + rng.normal(0, 1e-7, (2000, 12))
    cells = [[f"{v:.{digits}f}" for v, digits in zip(row, rng.integers(1, 20, 12))] for row in values]
    (tmp_path / "exact.csv").write_text("# fs=500\n" + ",".join(ecg.leads) + "\n"
                                        + "\n".join(",".join(row) for row in cells) + "\n")
    expected = np.array([[float(cell) for cell in row] for row in cells]).T.astype(np.float32)
    np.testing.assert_array_equal(ecgfm.read(tmp_path / "exact.csv").signal, expected)


def test_csv_with_a_text_column_falls_back_to_naming_the_cell(tmp_path, ecg):
    lines = ["# fs=500", "time," + ",".join(ecg.leads)]
    lines += [f"00:00:{i / 500:06.3f}," + ",".join(f"{v:.4f}" for v in row) for i, row in enumerate(ecg.signal.T)]
    (tmp_path / "clock.csv").write_text("\n".join(lines) + "\n")
    np.testing.assert_allclose(ecgfm.read(tmp_path / "clock.csv").signal, ecg.signal, atol=5e-5)  # time dropped
