"""State-dependent EEG: NeuroDSP 1/f background and bursty rhythms, modulated by the latent.

Stage signatures follow the AASM scoring manual: alpha (8-12 Hz, occipital) in relaxed
wake, theta and vertex activity in N1, sleep spindles (11-15 Hz bursts) in N2, high-amplitude
delta (0.5-2 Hz, frontal) in N3, low-voltage mixed frequency with rapid eye movements in REM.
"""

from __future__ import annotations

import numpy as np
from neurodsp.sim import sim_bursty_oscillation, sim_powerlaw

from fedxalign.shared.data.synthetic.states import Subject, epoch_envelope


def band_noise(n: int, fs: float, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise restricted to [lo, hi] Hz (FFT mask)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    spec[(freqs < lo) | (freqs > hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (out.std() + 1e-12)


def _region_weights(ch_name: str) -> dict[str, float]:
    """Rough topography from the 10-20 name: frontal delta/eye movements, occipital alpha."""
    name = ch_name.upper().removeprefix("EEG ").strip("() ")  # archive labels: 'EEG Fpz-Cz', 'EEG (C4-A1)'
    front = 1.0 if name.startswith(("FP", "F", "E")) else 0.5
    occ = 1.0 if name.startswith(("O", "P")) or "OZ" in name else 0.45
    return {"front": front, "occ": occ, "central": 1.0 if name.startswith("C") else 0.7}


def simulate_eeg(
    latent: np.ndarray,
    subject: Subject,
    ch_names: list[str],
    fs: float,
    epoch_s: float,
    noise_uv: float,
    line_hz: float | None,
    line_uv: float,
    artefact_rate: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """EEG in microvolts, shape (channels, epochs x epoch samples)."""
    # NeuroDSP draws from NumPy's global generator; seed it from ours so records are reproducible.
    np.random.seed(int(rng.integers(0, 2**31 - 1)))
    n_ep = len(latent)
    ep = int(round(epoch_s * fs))
    n = n_ep * ep
    secs = n / fs
    arousal, depth, rem = latent[:, 0], latent[:, 1], latent[:, 2]
    ramp = int(fs)
    amp = {
        "delta": epoch_envelope(45.0 * np.clip(depth, 0, None) ** 1.5, ep, ramp),
        "theta": epoch_envelope(9.0 * np.clip(1 - 2.5 * np.abs(arousal - 0.55), 0, None) + 7.0 * np.clip(rem, 0, None), ep, ramp),
        "alpha": epoch_envelope(30.0 * np.clip(arousal - 0.55, 0, None) * np.clip(1 - rem, 0, 1), ep, ramp),
        "spindle": epoch_envelope(14.0 * np.clip(1 - 3.0 * np.abs(depth - 0.6), 0, None), ep, ramp),
        "beta": epoch_envelope(3.0 + 4.0 * np.clip(arousal, 0, None), ep, ramp),
        "eyes": epoch_envelope(40.0 * np.clip(rem, 0, None) + 15.0 * np.clip(arousal - 0.7, 0, None), ep, ramp),
        "slope": epoch_envelope(np.clip(depth, 0, 1), ep, ramp),
    }
    out = np.empty((len(ch_names), n))
    shared_eyes = band_noise(n, fs, 0.3, 1.5, rng)  # eye movements reach all channels, mostly frontal
    for c, name in enumerate(ch_names):
        w = _region_weights(name)
        steep = sim_powerlaw(secs, fs, exponent=-2.2)[:n]
        flat = sim_powerlaw(secs, fs, exponent=-1.0)[:n]
        background = 8.0 * ((1 - amp["slope"]) * flat / flat.std() + amp["slope"] * steep / steep.std())
        alpha = sim_bursty_oscillation(secs, fs, subject.alpha_peak + rng.normal(0, 0.2), burst_def="prob",
                                       burst_params={"enter_burst": 0.3, "leave_burst": 0.15})[:n]
        spindle = sim_bursty_oscillation(secs, fs, subject.spindle_freq, burst_def="prob",
                                         burst_params={"enter_burst": 0.04, "leave_burst": 0.12})[:n]
        x = (
            background
            + amp["delta"] * w["front"] * band_noise(n, fs, 0.5, 2.0, rng)
            + amp["theta"] * w["central"] * band_noise(n, fs, 4.0, 7.5, rng)
            + amp["alpha"] * w["occ"] * alpha / (alpha.std() + 1e-12)
            + amp["spindle"] * w["central"] * spindle / (spindle.std() + 1e-12)
            + amp["beta"] * band_noise(n, fs, 16.0, 25.0, rng)
            + amp["eyes"] * w["front"] * shared_eyes
        )
        out[c] = subject.eeg_gain * x
    t = np.arange(n) / fs
    out += noise_uv * rng.standard_normal(out.shape)
    if line_hz is not None and line_hz < fs / 2:
        out += line_uv * np.sin(2 * np.pi * line_hz * t + rng.uniform(0, 2 * np.pi, (len(ch_names), 1)))
    _add_artefacts(out, fs, artefact_rate, rng)
    return out


def _add_artefacts(x: np.ndarray, fs: float, per_hour: float, rng: np.random.Generator) -> None:
    """Muscle bursts and electrode pops at `per_hour` events per hour, in place."""
    n = x.shape[1]
    for _ in range(rng.poisson(per_hour * n / fs / 3600.0)):
        c = int(rng.integers(0, x.shape[0]))
        start = int(rng.integers(0, n))
        length = int(rng.uniform(0.5, 3.0) * fs)
        seg = slice(start, min(n, start + length))
        if rng.random() < 0.5:
            x[c, seg] += 30.0 * band_noise(seg.stop - seg.start, fs, 20.0, min(60.0, fs / 2 - 1), rng)
        else:
            x[c, seg] += rng.choice([-1, 1]) * 150.0 * np.exp(-np.arange(seg.stop - seg.start) / (0.3 * fs))
