"""Load and save models: one :func:`load` for named shipped weights, model folders and training checkpoints.

A loaded model carries its :class:`~ecgfm.models.ModelInfo` as ``model.info`` (as timm attaches ``pretrained_cfg``):
labels, preprocessing (``model.info.pipeline()``), windowing, thresholds, provenance. A saved model is a folder with
``model.safetensors`` (weights) and ``config.json`` (the info, with the weights' SHA-256, checked on load).

Shipped weights are named, in the spirit of torchvision's weight enums: :func:`list_pretrained` lists them,
:func:`get_weights` describes one (its info, its ``transforms()``), ``load(name)`` builds it, offline.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ecgfm.config import DEFAULT_MODEL
from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.models.info import ModelInfo
from ecgfm.models.registry import create

#: File names of a saved model folder.
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
#: Sub-folders of a run folder that hold its final model (``ecgfm pretrain``: pretrained/, ``ecgfm finetune``: model/).
RUN_MODEL_FOLDERS = ("pretrained", "model")


@dataclass(frozen=True)
class PretrainedWeights:
    """A named set of shipped weights: where they are and what they are."""

    name: str
    folder: str  # inside the package's ``weights/`` folder
    description: str

    @property
    def path(self) -> Path:
        return Path(str(resources.files("ecgfm") / "weights" / self.folder))

    @cached_property
    def info(self) -> ModelInfo:
        """The weights' model info (labels, thresholds, metrics), read without building the network."""
        return read_info(self.path / CONFIG_NAME)

    def transforms(self):
        """The preprocessing these weights expect (an :class:`ecgfm.signal.Pipeline`)."""
        return self.info.pipeline()


#: The shipped weights by name; the first is the default (``"pretrained"``).
PRETRAINED: dict[str, PretrainedWeights] = {w.name: w for w in [
    PretrainedWeights("anylead", "anylead", "one xresnet1d50 distilled from default8 that reads any of 12 leads, the "
                                            "six limb leads, I+II, V1-V6 or lead I alone, thresholds per lead set "
                                            "from fold 9 (MODEL_CARD.md)"),
    PretrainedWeights("default8", "default8", "eight-network ensemble (6 xresnet1d50 + 2 xresnet1d18) pre-trained on "
                                              "PTB-XL folds 1-8, thresholds from fold 9; 12 leads only, higher 12-lead "
                                              "AUC, about 4x slower (docs/model_card_default8.md)"),
]}


def list_pretrained() -> list[str]:
    """Names of the shipped weights, the default first."""
    return list(PRETRAINED)


def get_weights(name: str = DEFAULT_MODEL) -> PretrainedWeights:
    """The shipped weights called ``name`` (``"pretrained"``: the default)."""
    if name == DEFAULT_MODEL:
        return next(iter(PRETRAINED.values()))
    if name not in PRETRAINED:
        raise ValueError(f"no shipped weights named {name!r}; available: {DEFAULT_MODEL}, {', '.join(PRETRAINED)}")
    return PRETRAINED[name]


def default_weights_dir() -> Path:
    """The folder of the default shipped weights."""
    return get_weights().path


def build_model(info: ModelInfo) -> nn.Module:
    """A freshly initialised model with the architecture, outputs and ``info`` that ``info`` describes."""
    model = create(info.arch, num_labels=info.num_labels, in_leads=info.in_leads, **info.arch_kwargs)
    model.info = info
    return model


def load(name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A model in eval mode with ``model.info``, from shipped weights (a name from :func:`list_pretrained`,
    ``"pretrained"`` or ``None`` for the default), a model folder, a run folder, or a ``.pt`` checkpoint."""
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL or str(name_or_path) in PRETRAINED:
        return _load_folder(get_weights(str(name_or_path or DEFAULT_MODEL)).path, device)
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / WEIGHTS_NAME).exists():  # a run folder (its own config.json describes the run)
            inner = next((path / sub for sub in RUN_MODEL_FOLDERS if (path / sub / WEIGHTS_NAME).exists()), None)
            if inner is None:
                raise FileNotFoundError(f"{path}: no model here (expected {WEIGHTS_NAME} + {CONFIG_NAME}, or a run "
                                        f"folder with {' or '.join(RUN_MODEL_FOLDERS)}/)")
            path = inner
        return _load_folder(path, device)
    if path.is_file():
        return _load_checkpoint(path, device)
    raise FileNotFoundError(f"model not found: {name_or_path} (a shipped name: {', '.join(list_pretrained())}; a "
                            f"folder with {WEIGHTS_NAME} + {CONFIG_NAME}; or a .pt checkpoint)")


def read_info(config: Path) -> ModelInfo:
    """The :class:`ModelInfo` in a ``config.json``; ``ValueError`` naming the file when it is not one."""
    if not config.exists():
        raise FileNotFoundError(f"model file missing: {config}")
    try:
        return ModelInfo.from_dict(json.loads(config.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{config}: not a valid model config ({exc})") from None


def _load_folder(folder: Path, device) -> nn.Module:
    info = read_info(folder / CONFIG_NAME)
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        raise FileNotFoundError(f"model file missing: {weights}")
    expected = info.extra.get("weights_sha256")
    if expected and sha256(weights) != expected:
        raise ValueError(f"{weights}: checksum mismatch (the file is corrupted or was replaced; config.json records "
                         f"sha256 {expected[:12]}...)")
    try:
        state = load_file(weights, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights}: not readable weights ({exc})") from None
    model = _with_state(build_model(info), state, weights).to(device).eval()
    model.folder = folder  # where files stored beside the weights (validation predictions, ONNX) are found
    return model


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """A training checkpoint's contents (``weights_only``: data, never code), checked against its stored checksum."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt or not a torch file: name the file, not a traceback
        raise ValueError(f"{path}: not a readable ecgfm checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "model" not in state or "info" not in state:
        raise ValueError(f"{path}: not an ecgfm checkpoint (needs 'model' weights and 'info')")
    expected = state.get("sha256")
    if expected and _state_digest(state["model"]) != expected:
        raise ValueError(f"{path}: checksum mismatch (the checkpoint is corrupted)")
    return state


def _load_checkpoint(path: Path, device) -> nn.Module:
    state = load_state(path)
    try:
        info = ModelInfo.from_dict(state["info"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model info ({exc})") from None
    return _with_state(build_model(info), state["model"], path).to(device).eval()


def _with_state(model: nn.Module, state: dict, source: Path) -> nn.Module:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{source}: the weights do not fit the architecture in its config ({exc})") from None
    return model


def save(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``model.info`` with the weights' SHA-256) into ``directory``.

    The architecture in the info is checked against the model (``reset_classifier`` may have changed the outputs).
    """
    directory = Path(directory)
    info = model.info
    if getattr(model, "arch_name", "") and (model.arch_name != info.arch or model.arch_kwargs != info.arch_kwargs):
        raise ValueError(f"info describes {info.arch!r} but the model is {model.arch_name!r} {model.arch_kwargs}")
    if info.num_labels != model.num_labels:
        raise ValueError(f"info has {info.num_labels} labels but the model has {model.num_labels} outputs")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights = atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    info = info.replace(extra={**info.extra, "weights_sha256": sha256(weights)})
    atomic_write_text(directory / CONFIG_NAME, json.dumps(info.to_dict(), indent=2) + "\n")
    return directory


def checkpoint_state(model: nn.Module, **extra) -> dict:
    """A training checkpoint's contents: CPU weights, the info, a checksum of the weights, and ``extra`` items."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"model": weights, "info": model.info.to_dict(), "sha256": _state_digest(weights), **extra}


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1-MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_digest(state: dict) -> str:
    """SHA-256 over a state dict's names, shapes, dtypes and bytes (what a flipped byte in a checkpoint changes)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{name}|{value!r}|".encode())
    return digest.hexdigest()
