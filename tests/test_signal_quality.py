"""Signal-quality checks: each one fails on the defect it is for and passes a clean ECG (synthetic heart-vector ECGs
from conftest; genuine PTB-XL records when present)."""
import json

import numpy as np
import pytest

from ecgfm import ECG, STANDARD_LEADS
from ecgfm.signal import quality
from ecgfm.signal.quality import QualitySignals, assess_quality, heart_rate

from conftest import make_synthetic_ecg

LIMB = ["I", "II", "III", "aVR", "aVL", "aVF"]


def _with(ecg: ECG, signal: np.ndarray, fs: float | None = None) -> ECG:
    return ecg.replace(signal=np.asarray(signal, dtype=np.float32), fs=fs)


def _add_to_recorded(ecg: ECG, noise: np.ndarray) -> ECG:
    """Add noise to I, II, V1-V6 and recompute the derived limb leads, as a device records them."""
    x = ecg.signal.astype(np.float64).copy()
    recorded = [0, 1, 6, 7, 8, 9, 10, 11]
    x[recorded] += noise
    x[2], x[3], x[4], x[5] = x[1] - x[0], -(x[0] + x[1]) / 2, x[0] - x[1] / 2, x[1] - x[0] / 2
    return _with(ecg, x)


def _sine(ecg: ECG, hz: float, amplitude: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(ecg.n_samples) / ecg.fs
    return amplitude * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi, (8, 1)))


@pytest.fixture
def clean():
    return make_synthetic_ecg(seed=3)


def test_clean_ecg_passes_every_check(clean):
    report = assess_quality(clean)
    assert report.ok and report.problems == []
    assert {c.status for c in report.checks} == {"pass"}
    assert report.heart_rate == pytest.approx(72, abs=2)
    assert set(report.lead_metrics) == set(STANDARD_LEADS)


@pytest.mark.parametrize("rate", [40, 72, 150])
def test_heart_rate_matches_the_generated_rhythm(rate):
    assert heart_rate(make_synthetic_ecg(heart_rate=rate, seed=1)) == pytest.approx(rate, rel=0.03)


def test_implausibly_slow_rhythm_fails(clean):
    report = assess_quality(make_synthetic_ecg(heart_rate=18, seconds=20, seed=2))
    assert report["heart_rate"].failed and "implausible heart rate" in report["heart_rate"].message


def test_zeroed_lead_is_flat_and_named(clean):
    x = clean.signal.copy()
    x[STANDARD_LEADS.index("V3")] = 0
    report = assess_quality(_with(clean, x))
    assert report.failed == ["flat_leads"]
    assert report["flat_leads"].leads == ("V3",) and "V3" in report.problems[0]
    assert report.lead_problems == {"V3": ["flat_leads"]}


def test_lead_flat_for_a_fifth_of_the_record_counts_but_a_shorter_dropout_does_not(clean):
    for seconds, fails in ((2, True), (1, False)):
        x = clean.signal.copy()
        x[0, : int(seconds * clean.fs)] = 0.3
        assert assess_quality(_with(clean, x))["flat_leads"].failed is fails


def test_missing_and_zero_filled_leads(clean):
    keep = [lead for lead in STANDARD_LEADS if lead not in ("V3", "aVF")]
    partial = ECG(clean.signal[[STANDARD_LEADS.index(lead) for lead in keep]], clean.fs, keep)
    check = quality.check_missing_leads(partial)
    assert check.failed and check.leads == ("V3",)  # aVF is derivable from I and II
    eight = ECG(clean.signal[[0, 1, 6, 7, 8, 9, 10, 11]], clean.fs, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"])
    assert assess_quality(eight).ok
    filled = clean.replace(zero_filled_leads=["V6"])
    assert quality.check_missing_leads(filled).leads == ("V6",)


def test_clipping_is_found_and_coarse_gain_does_not_look_clipped(clean):
    clipped = assess_quality(_with(clean, np.clip(clean.signal, -0.6, 0.6)))
    assert "clipping" in clipped.failed and "clipped or saturated" in clipped["clipping"].message
    assert not assess_quality(_with(clean, np.round(clean.signal * 200) / 200))["clipping"].failed  # 5 uV steps


def test_baseline_wander(clean):
    report = assess_quality(_add_to_recorded(clean, _sine(clean, 0.3, 1.0)))
    assert report.failed == ["baseline_wander"]
    assert not assess_quality(_add_to_recorded(clean, _sine(clean, 0.3, 0.2)))["baseline_wander"].failed


@pytest.mark.parametrize("hz", [50, 60])
def test_powerline_interference_names_its_frequency(clean, hz):
    report = assess_quality(_add_to_recorded(clean, _sine(clean, hz, 0.2)))
    assert report.failed == ["powerline"] and f"{hz} Hz mains" in report.problems[0]


def test_powerline_is_not_assessed_where_the_rate_cannot_show_it():
    ecg = make_synthetic_ecg(fs=100, seed=4)
    report = assess_quality(ecg)
    assert report["powerline"].status == "not_assessed" and "100 Hz" in report["powerline"].message
    assert report.ok


def test_spectral_measures_ignore_an_electrode_offset(clean):
    """The Welch segments are not detrended (a cost saving): a segment's mean leaks only into the 0 and 1 Hz bins of
    the Hann window, so an offset leaves the spectrum the mains and noise checks read (40 Hz and above) unchanged."""
    hummed = _add_to_recorded(clean, _sine(clean, 50, 0.1))
    a, b = QualitySignals(hummed), QualitySignals(_with(hummed, hummed.signal + 3.0))
    freqs, psd = a.spectrum
    np.testing.assert_allclose(b.spectrum[1][:, freqs >= 2], psd[:, freqs >= 2], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(b.mains(50.0)[0], a.mains(50.0)[0], rtol=1e-3)
    np.testing.assert_allclose(b.hf_noise, a.hf_noise, rtol=1e-3)
    assert a.mains(50.0)[0].max() > 0.05  # the line is there to be measured


def test_white_noise_at_0_db_is_high_frequency_noise(clean):
    rng = np.random.default_rng(0)
    sd = clean.signal[[0, 1, 6, 7, 8, 9, 10, 11]].std(axis=1, keepdims=True)
    report = assess_quality(_add_to_recorded(clean, rng.standard_normal((8, clean.n_samples)) * sd))
    assert "high_frequency_noise" in report.failed
    assert "powerline" not in report.failed  # broadband noise is not called mains hum


@pytest.mark.parametrize("gain, word", [(10.0, "large"), (0.1, "small")])
def test_wrong_gain_is_implausible_amplitude(clean, gain, word):
    check = assess_quality(_with(clean, clean.signal * gain))["amplitude"]
    assert check.failed and word in check.message


def _permute(x: np.ndarray, swap: str) -> np.ndarray:
    y = x.copy()
    i, ii, iii, avr, avl, avf = x[:6]
    y[:6] = {"la_ra": (-i, iii, ii, avl, avr, avf), "ra_ll": (-iii, -ii, -i, avf, avl, avr)}[swap]
    return y


@pytest.mark.parametrize("swap, text", [("la_ra", "LA/RA"), ("ra_ll", "RA/LL")])
def test_limb_electrode_reversal(clean, swap, text):
    report = assess_quality(_with(clean, _permute(clean.signal, swap)))
    assert report.failed == ["limb_reversal"] and text in report.problems[0]
    # a reversed recording still obeys Einthoven's law: that check cannot and does not see it
    assert report["limb_consistency"].status == "pass"


def test_mislabelled_limb_lead_breaks_einthoven(clean):
    x = clean.signal.copy()
    x[[1, 2]] = x[[2, 1]]  # II and III swapped in the file
    check = assess_quality(_with(clean, x))["limb_consistency"]
    assert check.failed and "Einthoven" in check.message


def test_device_derived_limb_leads_are_reported_as_derived(clean):
    derived = _add_to_recorded(clean, np.zeros((8, clean.n_samples)))
    assert quality.check_limb_consistency(derived).details["derived"] is True
    assert quality.check_limb_consistency(clean).details["derived"] is False  # independent noise per lead


def test_swapped_chest_cables_are_found_and_limb_check_stands_aside(clean):
    x = clean.signal.copy()
    a, b = STANDARD_LEADS.index("V2"), STANDARD_LEADS.index("V5")
    x[[a, b]] = x[[b, a]]
    report = assess_quality(_with(clean, x))
    assert report.failed == ["precordial_order"] and set(report["precordial_order"].leads) == {"V2", "V5"}
    assert report["limb_reversal"].status == "not_assessed"


def test_short_records_are_judged_without_crashing(clean):
    for seconds in (3.0, 0.5, 0.01):
        short = _with(clean, clean.signal[:, : max(1, int(seconds * clean.fs))])
        report = assess_quality(short)
        assert "duration" in report.failed
        json.dumps(report.to_dict(), allow_nan=False)


def test_report_is_strict_json_and_lists_every_check(clean):
    x = clean.signal.copy()
    x[5] = 0
    document = json.loads(json.dumps(assess_quality(_with(clean, x)).to_dict(), allow_nan=False))
    assert document["ok"] is False and document["lead_problems"] == {"aVF": ["flat_leads"]}
    assert [c["name"] for c in document["checks"]] == [check(QualitySignals(clean)).name for check in quality.CHECKS]
    assert document["checks"][0]["status"] == "pass"


def test_genuine_ptbxl_records(ptbxl_dir):
    from ecgfm.datasets.ptbxl import PTBXL

    root = PTBXL(ptbxl_dir)
    meta = root.metadata[root.metadata["has_500"] & (root.metadata["strat_fold"] == 10)]
    reports = [assess_quality(root.read_record(ecg_id)) for ecg_id in meta.index[:8]]
    assert sum(r.ok for r in reports) >= 7
    swapped = root.read_record(meta.index[0])
    reversed_report = assess_quality(swapped.replace(signal=_permute(swapped.signal, "la_ra")))
    assert "limb_reversal" in reversed_report.failed
