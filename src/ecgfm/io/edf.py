"""EDF / EDF+ / BDF recordings via pyedflib: the ECG channels, optionally a window (``start=``, ``duration=`` s).

ECG channels are those with a voltage unit whose label names a lead (``"ECG II"``, ``"V1"``) or is mapped by the
caller (``lead_map={"ECG1": "II"}``); other channels (accelerometers, events) are skipped and listed in
``meta["skipped_channels"]``. Digital samples outside the header's digital range (saturation / lead-off codes,
e.g. Cortrium patches writing +-32767 with a declared +-2400 range) are clipped to the range and counted in
``meta["out_of_range_samples"]`` rather than converted into impossible voltages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pyedflib

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import is_lead_name, iso_datetime, make_ecg, stack_leads, window
from ecgfm.io.limits import check_extent, check_rate
from ecgfm.io.registry import register_reader
from ecgfm.signal.units import unit_factor

#: contec-ecg2edf (RigacciOrg/ecg-contec) writes ECG90A raw counts with a +-1000 mV / +-32768 header, i.e.
#: 30.5 uV per count, while the device resolution is 5 uV per count: amplitudes come out 6.1x too large.
_CONTEC_LABELS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_CONTEC_RATE = 800.0


@register_reader("edf", (".edf", ".bdf"), description="EDF/EDF+/BDF ECG channels (pyedflib)")
def read_edf(path: Path, *, start: float = 0.0, duration: float | None = None, lead_map: Mapping | None = None,
             check_units: bool = True) -> ECG:
    """Read the ECG channels of an EDF file; ``start``/``duration`` (seconds) select a window."""
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise ECGReadError(path, f"not a readable EDF/BDF file: {exc}") from None
    try:
        channels, names, skipped = _ecg_channels(reader, lead_map or {}, path)
        _refuse_contec_conversion(reader, channels, path)
        fs = check_rate(path, _common_rate(reader, channels, path))
        first, last = window(fs, int(reader.getNSamples()[channels[0]]), start, duration, path)
        check_extent(path, fs, last - first, len(channels), "start=/duration= in seconds")
        rows, clipped = zip(*(_physical(reader, ch, first, last - first) for ch in channels))
        meta = {**_metadata(reader, path), "skipped_channels": skipped, "window_start_s": first / fs}
        if sum(clipped):
            meta["out_of_range_samples"] = {name: n for name, n in zip(names, clipped) if n}
    finally:
        reader.close()
    return make_ecg(path, stack_leads(path, names, list(rows)), fs, names, meta, check_units)


def _is_voltage(unit: str) -> bool:
    try:
        unit_factor(unit)
        return True
    except ValueError:
        return False


def _ecg_channels(reader: pyedflib.EdfReader, lead_map: Mapping, path: Path
                  ) -> tuple[list[int], list[str], list[str]]:
    """Indices and lead names of the ECG channels; unmapped voltage channels make a helpful error."""
    from ecgfm.leads import canonical_lead_name

    channels, names, skipped, unnamed = [], [], [], []
    for index in range(reader.signals_in_file):
        label = reader.getLabel(index).strip()
        target = lead_map.get(label, label)
        if _is_voltage(reader.getPhysicalDimension(index)) and is_lead_name(target):
            channels.append(index)
            names.append(canonical_lead_name(target))
        else:
            skipped.append(label)
            if _is_voltage(reader.getPhysicalDimension(index)):
                unnamed.append(label)
    if not channels:
        hint = (f"; channels {', '.join(unnamed)} carry voltages but their labels name no lead: pass e.g. "
                f"lead_map={{{unnamed[0]!r}: 'II'}}") if unnamed else ""
        raise ECGReadError(path, f"no ECG lead channels among {', '.join(skipped) or 'none'}{hint}")
    return channels, names, skipped


def _refuse_contec_conversion(reader: pyedflib.EdfReader, channels: list[int], path: Path) -> None:
    labels = tuple(reader.getLabel(ch).strip() for ch in channels)
    signature = (labels == _CONTEC_LABELS and reader.datarecord_duration * _CONTEC_RATE == 1.0
                 and all(reader.getPhysicalMinimum(ch) == -1000 and reader.getPhysicalMaximum(ch) == 1000
                         and reader.getDigitalMinimum(ch) == -32768 and reader.getDigitalMaximum(ch) == 32767
                         and reader.getPhysicalDimension(ch).strip() == "mV" for ch in channels))
    if signature:
        raise ECGReadError(path, "EDF written by contec-ecg2edf (Contec ECG90A converter): its header scaling is "
                                 "wrong (+-1000 mV for +-32768 counts = 30.5 uV/count, but the device records "
                                 "5 uV/count), so amplitudes would be 6.1x too large; refusing to read it")


def _common_rate(reader: pyedflib.EdfReader, channels: list[int], path: Path) -> float:
    rates = {round(reader.getSampleFrequency(ch), 6) for ch in channels}
    if len(rates) > 1:
        raise ECGReadError(path, f"ECG channels have different sampling rates {sorted(rates)} Hz")
    return float(reader.getSampleFrequency(channels[0]))


def _physical(reader: pyedflib.EdfReader, channel: int, first: int, count: int) -> tuple[np.ndarray, int]:
    """mV samples of one channel from its digital values, clipping out-of-range codes (count returned)."""
    digital = reader.readSignal(channel, start=first, n=count, digital=True).astype(np.float64)
    d_min, d_max = reader.getDigitalMinimum(channel), reader.getDigitalMaximum(channel)
    p_min, p_max = reader.getPhysicalMinimum(channel), reader.getPhysicalMaximum(channel)
    outside = int(np.count_nonzero((digital < d_min) | (digital > d_max)))
    digital = np.clip(digital, d_min, d_max)
    gain = (p_max - p_min) / (d_max - d_min)
    physical = (digital - d_min) * gain + p_min
    return physical * unit_factor(reader.getPhysicalDimension(channel)), outside


def _metadata(reader: pyedflib.EdfReader, path: Path) -> dict:
    header = reader.getHeader()
    start = header.get("startdate")
    return {
        "record_id": path.stem,
        "patient_id": (header.get("patientcode") or "").strip() or None,
        "sex": {"male": "M", "female": "F"}.get(str(header.get("sex") or header.get("gender") or "").lower()),
        "acquisition_time": iso_datetime(start.date(), start.time()) if start else None,
        "device": (header.get("equipment") or "").strip() or None,
    }
