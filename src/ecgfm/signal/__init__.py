"""Signal preprocessing: small tested functions and a serialisable :class:`Pipeline` composing them."""
from ecgfm.signal.filters import bandpass, crop_or_pad, normalize, notch, remove_baseline, resample
from ecgfm.signal.leads import derive_limb_leads, limb_leads_from_i_ii, reorder_leads
from ecgfm.signal.pipeline import (Bandpass, CheckUnits, CropOrPad, LeadSetMask, Normalize, Notch, Pipeline,
                                   ReorderLeads, Resample, Step, step_from_dict)

__all__ = ["resample", "crop_or_pad", "bandpass", "remove_baseline", "notch", "normalize", "derive_limb_leads",
           "limb_leads_from_i_ii", "reorder_leads", "Pipeline", "Step", "CheckUnits", "ReorderLeads", "LeadSetMask", "Resample",
           "Bandpass", "Notch", "CropOrPad", "Normalize", "step_from_dict"]
