"""Training-time batch augmentation (all off by default): amplitude jitter, additive noise and mixup; what differs
between hospitals' recordings (:class:`HospitalShift`); and lead dropping for models that read reduced lead sets.

Every draw comes from a NumPy generator seeded by ``(seed, epoch, batch index)``, not from a global RNG, so a run
resumed after a kill (which restarts the interrupted epoch) sees exactly the augmentations of the uninterrupted run,
whatever the device or the number of DataLoader workers.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import scipy.fft
from scipy import signal as sps

from ecgfm.leads import STANDARD_LEADS
from ecgfm.models.leadsets import model_lead_sets, read_as
from ecgfm.signal import filters
from ecgfm.signal.leads import limb_leads_from_i_ii


def batch_rng(seed: int, epoch: int, batch: int, rank: int = 0) -> np.random.Generator:
    """The generator of one batch's augmentation draws on one rank, independent of the run's other RNGs."""
    return np.random.default_rng((int(seed), int(epoch), int(batch), int(rank), 0xA06))


def augment_batch(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, scale_jitter: float = 0.0,
                  noise_mv: float = 0.0, mixup: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a training batch ``x`` (B, leads, samples) in mV with multi-hot labels ``y`` (B, labels).

    - ``scale_jitter`` s: each ECG's leads are multiplied by one gain drawn log-uniformly from [1/(1+s), 1+s]. One
      gain for all leads keeps the limb-lead identities (III = II - I, ...) and the relative amplitudes that
      voltage criteria compare; keep s small (0.1), since absolute voltage is itself diagnostic (LVH, low voltage).
    - ``noise_mv``: additive white Gaussian noise with this standard deviation in mV (recorders' noise is ~0.01-0.05).
    - ``mixup`` alpha: each ECG is blended with another one of the batch, ``lam * a + (1 - lam) * b`` with
      lam ~ Beta(alpha, alpha), and its labels alike (Zhang et al., ICLR 2018); a label unknown (NaN) in either
      ECG is unknown in the blend.
    """
    if min(scale_jitter, noise_mv, mixup) < 0:
        raise ValueError(f"augmentation strengths must be >= 0, got scale_jitter={scale_jitter}, "
                         f"noise_mv={noise_mv}, mixup={mixup}")
    batch = x.shape[0]
    if scale_jitter > 0:
        log_gain = rng.uniform(-1.0, 1.0, size=(batch, 1, 1)) * math.log1p(scale_jitter)
        x = x * torch.from_numpy(np.exp(log_gain)).to(x.device, x.dtype)
    if noise_mv > 0:
        noise = rng.standard_normal(size=tuple(x.shape), dtype=np.float32) * np.float32(noise_mv)
        x = x + torch.from_numpy(noise).to(x.device, x.dtype)
    if mixup > 0 and batch > 1:
        lam = torch.from_numpy(rng.beta(mixup, mixup, size=batch)).to(x.device)
        partner = torch.from_numpy(rng.permutation(batch)).to(x.device)
        x = lam.to(x.dtype).view(-1, 1, 1) * x + (1 - lam.to(x.dtype).view(-1, 1, 1)) * x[partner]
        y = lam.to(y.dtype).view(-1, 1) * y + (1 - lam.to(y.dtype).view(-1, 1)) * y[partner]
    return x, y


def is_active(scale_jitter: float, noise_mv: float, mixup: float) -> bool:
    """Whether any augmentation is switched on."""
    return scale_jitter > 0 or noise_mv > 0 or mixup > 0


# -- what differs between hospitals ---------------------------------------------------------------------------------

#: Rates a record may have been recorded at before the pipeline resampled it (Hz): the common ones whose ratio to
#: 100 Hz has small factors (360 Hz, 18/5, needs a filter 4x as long for the same result below 50 Hz).
RECORDING_RATES = (250, 300, 400, 500, 1000)
#: Device low-pass settings (Hz): 40 (a "muscle filter"), 100 and 150 (AHA diagnostic bandwidth).
DEVICE_LOWPASS_HZ = (40.0, 100.0, 150.0)
#: Device high-pass corner range (Hz): 0.05 (AHA diagnostic) to 0.67 (the steepest AHA allows for ST segments).
DEVICE_HIGHPASS_HZ = (0.05, 0.67)
#: Electrode-level leads: gains and baseline wander act on these; III, aVR, aVL, aVF are derived from I and II.
_INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
_LIMB_DERIVED = ("III", "aVR", "aVL", "aVF")
_CHEST = ("V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class HospitalShift:
    """Strengths of the batch augmentations imitating what differs between hospitals' recordings (0 = off).

    They act on preprocessed model inputs (mV at the model's rate ``fs``, already high-passed by the pipeline), so
    each imitates what the difference leaves after the pipeline: at 100 Hz nothing above 50 Hz remains, so a device
    low-pass at 100 or 150 Hz, or 60-Hz mains, changes nothing the model sees (the 500->100 Hz resampler keeps 0.2%
    of a 60-Hz hum and half of a 50-Hz one, which lands on the 50-Hz Nyquist frequency).
    """

    lead_gain: float = 0.0  # each electrode lead (I, II, V1-V6) x a gain log-uniform in [1/(1+s), 1+s]
    device_filter: float = 0.0  # probability of a device high-pass (0.05-0.67 Hz) and low-pass (40/100/150 Hz)
    recording_rate: float = 0.0  # probability of a round trip through a recording rate of 250-1000 Hz
    baseline_mv: float = 0.0  # baseline wander (0.05-1 Hz) of up to this amplitude, before the pipeline's high-pass
    powerline_mv: float = 0.0  # 50/60-Hz mains hum of up to this amplitude, as the pipeline's resampler leaves it
    emg_mv: float = 0.0  # muscle noise (>= 20 Hz) with up to this standard deviation
    lead_mix: float = 0.0  # electrode placement: each chest lead takes up to this fraction of a neighbour's signal

    def __post_init__(self) -> None:
        if min(dataclasses.astuple(self)) < 0 or max(self.device_filter, self.recording_rate, self.lead_mix) > 1:
            raise ValueError(f"hospital augmentation strengths must be >= 0 (probabilities and lead_mix <= 1): {self}")

    @property
    def active(self) -> bool:
        return any(value > 0 for value in dataclasses.astuple(self))


def hospital_shift(x: torch.Tensor, rng: np.random.Generator, fs: float, shift: HospitalShift,
                   leads: Sequence[str] = STANDARD_LEADS, highpass_hz: float | None = 0.5) -> torch.Tensor:
    """Augment a batch ``x`` (B, leads, samples) of preprocessed ECGs (mV at ``fs`` Hz) as if recorded elsewhere.

    In order, each when its strength is > 0: electrode placement (chest leads mixed with a neighbour), electrode
    gains (limb leads re-derived from the new I and II, so Einthoven's identities hold), a device filter (Butterworth
    high-pass of order 1-2 at 0.05-0.67 Hz and low-pass of order 2 at 40/100/150 Hz, causal as analogue front ends
    are or zero-phase as digital ones are), a recording rate of 250-1000 Hz (resampled there and back with the
    pipeline's polyphase filters: the anti-alias roll-off below 50 Hz differs with the rate), then additive baseline
    wander (passed through the pipeline's ``highpass_hz`` high-pass, as the pipeline would), mains hum (generated at
    500 Hz and resampled by the pipeline's resampler) and muscle noise, the last two each on half of the ECGs.
    Draws come from ``rng`` in a fixed order.
    """
    if not shift.active:
        return x
    leads = list(leads)
    out = x.detach().cpu().numpy().astype(np.float32, copy=True)
    batch, _, samples = out.shape
    if shift.lead_mix > 0:
        _mix_chest_leads(out, rng, shift.lead_mix, leads)
    if shift.lead_gain > 0:
        gains = np.ones((batch, len(leads), 1), np.float32)
        independent = [leads.index(lead) for lead in _INDEPENDENT if lead in leads] or list(range(len(leads)))
        log_gain = rng.uniform(-1.0, 1.0, size=(batch, len(independent), 1)) * math.log1p(shift.lead_gain)
        gains[:, independent] = np.exp(log_gain)
        out *= gains
        _rederive_limb_leads(out, leads)
    if shift.device_filter > 0 or shift.recording_rate > 0:
        out = _spectral_shift(out, rng, fs, shift)
    if shift.baseline_mv > 0:
        out += _baseline_wander(rng, batch, samples, fs, shift.baseline_mv, leads, highpass_hz)
    if shift.powerline_mv > 0:  # each additive noise on half of the ECGs (and generated for those only)
        rows = np.flatnonzero(rng.random(batch) < 0.5)
        out[rows] += _mains_hum(rng, len(rows), samples, fs, shift.powerline_mv, len(leads))
    if shift.emg_mv > 0:
        rows = np.flatnonzero(rng.random(batch) < 0.5)
        out[rows] += _muscle_noise(rng, (len(rows), *out.shape[1:]), shift.emg_mv)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device, x.dtype)


def _mix_chest_leads(out: np.ndarray, rng: np.random.Generator, strength: float, leads: list[str]) -> None:
    """Chest electrodes placed off their mark: each V lead becomes ``(1 - a) V_i + a V_(i+d)`` (one ``a`` in
    [0, strength] and one direction d = +-1 per ECG; V1 and V6 take their only neighbour)."""
    chest = [leads.index(lead) for lead in _CHEST if lead in leads]
    if len(chest) < 2:
        return
    batch = out.shape[0]
    amount = rng.uniform(0.0, strength, size=(batch, 1, 1)).astype(np.float32)
    direction = rng.choice([-1, 1], size=batch)
    original = out[:, chest].copy()
    index = np.arange(len(chest))
    for b in range(batch):
        neighbour = index + direction[b]
        neighbour = np.where((neighbour < 0) | (neighbour >= len(chest)), index - direction[b], neighbour)
        out[b, chest] = (1 - amount[b]) * original[b] + amount[b] * original[b, neighbour]


def _rederive_limb_leads(out: np.ndarray, leads: list[str]) -> None:
    """Recompute III, aVR, aVL, aVF from I and II in place (when the input has all of them)."""
    if not all(lead in leads for lead in ("I", "II", *_LIMB_DERIVED)):
        return
    derived = limb_leads_from_i_ii(out[:, leads.index("I")], out[:, leads.index("II")])
    for lead in _LIMB_DERIVED:
        out[:, leads.index(lead)] = derived[lead]


#: Samples of reflected signal added at each end before filtering in the frequency domain (so the circular
#: convolution of the FFT does not wrap one end of the record onto the other).
_SPECTRAL_PAD = 250


def _spectral_shift(out: np.ndarray, rng: np.random.Generator, fs: float, shift: HospitalShift) -> np.ndarray:
    """Device filters and recording rates, applied to the whole batch in one FFT: each ECG's frequency response is
    the product of its (cached) filter responses. Draws: device filter (chosen, high-pass corner and order,
    low-pass setting, causal or zero-phase), then recording rate (chosen, rate)."""
    batch, _, samples = out.shape
    n = samples + 2 * _SPECTRAL_PAD
    response = np.ones((batch, n // 2 + 1), np.complex128)
    if shift.device_filter > 0:
        chosen = rng.random(batch) < shift.device_filter
        corner = np.round(rng.uniform(*DEVICE_HIGHPASS_HZ, size=batch), 2)  # 0.01-Hz grid: responses are cached
        order = rng.integers(1, 3, size=batch)
        lowpass = rng.choice(DEVICE_LOWPASS_HZ, size=batch)
        causal = rng.random(batch) < 0.5
        for b in np.flatnonzero(chosen):
            response[b] *= _butter_response(int(order[b]), float(corner[b]), "highpass", fs, n, bool(causal[b]))
            if lowpass[b] < 0.475 * fs:  # a corner at or above the model's Nyquist frequency leaves nothing to remove
                response[b] *= _butter_response(2, float(lowpass[b]), "lowpass", fs, n, bool(causal[b]))
    if shift.recording_rate > 0:
        chosen = rng.random(batch) < shift.recording_rate
        rates = rng.choice(RECORDING_RATES, size=batch)
        for b in np.flatnonzero(chosen):
            response[b] *= _round_trip_response(float(rates[b]), fs, n)
    changed = np.flatnonzero(np.any(response != 1, axis=1))
    if len(changed):
        padded = np.pad(out[changed], ((0, 0), (0, 0), (_SPECTRAL_PAD, _SPECTRAL_PAD)), mode="reflect")
        spectrum = scipy.fft.rfft(padded, axis=-1) * response[changed, None, :].astype(np.complex64)
        filtered = scipy.fft.irfft(spectrum, n=n, axis=-1)
        out[changed] = filtered[..., _SPECTRAL_PAD:_SPECTRAL_PAD + samples]
    return out


@functools.lru_cache(maxsize=1024)
def _butter_response(order: int, corner: float, kind: str, fs: float, n: int, causal: bool) -> np.ndarray:
    """Frequency response at the ``n``-point FFT's frequencies of a Butterworth filter (``scipy.signal.butter``):
    as it is (causal, with its phase shift, as analogue front ends filter) or forwards and backwards (zero phase,
    squared magnitude, as digital ones do)."""
    sos = sps.butter(order, corner, btype=kind, fs=fs, output="sos")
    _, h = sps.sosfreqz(sos, worN=np.fft.rfftfreq(n, 1 / fs), fs=fs)
    return h if causal else np.abs(h) ** 2


@functools.lru_cache(maxsize=64)
def _round_trip_response(rate: float, fs: float, n: int) -> np.ndarray:
    """Frequency response of resampling to ``rate`` and back with the pipeline's polyphase resampler, measured once
    from its impulse response (the round trip is linear and, below the Nyquist frequency, time-invariant)."""
    impulse = np.zeros((1, n), np.float32)
    impulse[0, n // 2] = 1.0
    h = filters.resample(filters.resample(impulse, fs, rate), rate, fs)[0]
    return np.fft.rfft(np.roll(h, -(n // 2)))


def _baseline_wander(rng: np.random.Generator, batch: int, samples: int, fs: float, amplitude: float,
                     leads: list[str], highpass_hz: float | None) -> np.ndarray:
    """Electrode-motion and breathing wander: two 0.05-1 Hz sinusoids per ECG, each electrode lead weighted in
    [-1, 1], limb leads derived, each sinusoid scaled by the pipeline's zero-phase high-pass gain at its frequency
    (the filter's steady-state effect on a sinusoid, without filtering: most of the wander is removed, the rest is
    what the model sees)."""
    t = np.arange(samples) / fs
    freq = rng.uniform(0.05, 1.0, size=(batch, 2, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(batch, 2, 1))
    amp = rng.uniform(0.0, amplitude, size=(batch, 2, 1))
    weights = rng.uniform(-1.0, 1.0, size=(batch, len(leads), 2))
    if highpass_hz:
        amp = amp * pipeline_highpass_gain(freq, fs, highpass_hz)
    waves = amp * np.cos(2 * np.pi * freq * t + phase)  # (batch, 2, samples)
    wander = np.einsum("blk,bks->bls", weights, waves).astype(np.float32)
    _rederive_limb_leads(wander, leads)
    return wander


def pipeline_highpass_gain(freq: np.ndarray, fs: float, cutoff: float, order: int = 4) -> np.ndarray:
    """Amplitude gain at ``freq`` (Hz) of the pipeline's zero-phase Butterworth high-pass (``filters.bandpass``:
    the filter applied forwards and backwards, so its squared magnitude)."""
    sos = sps.butter(order, cutoff, btype="highpass", fs=fs, output="sos")
    _, response = sps.sosfreqz(sos, worN=np.ravel(freq), fs=fs)
    return (np.abs(response) ** 2).reshape(np.shape(freq))


def _muscle_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Muscle (EMG) noise: white noise differenced once (a high-pass whose power rises to the Nyquist frequency:
    at 100 Hz most of it lies at 20-50 Hz, the part of the EMG band that survives resampling), one standard
    deviation per ECG in [0, ``sigma``] mV and each lead weighted in [0.2, 1]."""
    batch, n_leads, samples = shape
    scale = rng.uniform(0.0, sigma, size=(batch, 1, 1)) * rng.uniform(0.2, 1.0, size=(batch, n_leads, 1))
    white = rng.standard_normal(size=(batch, n_leads, samples + 1), dtype=np.float32)
    return (scale * np.diff(white, axis=-1) / np.sqrt(2.0)).astype(np.float32)


def _mains_hum(rng: np.random.Generator, batch: int, samples: int, fs: float, amplitude: float,
               n_leads: int) -> np.ndarray:
    """``(batch, n_leads, samples)``: 50 or 60 Hz (+-0.2 Hz) hum of up to ``amplitude`` mV, each lead weighted in [0, 1], generated at 500 Hz and
    brought to ``fs`` by the pipeline's resampler (what of it survives the anti-alias filter)."""
    recorded = 500.0
    t = np.arange(int(round(samples * recorded / fs))) / recorded
    freq = rng.choice([50.0, 60.0], size=(batch, 1)) + rng.uniform(-0.2, 0.2, size=(batch, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(batch, 1))
    amp = rng.uniform(0.0, amplitude, size=(batch, 1, 1))
    hum = filters.resample(np.cos(2 * np.pi * freq * t + phase), recorded, fs)[:, None, :samples]
    return (amp * rng.uniform(0.0, 1.0, size=(batch, n_leads, 1)) * hum).astype(np.float32)


def drop_leads(x: torch.Tensor, rng: np.random.Generator, probability: float, leads: Sequence[str],
               sets: Sequence[tuple[str, Sequence[str]]]) -> torch.Tensor:
    """Random lead dropping for models with lead-presence channels: each ECG of ``x`` (B, 2 x leads, samples) is,
    with ``probability``, read as one of the reduced ``sets`` (every set but the first, the full one; chosen
    uniformly): its other leads and their presence channels zeroed, limb leads derived where the set derives them
    (:func:`ecgfm.models.leadsets.read_as`)."""
    batch = x.shape[0]
    chosen = rng.random(batch) < probability
    reduced = [name for name, _ in sets[1:]]
    if not reduced or probability <= 0:
        return x
    picks = rng.integers(0, len(reduced), size=batch)
    out = x.clone()
    for k, name in enumerate(reduced):
        rows = np.flatnonzero(chosen & (picks == k))
        if len(rows):
            index = torch.from_numpy(rows).to(x.device)
            out[index] = read_as(x[index], name, leads, sets)
    return out


@dataclass(frozen=True)
class BatchAugmentation:
    """Everything a training run does to a batch, in order: the hospital shift on the leads, gain / white noise /
    mixup (:func:`augment_batch`), then lead dropping on leads and presence channels. Built by
    :func:`training_augmentation` from the run's options and the model's input description."""

    config: Any  # TrainConfig
    fs: float
    leads: tuple[str, ...]
    lead_mask: bool
    lead_sets: tuple = ()
    highpass_hz: float | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        n = len(self.leads) if self.lead_mask else x.shape[1]
        signal = hospital_shift(x[:, :n], rng, self.fs, c.hospital_shift, self.leads, self.highpass_hz)
        signal, y = augment_batch(signal, y, rng, scale_jitter=c.scale_jitter, noise_mv=c.noise_mv, mixup=c.mixup)
        x = torch.cat([signal, x[:, n:]], dim=1) if self.lead_mask else signal
        if c.lead_drop > 0:
            x = drop_leads(x, rng, c.lead_drop, self.leads, self.lead_sets)
        return x, y


def training_augmentation(config, info) -> BatchAugmentation | None:
    """The batch augmentation of a run with ``config`` (a ``TrainConfig``) for a model described by ``info``, or
    ``None`` when every augmentation is off. Lead dropping needs a model with lead-presence channels."""
    if not (is_active(config.scale_jitter, config.noise_mv, config.mixup) or config.hospital_shift.active
            or config.lead_drop > 0):
        return None
    if config.lead_drop > 0 and not info.lead_mask:
        raise ValueError("lead_drop needs a model with lead-presence inputs (ModelInfo.lead_mask; a pipeline with "
                         "lead sets, e.g. the foundation recipe's)")
    steps = (info.preprocess or {}).get("steps", ())
    highpass = next((step.get("low") for step in reversed(steps) if step.get("name") == "bandpass"), None)
    return BatchAugmentation(config, float(info.fs or 100.0), tuple(info.leads), bool(info.lead_mask),
                             model_lead_sets(info) if info.lead_mask else (), highpass)
