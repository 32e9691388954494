"""ecgfm: ECG foundation models for diagnosis and rare-disease detection by transfer learning.

Implements Hu, Barrios & Tison, "A deep foundation model for electrocardiogram interpretation: enabling rare
disease detection through transfer learning" (Eur Heart J Digital Health, 2025).
"""
from ecgfm.ecg import ECG
from ecgfm.errors import ECGError, ECGReadError, ECGValueError
from ecgfm.io import read
from ecgfm.leads import STANDARD_LEADS

__version__ = "0.1.0"

__all__ = ["ECG", "read", "ECGError", "ECGReadError", "ECGValueError", "STANDARD_LEADS", "Predictor", "load_pretrained",
           "create_model", "list_models", "__version__"]

#: Public names imported on first use, so ``import ecgfm`` stays fast (no torch import at package import time).
_LAZY = {"Predictor": ("ecgfm.inference.predictor", "Predictor"),
         "load_pretrained": ("ecgfm.models", "load_pretrained"),
         "create_model": ("ecgfm.models", "create"),
         "list_models": ("ecgfm.models", "list_models")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ecgfm' has no attribute {name!r}")
