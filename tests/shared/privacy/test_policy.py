import dataclasses
import math

import pytest

from fedxalign.shared.errors import ConfigError
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.policy import PolicyRefusal, RoundRequest, SitePolicy, enforce

POLICY = SitePolicy(epsilon=8.0, delta=1e-5, unit="window", share_weights=False, max_rounds=10)


def request(**changes):
    base = RoundRequest(privacy=PrivacyConfig(epsilon=8.0, delta=1e-5), share_weights=False, report_train_loss=False, round=1)
    privacy = {k: v for k, v in changes.items() if k in {f.name for f in dataclasses.fields(PrivacyConfig)}}
    rest = {k: v for k, v in changes.items() if k not in privacy}
    return dataclasses.replace(base, privacy=dataclasses.replace(base.privacy, **privacy), **rest)


@pytest.mark.parametrize("changes, key", [
    ({"enabled": False}, "dp_required"),
    ({"epsilon": 8.5}, "epsilon"),
    ({"delta": 1e-3}, "delta"),
    ({"share_weights": True}, "share_weights"),
    ({"report_train_loss": True}, "share_train_loss"),
    ({"round": 11}, "max_rounds"),
])
def test_each_weakening_request_is_refused_by_its_key(changes, key):
    with pytest.raises(PolicyRefusal) as err:
        enforce(POLICY, request(**changes))
    assert err.value.key == key


def test_a_subject_policy_refuses_a_window_run_and_accepts_its_own():
    strict = dataclasses.replace(POLICY, unit="subject")
    with pytest.raises(PolicyRefusal, match="'unit'"):
        enforce(strict, request())
    assert enforce(strict, request(unit="subject")).unit == "subject"


def test_tightening_is_accepted_as_asked():
    used = enforce(POLICY, request(epsilon=3.0, delta=1e-6, unit="subject"))
    assert (used.epsilon, used.delta, used.unit) == (3.0, 1e-6, "subject")


def test_the_strict_default_policy():
    p = SitePolicy()
    assert p.dp_required and p.epsilon == 8.0 and not p.share_metrics and not p.share_train_loss


def test_a_policy_without_dp_needs_saying_so():
    with pytest.raises(ConfigError, match="dp_required"):
        SitePolicy(epsilon=math.inf)
    assert not SitePolicy(dp_required=False, epsilon=math.inf).dp_required
