"""Runtime configuration: where data and caches live. Everything can be overridden by environment variables."""
from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the PTB-XL folder (the one holding ptbxl_database.csv).
PTBXL_ENV = "ECGFM_PTBXL_DIR"
#: Environment variable naming the cache folder (preprocessed arrays, downloads).
CACHE_ENV = "ECGFM_CACHE_DIR"


def ptbxl_dir(path: str | os.PathLike | None = None) -> Path | None:
    """Return the configured PTB-XL location: the argument, else ``$ECGFM_PTBXL_DIR``, else ``None``."""
    value = path if path is not None else os.environ.get(PTBXL_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Return (and create) the cache folder: ``$ECGFM_CACHE_DIR`` or ``~/.cache/ecgfm``."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ecgfm").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root

#: The model every command uses unless told otherwise: the default shipped weights (``ecgfm.models.list_pretrained``).
DEFAULT_MODEL = "pretrained"
