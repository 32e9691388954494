"""Inference: predict findings for ECG files (:class:`Predictor`), embed them, and export to ONNX.

``ecgfm.inference.onnx`` imports onnxruntime only when used; the HTTP service is ``ecgfm.serve``.
"""
from ecgfm.inference.outputs import PredictionReport, output_format
from ecgfm.inference.predictor import Predictor
from ecgfm.inference.results import Failure, Finding, Prediction

__all__ = ["Predictor", "Prediction", "Finding", "Failure", "PredictionReport", "output_format"]
