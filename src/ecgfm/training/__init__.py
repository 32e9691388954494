"""Training: the loop (:func:`fit`), its configuration, pre-training recipes, and the validation metric."""
from ecgfm.training.config import TrainConfig
from ecgfm.training.data import RandomCropDataset, labels_of
from ecgfm.evaluation.metrics import macro_auc, per_label_auc
from ecgfm.training.trainer import FitResult, fit, masked_bce_with_logits, resolve_device

__all__ = ["TrainConfig", "fit", "FitResult", "RandomCropDataset", "labels_of", "macro_auc", "per_label_auc",
           "masked_bce_with_logits", "resolve_device"]
