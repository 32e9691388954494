"""ecgfm: ECG foundation models for diagnosis and rare-disease detection by transfer learning.

Implements Hu, Barrios & Tison, "A deep foundation model for electrocardiogram interpretation: enabling rare
disease detection through transfer learning" (Eur Heart J Digital Health, 2025).
"""
from ecgfm.ecg import ECG
from ecgfm.errors import ECGError, ECGReadError, ECGValueError
from ecgfm.io import read
from ecgfm.leads import STANDARD_LEADS
from ecgfm.version import __version__

__all__ = ["ECG", "read", "ECGError", "ECGReadError", "ECGValueError", "STANDARD_LEADS", "Predictor",
           "create_model", "list_models", "list_pretrained", "load_pretrained", "__version__"]

#: Public names imported on first use, so ``import ecgfm`` stays fast (no torch import at package import time).
_LAZY = {"Predictor": ("ecgfm.inference.predictor", "Predictor"),
         "create_model": ("ecgfm.models", "create"),
         "list_models": ("ecgfm.models", "list_models"),
         "list_pretrained": ("ecgfm.models", "list_pretrained"),
         "load_pretrained": ("ecgfm.models", "load")}
#: Subpackages reachable as attributes (``ecgfm.models.load(...)``) without importing them up front.
_SUBPACKAGES = {"datasets", "evaluation", "explain", "inference", "io", "labels", "models", "signal", "training",
                "transfer"}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"ecgfm.{name}")
    else:
        raise AttributeError(f"module 'ecgfm' has no attribute {name!r}")
    globals()[name] = value
    return value
