import pytest

from fedxalign.shared.privacy.audit import audit_release, claimed_epsilon


def test_claimed_epsilon_of_one_default_release():
    assert 0.5 < claimed_epsilon(8.0, 1e-5) < 1.0


@pytest.mark.parametrize("noise_multiplier", [8.0, 1.0])
def test_empirical_epsilon_of_a_release_stays_under_its_claim(noise_multiplier):
    result = audit_release(2000, noise_multiplier)
    assert result.epsilon_lower <= result.epsilon_claimed


def test_the_audit_catches_a_release_with_too_little_noise():
    """The default release's claim with an eightieth of its noise: the lower bound must exceed the claim."""
    result = audit_release(2000, 0.1, claimed_noise_multiplier=8.0)
    assert result.epsilon_lower > result.epsilon_claimed
