"""Load models from training checkpoints and save/load them as ``model.safetensors`` + ``config.json``."""
from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ecgfm.models.info import ModelInfo
from ecgfm.models.registry import create

#: File names of a saved pretrained model folder.
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def build_model(info: ModelInfo) -> nn.Module:
    """A freshly initialised model with the architecture and outputs ``info`` describes."""
    return create(info.arch, num_labels=info.num_labels, in_leads=info.in_leads, **info.arch_kwargs)


def atomic_write_bytes(path: str | os.PathLike, write) -> None:
    """Write a file atomically: ``write(tmp_path)`` into the same folder, fsync, then ``os.replace``.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Rebuild the model stored in a training checkpoint (``best.pt`` / ``last.pt``) or a pretrained folder.

    Returns ``(model, info)`` with the model in eval mode. ``path`` may also be a folder holding
    ``model.safetensors`` + ``config.json`` (see :func:`save_pretrained`).
    """
    path = Path(path)
    if path.is_dir():
        return load_pretrained(path, map_location=map_location)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:  # weights_only: a checkpoint is data, never code (checkpoints hold only tensors and plain values)
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt / not a torch file
        raise ValueError(f"{path}: not a readable ecgfm checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "info" not in ckpt:
        raise ValueError(f"{path}: not an ecgfm checkpoint (needs 'model' weights and 'info')")
    info = ModelInfo.from_dict(ckpt["info"])
    model = build_model(info)
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval(), info


def save_pretrained(model: nn.Module, info: ModelInfo, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` (weights) and ``config.json`` (``info``) into ``directory``; returns it.

    The architecture in ``info`` is refreshed from the model (``reset_classifier`` may have changed the outputs).
    """
    directory = Path(directory)
    if getattr(model, "arch_name", "") and (model.arch_name != info.arch or model.arch_kwargs != info.arch_kwargs):
        raise ValueError(f"info describes {info.arch!r} but the model is {model.arch_name!r} {model.arch_kwargs}")
    if info.num_labels != model.num_labels:
        raise ValueError(f"info has {info.num_labels} labels but the model has {model.num_labels} outputs")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    text = json.dumps(info.to_dict(), indent=2, sort_keys=False)
    atomic_write_bytes(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text + "\n"))
    return directory


def default_weights_dir() -> Path:
    """The folder of the weights shipped inside the package (``ecgfm/weights``)."""
    return Path(str(resources.files("ecgfm") / "weights"))


def load_pretrained(directory: str | os.PathLike | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model saved by :func:`save_pretrained`; by default the shipped weights (no network access).

    Returns ``(model, info)`` with the model in eval mode.
    """
    directory = Path(directory) if directory is not None else default_weights_dir()
    weights, config = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    for needed in (weights, config):
        if not needed.exists():
            raise FileNotFoundError(f"pretrained model file missing: {needed}")
    try:
        info = ModelInfo.from_dict(json.loads(config.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{config}: invalid model config ({exc})") from None
    model = build_model(info)
    model.load_state_dict(load_file(weights, device="cpu"))
    return model.to(map_location).eval(), info
