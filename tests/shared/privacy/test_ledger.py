import json
import math

import pytest

from fedxalign.shared.errors import ConfigError
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy import ledger as ledger_module
from fedxalign.shared.privacy.ledger import INTEGER_ORDERS, BudgetExceeded, LedgerIntegrityError, PrivacyLedger, calibrate_noise


def test_golden_rdp_epsilon(tmp_path):
    """Opacus's own check: RDP, sigma 1.5, q 0.04, 2250 steps, delta 1e-5 -> 7.3291."""
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=100, delta=1e-5))
    ledger.spend("dp_sgd_step", 1.5, 0.04, 2250)
    assert ledger.epsilon() == pytest.approx(7.3291, abs=1e-3)


def test_composes_and_survives_a_restart(tmp_path):
    cfg = PrivacyConfig(epsilon=10)
    a = PrivacyLedger(tmp_path / "l.json", cfg)
    a.spend("dp_sgd_step", 1.0, 0.05, 100)
    eps_steps = a.epsilon()
    a.spend("prototype_release", 5.0, 1.0, 1)
    assert a.epsilon() > eps_steps
    b = PrivacyLedger(tmp_path / "l.json", cfg)  # a new process reads the same file
    assert b.epsilon() == pytest.approx(a.epsilon())
    assert b.counts == {"dp_sgd_step": 100, "prototype_release": 1}
    assert json.loads((tmp_path / "l.json").read_text())["epsilon_spent"] == pytest.approx(a.epsilon())


def test_refuses_past_the_budget_and_records_nothing(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=1.0))
    k = ledger.affordable_steps(1.0, 0.1)
    ledger.spend("dp_sgd_step", 1.0, 0.1, k)
    assert ledger.epsilon() <= 1.0
    before = ledger.entries
    with pytest.raises(BudgetExceeded, match="over this site's budget of 1"):
        ledger.spend("dp_sgd_step", 1.0, 0.1, 1)
    assert ledger.entries == before


def test_affordable_steps_leaves_room_for_a_reserve(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=3.0))
    reserve = [(4.0, 1.0, 1)]
    k = ledger.affordable_steps(1.2, 0.05, reserve)
    assert ledger.can_afford([(1.2, 0.05, k), *reserve])
    assert not ledger.can_afford([(1.2, 0.05, k + 1), *reserve])


def test_calibration_fits_the_planned_run(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=3.0))
    sigma = calibrate_noise(ledger, 0.1, 20, rounds=5, release_sigma=5.0)
    eps = ledger.epsilon([(sigma, 0.1, 100), (5.0, 1.0, 5)])
    assert 2.8 < eps <= 3.0
    assert ledger.epsilon([(sigma / 1.006, 0.1, 100), (5.0, 1.0, 5)]) > 3.0  # the smallest that fits, on all orders
    with pytest.raises(ConfigError, match="cannot cover"):
        calibrate_noise(ledger, 0.1, 20, rounds=5, release_sigma=0.05)


def test_dp_off_reports_infinity_and_records_nothing(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(enabled=False))
    ledger.spend("dp_sgd_step", 1.0, 0.1, 10)
    assert math.isinf(ledger.epsilon()) and ledger.entries == []


def test_unreadable_or_mismatched_ledger(tmp_path):
    (tmp_path / "l.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        PrivacyLedger(tmp_path / "l.json", PrivacyConfig())
    PrivacyLedger(tmp_path / "m.json", PrivacyConfig()).save()
    with pytest.raises(ConfigError, match="accountant='rdp'"):
        PrivacyLedger(tmp_path / "m.json", PrivacyConfig(accountant="prv"))


def test_infinite_budget_needs_dp_off():
    with pytest.raises(ConfigError, match="enabled: false"):
        PrivacyConfig(epsilon=math.inf)


def test_cached_rdp_matches_opacus_accountant(tmp_path):
    from opacus.accountants import RDPAccountant

    history = [(1.1, 0.08, 300), (5.657, 1.0, 4), (0.9, 0.02, 1000)]
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=100))
    for sigma, q, steps in history:
        ledger.spend("x", sigma, q, steps)
    acc = RDPAccountant()
    acc.history = history
    assert ledger.epsilon() == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_prv_accountant_is_available(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=100, accountant="prv"))
    ledger.spend("dp_sgd_step", 1.5, 0.04, 2250)
    assert 5.0 < ledger.epsilon() < 7.3291  # PRV is tighter than RDP for the same mechanism


def _spent(tmp_path, cfg=None):
    cfg = cfg or PrivacyConfig(epsilon=8.0)
    ledger = PrivacyLedger(tmp_path / "l.json", cfg)
    ledger.spend("dp_sgd_step", 1.0, 0.1, 50, round_no=1)
    ledger.spend("prototype_release", 5.0, 1.0, 1, round_no=1)
    return ledger


def test_an_edited_step_count_is_refused(tmp_path):
    import json

    _spent(tmp_path)
    state = json.loads((tmp_path / "l.json").read_text())
    state["events"][0]["steps"] = 5  # someone makes the site look fresher than it is
    (tmp_path / "l.json").write_text(json.dumps(state))
    with pytest.raises(LedgerIntegrityError, match="entry 1 was edited"):
        PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0))


def test_a_truncated_or_rolled_back_ledger_is_refused(tmp_path):
    import json
    import shutil

    _spent(tmp_path)
    shutil.copy(tmp_path / "l.json", tmp_path / "backup.json")
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0))
    for _ in range(3):
        ledger.spend("dp_sgd_step", 1.0, 0.1, 10, round_no=2)
    shutil.copy(tmp_path / "backup.json", tmp_path / "l.json")  # an older copy restored over the newer
    with pytest.raises(LedgerIntegrityError, match="older copy"):
        PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0))
    state = json.loads((tmp_path / "backup.json").read_text())
    assert len(state["events"]) == 2


@pytest.mark.parametrize("damage", ["deleted", "emptied", "dangling link"])
def test_a_lost_ledger_is_refused_while_the_folder_shows_earlier_work(tmp_path, damage):
    _spent(tmp_path)
    path = tmp_path / "l.json"
    path.unlink()
    if damage == "emptied":
        path.write_text("")
    elif damage == "dangling link":
        path.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(LedgerIntegrityError, match="earlier work"):
        PrivacyLedger(path, PrivacyConfig(epsilon=8.0))
    encoder_only = tmp_path / "other"
    encoder_only.mkdir()
    (encoder_only / "encoder.pt").write_bytes(b"x")
    with pytest.raises(LedgerIntegrityError, match="encoder.pt"):
        PrivacyLedger(encoder_only / "l.json", PrivacyConfig(), earlier_work=[encoder_only / "encoder.pt"])
    assert PrivacyLedger(tmp_path / "fresh" / "l.json", PrivacyConfig()).epsilon() == 0.0  # a fresh site starts at zero


def test_delta_and_unit_are_fixed_for_a_ledgers_life(tmp_path):
    _spent(tmp_path)
    with pytest.raises(ConfigError, match="delta"):
        PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0, delta=1e-4))
    with pytest.raises(ConfigError, match="unit"):
        PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0, unit="subject"))
    again = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0))
    assert again.counts == {"dp_sgd_step": 50, "prototype_release": 1} and again.rounds() == {1}


@pytest.mark.parametrize("q, steps, budget", [(0.36, 18, 8.0), (0.1, 100, 3.0), (0.02, 300, 1.0)])
def test_the_integer_orders_first_guess_is_conservative_and_the_calibration_is_exact_on_all_orders(tmp_path, q, steps, budget):
    """The fast first search (integer RDP orders) may only over-estimate epsilon; the answer is refined on every order."""
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=budget))
    for sigma in (0.7, 1.0, 2.0, 5.0):
        assert ledger.epsilon([(sigma, q, steps)], INTEGER_ORDERS) >= ledger.epsilon([(sigma, q, steps)])
    sigma = calibrate_noise(ledger, q, steps // 6, rounds=6, release_sigma=20.0)
    planned = lambda s: [(s, q, 6 * (steps // 6)), (20.0, 1.0, 6)]  # noqa: E731
    assert ledger.can_afford(planned(sigma)) and not ledger.can_afford(planned(sigma / 1.006))


@pytest.mark.parametrize("q", [0.05, 0.33, 0.5])
@pytest.mark.parametrize("sigma", [0.7, 1.5, 4.0])
def test_the_epsilon_near_the_best_integer_order_is_the_epsilon_on_all_orders(tmp_path, sigma, q):
    """Calibration searches on the integer orders plus the fractional ones next to the best integer one; on the
    default run's kind of history (DP-SGD steps and releases at q = 1) that is exactly the bound on every order."""
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0))
    for steps in (12, 300):
        history = [(sigma, q, steps), (5.657, 1.0, 6)]
        assert ledger.epsilon_near_best_order(history) == ledger.epsilon(history)


def test_a_subset_of_orders_never_reports_less_than_all_orders(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=8.0))
    for history in ([(0.9, 0.2, 40)], [(2.0, 0.5, 10), (17.0, 1.0, 3)], [(24.0, 1.0, 1)]):
        assert ledger.epsilon_near_best_order(history) >= ledger.epsilon(history)
        assert ledger.epsilon(history, INTEGER_ORDERS) >= ledger.epsilon_near_best_order(history)


def test_a_reopened_ledger_does_not_recompute_the_rdp_of_steps_it_accounted_before(tmp_path, monkeypatch):
    """Each round opens the site's ledger afresh; its (sigma, q) at Opacus' fractional orders cost 0.1-0.4 s each time."""
    calls = []
    compute = ledger_module.rdp_analysis.compute_rdp
    monkeypatch.setattr(ledger_module.rdp_analysis, "compute_rdp", lambda **kw: calls.append(kw) or compute(**kw))
    ledger_module.unit_rdp.cache_clear()
    cfg = PrivacyConfig(epsilon=8.0)
    first = PrivacyLedger(tmp_path / "l.json", cfg)
    first.spend("dp_sgd_step", 1.37, 0.31, 15, round_no=1)
    spent = first.epsilon()
    assert calls  # the first ledger computed them
    calls.clear()
    again = PrivacyLedger(tmp_path / "l.json", cfg)
    assert again.epsilon() == spent and calls == []


def test_a_high_noise_release_is_accounted_at_its_best_order_tighter_than_opacus_defaults_and_without_its_warning(tmp_path):
    import warnings

    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis

    sigma = 24 / math.sqrt(2)  # one release at epsilon 1's release noise: its best order is about 80, past Opacus' 63
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=1.0))
    ledger.spend("prototype_release", sigma, 1.0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Opacus' "Optimal order is the largest alpha" would fail the test
        eps = ledger.epsilon()
    acc = RDPAccountant()
    acc.history = [(sigma, 1.0, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opacus_default = acc.get_epsilon(1e-5)
    dense = [1 + k / 100 for k in range(1, 100)] + list(range(2, 2001))  # no order set can do better than these
    floor = rdp_analysis.get_privacy_spent(orders=dense, rdp=rdp_analysis.compute_rdp(q=1.0, noise_multiplier=sigma, steps=1, orders=dense),
                                           delta=1e-5)[0]
    assert floor - 1e-9 <= eps < opacus_default
    assert eps - floor < 0.01 * floor  # within 1% of the best any order gives
