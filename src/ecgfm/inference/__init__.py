"""Inference: predict findings for ECG files (:class:`Predictor`), serve them over HTTP, export to ONNX.

``ecgfm.inference.serve`` (FastAPI) and ``ecgfm.inference.onnx`` (onnxruntime) import their optional dependencies
only when used.
"""
from ecgfm.inference.predictor import (Failure, Finding, Prediction, PredictionReport, Predictor, TorchBackend,
                                       discover_inputs, load_model)

__all__ = ["Predictor", "Prediction", "Finding", "Failure", "PredictionReport", "TorchBackend", "discover_inputs",
           "load_model"]
