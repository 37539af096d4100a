"""Building typed settings from plain mappings, with one wording for unknown or bad keys."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from fedxalign.shared.errors import ConfigError

T = TypeVar("T")


def build(cls: type[T], values: Mapping[str, Any], what: str) -> T:
    """`cls(**values)` after refusing unknown keys by name; YAML lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except TypeError as err:
        raise ConfigError(f"bad {what} settings: {err}") from err
