"""Runtime configuration: where data and caches live. Everything can be overridden by environment variables."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache
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


# --- limits on the work one input file may cause (see docs/security.md, "Reading untrusted files") ----------------
#: Environment variable overriding :class:`ReadLimits` fields, e.g. ``"max_fs_hz=40000, max_values=5e7"``.
LIMITS_ENV = "ECGFM_READ_LIMITS"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one input may make ecgfm decode or allocate, checked from its declarations *before* the work.

    The defaults admit every genuine file we know (a 24-h Holter is read by windows) and refuse tiny hostile files
    that declare gigabytes: a 0.001 Hz rate, a (12, 10^8) array, a 150 MB CSV in a 380 KB zip.
    """

    #: Plausible ECG sampling rates (Hz). Diagnostic ECGs use 100-1000 Hz, pacemaker-spike capture up to ~16 kHz.
    min_fs_hz: float = 50.0
    max_fs_hz: float = 20_000.0
    #: Longest recording (s) one read may return: 24 h; longer Holter files are read by ``start=``/``duration=``.
    max_duration_s: float = 86_400.0
    #: Most samples (leads x samples) one read may decode: 12 leads x 500 Hz x ~55 min; 80 MB as float32.
    max_values: int = 20_000_000
    #: Largest text file (CSV/TSV, XML) parsed in memory: a 10-s 12-lead export is < 1 MB, 32 MiB holds ~13 min of
    #: 12-lead CSV at 500 Hz. Parsing costs up to ~10x the file size (a 32 MiB CSV peaks at ~0.3 GB).
    max_text_bytes: int = 32 * 1024 * 1024
    #: Largest binary file read whole into memory (SCP-ECG, Contec, DICOM); WFDB/EDF/ISHNE/NumPy read what they declare.
    max_file_bytes: int = 256 * 1024 * 1024
    #: Most bytes an archive (``.zip`` upload, ``.npz``) may inflate to, measured while it streams.
    max_unzipped_bytes: int = 256 * 1024 * 1024
    #: Most members a ``.zip`` upload may hold.
    max_zip_members: int = 10_000

    @classmethod
    def from_text(cls, text: str, base: "ReadLimits | None" = None) -> "ReadLimits":
        """Limits from ``"name=value, name=value"`` (the ``$ECGFM_READ_LIMITS`` syntax) over ``base`` (the defaults)."""
        base = base or cls()
        names = {f.name: f.type for f in fields(cls)}
        changes: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in text.replace(";", ",").split(","))):
            name, sep, value = (piece.strip() for piece in item.partition("="))
            if not sep or name not in names:
                raise ValueError(f"{LIMITS_ENV}: cannot use {item!r}; expected name=value with name one of "
                                 f"{', '.join(names)}")
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not 0 < number < float("inf"):
                raise ValueError(f"{LIMITS_ENV}: {name} must be a positive number, got {value!r}")
            changes[name] = int(number) if names[name] in (int, "int") else number
        return replace(base, **changes)


_LIMITS_OVERRIDE: ReadLimits | None = None


def read_limits() -> ReadLimits:
    """The limits in force: those set by :func:`set_read_limits`, else ``$ECGFM_READ_LIMITS`` over the defaults."""
    if _LIMITS_OVERRIDE is not None:
        return _LIMITS_OVERRIDE
    return _limits_from_env(os.environ.get(LIMITS_ENV, ""))


def set_read_limits(limits: ReadLimits | None) -> None:
    """Set the limits for this process (e.g. stricter ones in a service); ``None`` goes back to the environment."""
    global _LIMITS_OVERRIDE
    _LIMITS_OVERRIDE = limits


@lru_cache(maxsize=8)
def _limits_from_env(text: str) -> ReadLimits:
    return ReadLimits.from_text(text)
