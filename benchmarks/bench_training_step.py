"""The library's classification training against a minimal hand-written PyTorch loop (issue 9).

Prints, in one run, the time of the same training job done two ways on the same machine:

* ``library``: :func:`lossdecay_lib.training.train_classifier` (schedules, loss weight at its place,
  per-layer gradient norms, the non-finite watch, metrics accumulated on the device, an evaluation
  and a checkpoint after every epoch, the JSON record);
* ``minimal``: a hand-written loop over the same batches (``zero_grad``, forward, cross-entropy,
  ``backward``, ``SGD.step``) with the same network, optimizer, data and per-epoch evaluation, and
  nothing else.

Both use the real CIFAR-10 (a class-balanced subset), channels_last, and the same seed. The two are
timed interleaved (library, minimal, library, ...) and the fastest of ``--repeats`` is kept for each,
so that load from other processes on a shared machine inflates neither alone. Goal: the library
within 5% of the minimal loop. The ratio is what to read; absolute times on shared machines are noise.

Usage: ``python benchmarks/bench_training_step.py [--depth 20] [--threads 1] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F

from lossdecay_lib import schedules as S
from lossdecay_lib.data import CifarBatches, load_cifar10
from lossdecay_lib.models import build_model
from lossdecay_lib.runs import RunStore
from lossdecay_lib.training import ClassificationConfig, train_classifier


def minimal_run(config: ClassificationConfig, data_root, device: torch.device) -> float:
    """The same job as ``train_classifier(config)`` (loading the data included) written as plainly as
    PyTorch allows; returns the final test accuracy."""
    train = load_cifar10("train", data_root, per_class=config.train_per_class, seed=0)
    test = load_cifar10("test", data_root, per_class=config.test_per_class, seed=0)
    torch.manual_seed(config.seed)
    batches = CifarBatches(train, config.batch_size, device=device, seed=config.seed, channels_last=True)
    test_batches = CifarBatches(test, 500, train=False, device=device, channels_last=True)
    model = build_model(config.model, **dict(config.model_settings)).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), **dict(config.optimizer_settings))
    acc = 0.0
    for epoch in range(config.epochs):
        model.train()
        for x, y in batches.epoch_batches(epoch):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in test_batches:
                correct += int((model(x).argmax(1) == y).sum())
                total += y.numel()
        acc = correct / total
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = ClassificationConfig(
        profile="smoke", model="plain", model_settings=(("depth", args.depth), ("widths", args.width)),
        train_per_class=args.per_class, test_per_class=20, epochs=args.epochs, batch_size=args.batch_size,
        optimizer="sgd", optimizer_settings=(("lr", 0.05), ("momentum", 0.9), ("weight_decay", 5e-4)),
        weight=S.linear_decay(start=2.0),
    )
    train = load_cifar10("train", args.data_root, per_class=args.per_class, seed=0)
    test = load_cifar10("test", args.data_root, per_class=20, seed=0)
    steps = args.epochs * (len(train) // args.batch_size)
    where = f"{torch.get_num_threads()} CPU threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"torch {torch.__version__}, {where}; plain net depth {args.depth}, width {args.width}; "
          f"{len(train)} CIFAR-10 images, batch {args.batch_size}, {steps} steps, {len(test)} test images per epoch")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = {"library": [], "minimal": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        jobs = {
            "library": lambda: train_classifier(config, data_root=args.data_root, device=str(device), store=store,
                                                force=True, progress=False),
            "minimal": lambda: minimal_run(config, args.data_root, device),
        }
        for fn in jobs.values():  # warm-up (first-touch allocations, the data cache)
            fn()
        for _ in range(args.repeats):
            for name, fn in jobs.items():
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - t0)
    lib, ref = min(times["library"]), min(times["minimal"])
    print(f"minimal hand-written loop  {ref:7.2f} s   {ref / steps * 1e3:7.1f} ms/step")
    print(f"library (train_classifier) {lib:7.2f} s   {lib / steps * 1e3:7.1f} ms/step")
    print(f"library / minimal = {lib / ref:.3f}   [goal <= 1.05]   (fastest of {args.repeats}, interleaved)")


if __name__ == "__main__":
    main()
