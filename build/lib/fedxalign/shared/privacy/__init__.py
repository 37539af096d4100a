"""Differential privacy of a site: its persistent ledger, noise calibration and the prototype release."""

from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.ledger import BudgetExceeded, PrivacyLedger

__all__ = ["BudgetExceeded", "PrivacyConfig", "PrivacyLedger"]
