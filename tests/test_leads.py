"""Lead names and lead-set operations: vendor spellings, Einthoven/Goldberger derivation, reordering."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ecgfm import ECG, ECGValueError, STANDARD_LEADS
from ecgfm.leads import INDEPENDENT_LEADS, canonical_lead_name, canonical_lead_names
from ecgfm.signal.leads import derive_limb_leads, limb_leads_from_i_ii, reorder_leads


@pytest.mark.parametrize("vendor, canonical", [
    ("I", "I"), ("lead II", "II"), ("Lead_III", "III"), ("AVR", "aVR"), ("avl", "aVL"), ("aVF", "aVF"),
    ("MDC_ECG_LEAD_AVR", "aVR"), ("MDC_ECG_LEAD_V1", "V1"), (" v6 ", "V6"), ("D2", "II"),
    ("V4R", "V4R"), ("2", "II"),
])
def test_vendor_spellings_map_to_canonical_names(vendor, canonical):
    assert canonical_lead_name(vendor) == canonical


@pytest.mark.parametrize("bad", ["V7R", "foo", "", "aVX", "MDC_ECG_LEAD_W", "-aVR"])  # -aVR is the inverted lead
def test_unknown_lead_names_raise(bad):
    with pytest.raises(ValueError, match="unknown ECG lead name"):
        canonical_lead_name(bad)


def test_standard_leads_are_their_own_canonical_names():
    assert canonical_lead_names(STANDARD_LEADS) == STANDARD_LEADS
    assert set(INDEPENDENT_LEADS) <= set(STANDARD_LEADS)


finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=50, deadline=None)
@given(lead_i=arrays(np.float64, 64, elements=finite), lead_ii=arrays(np.float64, 64, elements=finite))
def test_derived_limb_leads_obey_einthoven_and_goldberger(lead_i, lead_ii):
    d = limb_leads_from_i_ii(lead_i, lead_ii)
    np.testing.assert_allclose(lead_i + d["III"], lead_ii, atol=1e-9)  # Einthoven: I + III = II
    np.testing.assert_allclose(d["aVR"] + d["aVL"] + d["aVF"], 0, atol=1e-9)  # Goldberger: augmented leads sum to 0


def test_derive_limb_leads_matches_recorded_leads(synthetic_ecg):
    full = synthetic_ecg(noise_mv=0)
    eight = reorder_leads(full, INDEPENDENT_LEADS, derive=False)
    rebuilt = reorder_leads(eight, STANDARD_LEADS)
    assert rebuilt.leads == STANDARD_LEADS
    np.testing.assert_allclose(rebuilt.signal, full.signal, atol=1e-5)


def test_derive_needs_leads_i_and_ii(synthetic_ecg):
    ecg = reorder_leads(synthetic_ecg(), ("I", "V1"), derive=False)
    with pytest.raises(ECGValueError, match="leads I and II are needed"):
        derive_limb_leads(ecg)


def test_reorder_missing_leads_error_or_zero_fill(synthetic_ecg):
    ecg = reorder_leads(synthetic_ecg(), ("I", "II", "V1"), derive=False)
    with pytest.raises(ECGValueError, match=r"lacks leads \['V2'"):
        reorder_leads(ecg, STANDARD_LEADS)
    filled = reorder_leads(ecg, STANDARD_LEADS, missing="zero")
    assert filled.meta["zero_filled_leads"] == ["V2", "V3", "V4", "V5", "V6"]
    assert not filled.lead("V2").any() and filled.lead("III").any()


def test_reorder_changes_order_and_keeps_values(synthetic_ecg):
    ecg = synthetic_ecg()
    reversed_leads = STANDARD_LEADS[::-1]
    out = reorder_leads(ecg, reversed_leads)
    assert out.leads == reversed_leads
    np.testing.assert_array_equal(out.signal, ecg.signal[::-1])


def test_ecg_from_einthoven_consistent_leads_passes_validation():
    x = np.random.default_rng(1).normal(0, 0.3, (2, 500))
    ecg = derive_limb_leads(ECG(x, fs=250, leads=("I", "II")))
    assert ecg.leads == ("I", "II", "III", "aVR", "aVL", "aVF")
