"""Pilot for the ``cpu`` profile (issue 14): what a training step costs at each candidate size, and what
the classification chapters' campaign would cost at the chosen one.

Prints, measured in one run on this machine with one thread (the campaign runs one thread per process,
two processes on two cores):

* milliseconds per training step (batch 128, the authors' SGD, channels_last where safe) for the
  candidate networks and image sizes: plain-40 and plain-50 at widths 8/16/32, plain-40 at 16/32/64,
  the CIFAR ResNet-34 at width 8, each at 16x16 and 32x32;
* the campaign's cost at the chosen profile: every run of ``experiments.campaign_configs(profile)``,
  steps x measured step time (plus the evaluation of the test set per epoch), in core-hours, against
  the budget of 20 core-hours.

The committed records of the campaign carry the real wall time of every run; this script is how the
profile was chosen before any of them existed. Run it on an otherwise idle machine (pause other
training): ``python benchmarks/bench_profile_pilot.py [--profile cpu] [--steps 12]``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from lossdecay_lib import experiments
from lossdecay_lib.models import build_model, channels_last_is_safe
from lossdecay_lib.optimizers import build_optimizer
from lossdecay_lib.profiles import get_profile
from lossdecay_lib.training import AUTHORS_SGD

CANDIDATES = [
    ("plain", dict(depth=40, widths=8)),
    ("plain", dict(depth=50, widths=8)),
    ("plain", dict(depth=40, widths=16)),
    ("resnet34_cifar", dict(width=8)),
]


def step_seconds(model_name: str, settings: dict, side: int, steps: int, batch: int = 128, train: bool = True) -> float:
    """Seconds per training step (or per evaluation forward pass with ``train=False``), best of two rounds."""
    model = build_model(model_name, **settings)
    cl = channels_last_is_safe(model, torch.device("cpu"))
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer("sgd", model.parameters(), **dict(AUTHORS_SGD))
    x = torch.randn(batch, 3, side, side)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    y = torch.randint(0, 10, (batch,))
    model.train(train)

    def one():
        if train:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)

    one()
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(steps):
            one()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def campaign_hours(profile: str, steps: int) -> float:
    """Core-hours of every run of the classification chapters' campaign at ``profile``, from step times."""
    prof = get_profile(profile)
    cache, total = {}, 0.0
    for c in experiments.campaign_configs(prof.name, list(experiments.CHAPTERS), range(prof.seeds)):
        settings = dict(c.model_settings)
        key = (c.model, tuple(sorted(settings.items())), c.image_size)
        if key not in cache:
            train = step_seconds(c.model, settings, c.image_size, steps, c.batch_size)
            evaluate = step_seconds(c.model, settings, c.image_size, steps, 500, train=False)
            images = 10 * (c.train_per_class or 5000)
            tests = 10 * (c.test_per_class or 1000)
            cache[key] = c.epochs * (images // c.batch_size * train + tests / 500 * evaluate)
            print(f"  {c.model} {settings} at {c.image_size}x{c.image_size}: {train * 1e3:.0f} ms/step, "
                  f"{cache[key] / 60:.1f} min per run", flush=True)
        total += cache[key]
    return total / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("ms per training step, batch 128, one thread:")
    for name, settings in CANDIDATES:
        times = {side: step_seconds(name, settings, side, args.steps) for side in (16, 32)}
        print(f"  {name} {settings}: 16x16 {times[16] * 1e3:.0f} ms, 32x32 {times[32] * 1e3:.0f} ms "
              f"(x{times[32] / times[16]:.1f})", flush=True)
    print(f"campaign of the '{args.profile}' profile:")
    hours = campaign_hours(args.profile, args.steps)
    print(f"  {hours:.1f} core-hours of training (budget 20), without curvature measurements", flush=True)


if __name__ == "__main__":
    main()
