"""Inference: predict findings for ECG files (:class:`Predictor`), embed them, and export to ONNX.

``ecgfm.inference.onnx`` imports onnxruntime only when used; the HTTP service is ``ecgfm.serve``.
"""
from ecgfm.inference.outputs import PredictionReport, output_format
from ecgfm.inference.predictor import Failure, Finding, Prediction, Predictor, discover_inputs

__all__ = ["Predictor", "Prediction", "Finding", "Failure", "PredictionReport", "discover_inputs", "output_format"]
