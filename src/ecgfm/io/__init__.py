"""ECG file readers and writers behind one entry point, :func:`read`."""
from ecgfm.io.registry import (Reader, available_readers, find_reader, read, register_reader,
                               supported_extensions)

#: Modules whose import registers a reader. A new format adds its module here; callers of ``read`` never change.
BUILTIN_READER_MODULES: list[str] = [
    "ecgfm.io.wfdb_reader",
    "ecgfm.io.array_reader",
    "ecgfm.io.muse",
    "ecgfm.io.hl7_aecg",
    "ecgfm.io.philips",
    "ecgfm.io.dicom",
    "ecgfm.io.edf",
    "ecgfm.io.scp",
    "ecgfm.io.ishne",
    "ecgfm.io.contec",
]

__all__ = ["read", "register_reader", "available_readers", "find_reader", "supported_extensions", "Reader",
           "BUILTIN_READER_MODULES"]
