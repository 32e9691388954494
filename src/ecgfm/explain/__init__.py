"""Explanations: which leads and which moments of an ECG drive a model's prediction (``ecgfm explain``)."""
from ecgfm.explain.attribution import METHODS, Explanation, LabelExplanation, explain

__all__ = ["METHODS", "Explanation", "LabelExplanation", "explain"]
