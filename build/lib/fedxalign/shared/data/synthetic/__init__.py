"""Synthetic federation: state-driven EEG/ECG written in real formats (EDF, BDF, WFDB)."""
