"""Training: the loop (:func:`fit`), its configuration, crops / sliding windows, and the validation metric."""
from ecgfm.training.config import TrainConfig
from ecgfm.training.data import ArrayDataset, RandomCropDataset, sliding_windows, window_starts
from ecgfm.training.metrics import macro_auc, per_label_auc
from ecgfm.training.predict import extract_features, predict_logits
from ecgfm.training.trainer import FitResult, fit, masked_bce_with_logits, resolve_device

__all__ = [
    "TrainConfig", "fit", "FitResult", "ArrayDataset", "RandomCropDataset", "sliding_windows", "window_starts",
    "predict_logits", "extract_features", "macro_auc", "per_label_auc", "masked_bce_with_logits", "resolve_device",
]
