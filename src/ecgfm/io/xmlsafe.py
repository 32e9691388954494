"""Safe XML parsing for ECG exports: defusedxml, a size limit, namespace stripping and root-element sniffing.

Entity declarations (billion laughs, quadratic blow-up) and external entities are refused by defusedxml before any
expansion. A plain DOCTYPE is allowed because every real GE MUSE export declares ``<!DOCTYPE RestingECG SYSTEM
"restecg.dtd">``; the DTD itself is never fetched.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from ecgfm.config import ReadLimits, read_limits
from ecgfm.errors import ECGReadError

#: The default size limit of XML files (``ReadLimits.max_text_bytes``; a 10 s 12-lead export is well under 1 MB).
MAX_XML_BYTES = ReadLimits().max_text_bytes


def read_xml(path: Path, max_bytes: int | None = None) -> tuple[ET.Element, str]:
    """Parse ``path`` safely; returns the root (namespaces stripped from tags) and the root's original namespace.

    Files over ``max_bytes`` (default: ``ReadLimits.max_text_bytes``, 32 MiB) are refused before reading."""
    limit = read_limits().max_text_bytes if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ECGReadError(path, f"cannot open file: {exc.strerror or exc}") from None
    if size > limit:
        raise ECGReadError(path, f"XML file is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB limit; "
                                 "refusing to parse it (no ECG export is that large)")
    return parse_xml_bytes(path.read_bytes(), path)


def parse_xml_bytes(data: bytes, path: Path) -> tuple[ET.Element, str]:
    """Parse XML bytes with entity expansion and external references forbidden."""
    try:
        root = DET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ECGReadError(path, f"refused unsafe XML: {type(exc).__name__} ({exc}); entity declarations and "
                                 "external references are not allowed in ECG files") from None
    except ET.ParseError as exc:
        raise ECGReadError(path, f"malformed XML: {exc}") from None
    except LookupError as exc:  # an encoding Python does not know, e.g. a corrupted declaration
        raise ECGReadError(path, f"malformed XML declaration: {exc}") from None
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    strip_namespaces(root)
    return root, namespace


def strip_namespaces(root: ET.Element) -> None:
    """Drop ``{namespace}`` prefixes from element tags in place, so readers can use plain paths."""
    for elem in root.iter():
        if isinstance(elem.tag, str) and elem.tag.startswith("{"):
            elem.tag = elem.tag.split("}", 1)[1]


def attr(elem: ET.Element | None, name: str) -> str | None:
    """Attribute value by local name (ignoring any namespace prefix, e.g. ``xsi:type``)."""
    if elem is None:
        return None
    for key, value in elem.attrib.items():
        if key == name or key.endswith("}" + name):
            return value
    return None


def text(elem: ET.Element | None, path: str | None = None) -> str | None:
    """Stripped text of ``elem`` (or of its descendant at ``path``); ``None`` when absent or empty."""
    if elem is not None and path is not None:
        elem = elem.find(path)
    if elem is None or elem.text is None:
        return None
    value = elem.text.strip()
    return value or None


def _decode_head(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16-le" if head.startswith(b"\xff\xfe") else "utf-16-be"
        return head[2:len(head) - (len(head) % 2)].decode(codec, errors="ignore")
    if len(head) > 1 and head[1:2] == b"\x00":  # UTF-16LE without a byte-order mark
        return head[:len(head) - (len(head) % 2)].decode("utf-16-le", errors="ignore")
    return head.decode("latin-1")


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_FIRST_ELEMENT = re.compile(r"<(?![?!])(?:[\w.-]+:)?([\w.-]+)([^>]*)")


def sniff_root(head: bytes) -> tuple[str, str] | None:
    """``(local root name, rest of the start tag)`` from the first bytes of an XML file, for format sniffing."""
    match = _FIRST_ELEMENT.search(_COMMENT.sub("", _decode_head(head)))
    return (match.group(1), match.group(2)) if match else None


_DOCTYPE = re.compile(r"<!DOCTYPE\s+(?:[\w.-]+:)?([\w.-]+)")


def root_is(head: bytes, name: str, namespace: str | None = None) -> bool:
    """Whether the XML root element is ``name`` (and declares ``namespace``, when given).

    A ``<!DOCTYPE name ...>`` also counts: a file whose internal DTD pushes the root element past the sniffed bytes
    (an entity bomb) must still reach the reader, whose parser refuses it with a specific message.
    """
    text = _COMMENT.sub("", _decode_head(head))
    doctype = _DOCTYPE.search(text)
    if doctype and doctype.group(1) == name:
        return True
    found = sniff_root(head)
    if found is None or found[0] != name:
        return False
    return namespace is None or namespace in found[1]
