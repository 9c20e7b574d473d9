"""The data layer's errors: every failure says what went wrong, where, and how to fix it.

A training run that silently falls back to the wrong data (or to no data) produces numbers that look
real. So the data layer never guesses: each problem raises one of these, with a message that names
the dataset, the file or folder involved, and what the user can do.
"""

from __future__ import annotations

from typing import Iterable


class DataError(Exception):
    """Base class of every error raised by ``lossdecay_lib.data``."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset is in none of the places searched (and was not, or could not be, downloaded)."""


class ChecksumError(DataError, ValueError):
    """An archive's sha256 differs from the known one: a corrupt, truncated or different file."""


class UnsafeArchiveError(DataError, ValueError):
    """An archive holds a member that would land outside the extraction folder, or a link/device."""


class MalformedDatasetError(DataError, FileNotFoundError):
    """A dataset folder exists but lacks a file or folder its layout requires, or holds a bad file."""


class MismatchedPairError(DataError, ValueError):
    """An image and its mask (or the two halves of a paired image) do not have matching sizes."""


def check_choice(value: str, valid: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``valid``; else raise a ``ValueError`` that lists the valid ones.

    Used at every public boundary that takes a name (dataset, split, direction), so a typo fails at
    once with the list of accepted names instead of deep inside a path lookup.
    """
    valid = tuple(valid)
    if value not in valid:
        listed = ", ".join(repr(v) for v in valid)
        raise ValueError(f"unknown {what} {value!r}; valid {what}s are: {listed}")
    return value
