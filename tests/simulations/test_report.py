"""The per-site table: a paired node's row (its ledger and bytes) and its two halves' scores under it; the pooled probe line."""

from fedxalign.simulations.report import pooled_probe_line, sites_table


def test_a_paired_nodes_halves_are_scored_under_its_row():
    rows = [{"site": s, "modality": m, "round": r, "epsilon": 2.0 * r, "epsilon_budget": 8.0, "bytes_sent": b}
            for r in (1, 2) for s, m, b in (("eeg_a", "eeg", 100.0), ("psg", "paired", 300.0))]
    within = {"fedxalign": {"eeg_a": 0.5, "psg/eeg": 0.61, "psg/ecg": 0.42}, "local": {"eeg_a": 0.4, "psg/ecg": 0.3}}
    lines = sites_table(rows, within).splitlines()
    names = [line.split()[0] for line in lines[2:]]
    assert names == ["eeg_a", "psg", "/ecg", "/eeg"]
    psg, ecg, eeg = lines[3], lines[4], lines[5]
    assert "paired" in psg and "4.000" in psg and psg.split()[-2:] == ["-", "-"]  # the node's ledger, no score of its own
    assert ecg.split()[1:] == ["ecg", "0.420", "0.300"] and eeg.split()[1:] == ["eeg", "0.610", "-"]


def test_the_pooled_probe_line_names_every_method_that_has_pooled_figures():
    methods = {"fedxalign": {"probe_pooled_eeg": 0.7004, "probe_pooled_ecg": 0.55},
               "features": {"probe_pooled_eeg": 0.718, "probe_pooled_ecg": float("nan")},
               "older": {"probe_eeg": 0.6}}  # a row without pooled figures is left out, not printed as zero
    line = pooled_probe_line(methods)
    assert "fedxalign 0.700/0.550" in line and "features 0.718/nan" in line and "older" not in line
