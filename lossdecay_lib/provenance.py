"""Provenance of every result: what ran, where, when, with which seed and profile.

Every number the book shows must come from a run that really happened. A chapter opens with
:func:`start_chapter`, which checks its parameters, seeds everything and prints the profile, device,
library and torch versions, seed and start time, and closes with :meth:`ChapterRun.finish`, which
prints the wall time. Every run record keeps :func:`provenance`.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Dict

import torch

from . import __version__
from .checks import check_positive_int
from .data.seeding import seed_everything
from .profiles import Profile, get_profile, resolve_device

__all__ = ["device_name", "provenance", "ChapterRun", "start_chapter", "check_parameters"]


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def device_name(device: torch.device) -> str:
    """A readable name of the device: the GPU model, or the CPU and its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def provenance(profile: Profile, seed: int, device: torch.device) -> Dict[str, Any]:
    """The facts that make a result traceable: profile, seed, device, versions, time."""
    return {
        "profile": profile.name,
        "seed": int(seed),
        "device": str(device),
        "device_name": device_name(device),
        "lossdecay_lib": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "date": _utc_now(),
    }


@dataclass
class ChapterRun:
    """What a chapter was executed with; printed at its top, wall time printed at its end."""

    profile: Profile
    requested_profile: str
    seed: int
    device: torch.device
    info: Dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def seeds(self):
        """The seeds a comparison runs: ``profile.seeds`` of them, from the chapter's ``seed`` on."""
        return list(range(self.seed, self.seed + self.profile.seeds))

    def header(self) -> str:
        i = self.info
        asked = "" if self.requested_profile == self.profile.name else f" (from '{self.requested_profile}')"
        return (
            f"profile: {self.profile.name}{asked} - {self.profile.description}\n"
            f"device: {i['device_name']}\n"
            f"lossdecay_lib {i['lossdecay_lib']}, torch {i['torch']}, Python {i['python']}\n"
            f"seed: {self.seed}; executed {i['date']}"
        )

    def finish(self) -> float:
        """Print and return the chapter's wall time in seconds."""
        wall = time.perf_counter() - self.started
        print(f"Executed in {wall:.1f} s with profile '{self.profile.name}' on {self.info['device_name']}.")
        return wall


def start_chapter(profile: str = "auto", seed: int = 0, device: str = "auto", quiet: bool = False,
                  **parameters) -> ChapterRun:
    """Validate a chapter's parameters, seed everything, and print what the chapter runs with.

    Every parameter a reader can set with papermill is checked here, before any work: ``profile`` (the
    error lists the valid ones), ``seed``, ``device``, and those passed as keywords: ``data_root`` (a
    folder that must exist, or ``None``), ``force`` (a bool), and any other ``epochs``/``batch_size``-like
    positive integers a chapter exposes (names ending in ``epochs``, ``batch_size``, ``images``).
    """
    prof = get_profile(profile)
    check_parameters(**parameters)
    seed_everything(seed)
    dev = resolve_device(device)
    run = ChapterRun(prof, profile, seed, dev, provenance(prof, seed, dev))
    if not quiet:
        print(run.header())
    return run


def check_parameters(**parameters) -> None:
    """Validate chapter parameters by name (see :func:`start_chapter`); unknown kinds pass through."""
    from .data.paths import resolve_data_root

    for name, value in parameters.items():
        if name == "data_root":
            if value is not None:
                resolve_data_root(value)  # raises, naming the folder, when it does not exist
        elif name == "force":
            if not isinstance(value, bool):
                raise ValueError(f"force must be True or False, got {value!r}")
        elif name.endswith(("epochs", "batch_size", "images")):
            check_positive_int(name, value, allow_none=True)
