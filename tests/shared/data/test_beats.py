import neurokit2 as nk
import numpy as np

from fedxalign.shared.data.beats import DRR_SCALE_S, RR_CENTRE_S, RR_SCALE_S, beat_channels, r_peaks


def test_r_peaks_follow_the_heart_rate_even_on_an_inverted_lead():
    fs = 250
    ecg = nk.ecg_simulate(duration=60, sampling_rate=fs, heart_rate=75, random_state=1)
    for sig in (ecg, -ecg):
        peaks = r_peaks(np.asarray(sig), fs)
        rate = 60.0 / np.median(np.diff(peaks) / fs)
        assert abs(rate - 75) < 3


def test_beat_channels_carry_rr_and_its_change_in_fixed_units():
    fs = 100.0
    rr = np.array([1.0, 0.8, 0.8, 1.2, 1.0, 1.0])
    peaks = np.round(np.cumsum(np.r_[0.5, rr]) * fs).astype(int)
    ch = beat_channels(peaks, fs, n_out=700, out_sfreq=fs)
    assert ch.shape == (2, 700)
    # a sample between beats 3 and 4 (t = 2.6 s .. 2.9 s; interval 0.8 after one of 0.8)
    i = int(2.7 * fs)
    assert np.isclose(ch[0, i] * RR_SCALE_S + RR_CENTRE_S, 0.8) and np.isclose(ch[1, i] * DRR_SCALE_S, 0.0)
    j = int(4.0 * fs)  # inside the 1.2 s interval that followed 0.8 s
    assert np.isclose(ch[0, j] * RR_SCALE_S + RR_CENTRE_S, 1.2) and np.isclose(ch[1, j] * DRR_SCALE_S, 0.4)


def test_too_few_or_implausible_beats_leave_neutral_channels():
    assert not beat_channels(np.array([10, 20]), 100.0, 300, 100.0).any()
    assert not beat_channels(np.array([0, 5, 10, 15]), 100.0, 300, 100.0).any()  # 50 ms intervals: not beats
    assert r_peaks(np.zeros(3000), 100.0).size == 0
