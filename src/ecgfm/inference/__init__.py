"""Inference: predict findings for ECG files (:class:`Predictor`) and export to ONNX.

``ecgfm.inference.onnx`` imports onnxruntime only when used; the HTTP service is ``ecgfm.serve``.
"""
from ecgfm.inference.predictor import (Failure, Finding, Prediction, PredictionReport, Predictor, TorchBackend,
                                       discover_inputs, load_model)

__all__ = ["Predictor", "Prediction", "Finding", "Failure", "PredictionReport", "TorchBackend", "discover_inputs",
           "load_model"]
