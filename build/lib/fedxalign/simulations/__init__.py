"""Researcher entry points: generate federations, run simulations, baselines and reports."""
