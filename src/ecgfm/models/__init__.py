"""ECG models: a timm-style registry of 1D CNNs with a common interface, and one way to load them.

``create(name, num_labels, in_leads=12, **kw)`` builds a registered architecture; every model has
``forward_features(x) -> (B, num_features)``, ``forward_head(features) -> logits``, ``reset_classifier(n)`` and
``num_features``. ``load(name_or_path)`` returns a trained model carrying its :class:`ModelInfo` as ``model.info``
(labels, preprocessing via ``model.info.pipeline()``, windowing, thresholds); ``save(model, folder)`` writes one.
``list_pretrained()`` names the shipped weights.
"""
from ecgfm.models import ensemble as _ensemble  # noqa: F401  (registers models)
from ecgfm.models import inception1d as _inception1d  # noqa: F401
from ecgfm.models import resnet1d as _resnet1d  # noqa: F401
from ecgfm.models import xresnet1d as _xresnet1d  # noqa: F401
from ecgfm.models.base import ECGClassifier
from ecgfm.models.flops import count_flops, count_params
from ecgfm.models.hub import (DEFAULT_MODEL, PretrainedWeights, build_model, default_weights_dir, get_weights,
                              list_pretrained, load, save)
from ecgfm.models.info import ModelInfo
from ecgfm.models.registry import create, is_model, list_models, register_model

__all__ = [
    "create", "list_models", "is_model", "register_model", "ECGClassifier", "ModelInfo", "build_model", "load", "save",
    "list_pretrained", "get_weights", "PretrainedWeights", "DEFAULT_MODEL", "default_weights_dir", "count_flops",
    "count_params",
]
