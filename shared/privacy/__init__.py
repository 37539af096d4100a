"""Differential privacy of a site: its persistent ledger, noise calibration and the prototype release."""

from shared.privacy.config import PrivacyConfig
from shared.privacy.ledger import BudgetExceeded, PrivacyLedger

__all__ = ["BudgetExceeded", "PrivacyConfig", "PrivacyLedger"]
