"""ECG models: a timm-style registry of 1D CNNs with a common interface.

``create(name, num_labels, in_leads=12, **kw)`` builds a registered architecture; every model has
``forward_features(x) -> (B, num_features)``, ``forward_head(features) -> logits``, ``reset_classifier(n)`` and
``num_features``. ``load_checkpoint`` / ``save_pretrained`` / ``load_pretrained`` rebuild models from disk with the
:class:`ModelInfo` that describes them (labels, preprocessing, thresholds, training data, metrics).
"""
from ecgfm.models import ensemble as _ensemble  # noqa: F401  (registers models)
from ecgfm.models import inception1d as _inception1d  # noqa: F401
from ecgfm.models import resnet1d as _resnet1d  # noqa: F401
from ecgfm.models import xresnet1d as _xresnet1d  # noqa: F401
from ecgfm.models.base import ECGClassifier
from ecgfm.models.checkpoint import build_model, default_weights_dir, load_checkpoint, load_pretrained, save_pretrained
from ecgfm.models.flops import count_flops, count_params
from ecgfm.models.info import ModelInfo
from ecgfm.models.registry import create, is_model, list_models, register_model

__all__ = [
    "create", "list_models", "is_model", "register_model", "ECGClassifier", "ModelInfo", "build_model",
    "load_checkpoint", "save_pretrained", "load_pretrained", "default_weights_dir", "count_flops", "count_params",
]
