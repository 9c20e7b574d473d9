"""The data layer's errors: every failure says what went wrong, where, and how to fix it.

A training run that silently falls back to the wrong data (or to no data) produces numbers that look
real. So the data layer never guesses: each problem raises one of these, with a message that names
the dataset, the file or folder involved, and what the user can do.
"""

from __future__ import annotations


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
