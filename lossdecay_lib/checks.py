"""Checks at the library's boundary: every bad value is an error before any work, in one wording.

The run configurations (classification, segmentation, pix2pix) and the chapters' parameters use these,
so a reader gets the same kind of message wherever a value is wrong: what was expected, what was given,
and, for names, the list of valid ones.
"""

from __future__ import annotations

from typing import Iterable, Optional

__all__ = ["check_name", "check_one_of", "check_positive_int", "check_non_negative_int"]


def check_name(value, valid: Iterable[str], what: str, plural: Optional[str] = None) -> str:
    """``value`` if it is one of ``valid``, else ``ValueError("unknown <what> <value>; valid <plural>: ...")``."""
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid {plural or what + 's'}: {', '.join(valid)}")
    return value


def check_one_of(name: str, value, choices: Iterable):
    """``value`` if it is one of ``choices`` (of any type), else ``ValueError("<name> must be one of
    [...], got <value>")``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value, allow_none: bool = False, none_means: str = ""):
    """``value`` if it is an integer > 0 (or ``None`` when allowed), else a ``ValueError`` naming ``name``."""
    if value is None and allow_none:
        return value
    if not _is_int(value) or value <= 0:
        alternative = f" or None{f' ({none_means})' if none_means else ''}" if allow_none else ""
        raise ValueError(f"{name} must be a positive integer{alternative}, got {value!r}")
    return value


def check_non_negative_int(name: str, value):
    """``value`` if it is an integer >= 0, else a ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value
