"""Exception classes, so callers can tell a bad file from a bad setting from a bug."""

from __future__ import annotations

from pathlib import Path


class FedXAlignError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(FedXAlignError, ValueError):
    """A setting is missing, of the wrong type or outside what is allowed."""


class RecordError(FedXAlignError):
    """One recording cannot be used; names the file and says what is wrong with it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SiteError(FedXAlignError):
    """A whole site folder is unusable (no readable record, labels that map to nothing, ...)."""

    def __init__(self, site_dir: str | Path, reason: str, skipped: list[tuple[str, str]] | None = None) -> None:
        self.site_dir = Path(site_dir)
        self.reason = reason
        self.skipped = skipped or []  # (file, why) of every record that was skipped on the way
        super().__init__(f"site {self.site_dir}: {reason}")


def check_option(name: str, value: object, allowed: tuple | list) -> None:
    """Raise ConfigError in MNE's `_check_option` wording when `value` is not allowed."""
    if value not in allowed:
        allowed_txt = ", ".join(repr(a) for a in allowed)
        raise ConfigError(
            f"Invalid value for the {name!r} parameter. Allowed values are {allowed_txt}, "
            f"but got {value!r} instead."
        )
