"""ecgfm: ECG foundation models for diagnosis and rare-disease detection by transfer learning.

Implements Hu, Barrios & Tison, "A deep foundation model for electrocardiogram interpretation: enabling rare
disease detection through transfer learning" (Eur Heart J Digital Health, 2025).
"""
from ecgfm.ecg import ECG
from ecgfm.errors import ECGError, ECGReadError, ECGValueError
from ecgfm.io import read
from ecgfm.leads import STANDARD_LEADS

__version__ = "0.1.0"

__all__ = ["ECG", "read", "ECGError", "ECGReadError", "ECGValueError", "STANDARD_LEADS", "__version__"]
