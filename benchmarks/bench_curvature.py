"""Cost of the curvature measurements relative to one training step (issue 5's "Measured").

Prints, in one run, on a plain (no skip connections) conv net with batch norm and a CIFAR-sized
batch of 128 *random* images:

* the time of one training step (forward, backward, SGD step with momentum),
* the time of one ``LossHessian(...).curvature()`` (loss, g^T g, g^T H g) and of one
  ``LossHessian(...).top_eigenvalue()`` (Lanczos, at most 20 Hessian-vector products), each with
  its forward and backward, and their ratios to a
  training step (goals: g^T H g <= 3 steps; top eigenvalue within 1% in <= 20 products),
* the number of products the eigenvalue estimate used and its relative error against a long
  Lanczos run (a different start vector; up to 100 products, stopping early once its rigorous
  residual bound is below 1e-7 relative, which on this network takes about 30-40).

This script is about compute cost. The images and labels are Gaussian noise and the network is
freshly initialised, so the curvature values themselves mean nothing, and the eigenvalue accuracy
seen here (a fresh network's spectrum) is only indicative of trained ones: the chapter measures on
CIFAR-10 along real training runs.

Usage: ``python benchmarks/bench_curvature.py [--depth 13] [--device cuda] [--threads 1]``.
The default run takes about a minute on 2 CPU cores. On a shared machine, ``--threads 1`` gives
steadier ratios (two OpenMP threads on two busy cores are slowed down unevenly).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from lossdecay_lib.curvature import LossHessian


def plain_bn_convnet(depth: int = 13, widths=(16, 32, 64), num_classes: int = 10) -> nn.Sequential:
    """``depth`` 3x3 conv-BN-ReLU layers (a stem plus equal stages at ``widths``, stride 2 between
    stages), global average pooling and a linear classifier. No skip connections."""
    per_stage = max(1, (depth - 1) // len(widths))
    layers, channels = [], 3
    blocks = [(widths[0], 1)]  # the stem
    for stage, width in enumerate(widths):
        blocks += [(width, 2 if stage > 0 and i == 0 else 1) for i in range(per_stage)]
    for width, stride in blocks:
        conv = nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False)
        layers += [conv, nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def fastest_interleaved(functions: dict, repeats: int, device: torch.device) -> dict:
    """Fastest of ``repeats`` timed calls of each function, after one warm-up call each.

    The calls are interleaved (a, b, c, a, b, c, ...) and the minimum is kept, so that load from
    other processes on a shared machine inflates neither the step nor the measurement alone.
    """
    for fn in functions.values():
        fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            times[name].append(timed(fn, device))
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=13, help="number of conv layers")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-hvps", type=int, default=20, help="Lanczos budget of the estimate")
    parser.add_argument("--rtol", type=float, default=1e-5, help="Lanczos relative tolerance")
    parser.add_argument("--reference-iterations", type=int, default=100, help="most products of the reference")
    parser.add_argument("--reference-rtol", type=float, default=1e-7, help="tolerance of the reference run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the step and of g^T H g (min kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(args.seed)
    model = plain_bn_convnet(args.depth).to(device)
    inputs = torch.randn(args.batch_size, 3, 32, 32, device=device)
    targets = torch.randint(10, (args.batch_size,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    n_params = sum(p.numel() for p in model.parameters())
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    where = f"{torch.get_num_threads()} CPU threads" if device.type == "cpu" else str(device)
    print(f"torch {torch.__version__}, {where}; plain conv net with BN: "
          f"{n_convs} conv layers, widths 16/32/64, {n_params:,} parameters; "
          f"batch of {args.batch_size} random 3x32x32 images (cost only)")

    model.train()

    def training_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()

    fastest = fastest_interleaved({
        "step": training_step,
        "curvature": lambda: LossHessian(model, inputs, targets).curvature(),
        "running": lambda: LossHessian(model, inputs, targets, bn_stats="running").curvature(),
    }, args.repeats, device)
    step_s, curvature_s, running_s = fastest["step"], fastest["curvature"], fastest["running"]
    m = LossHessian(model, inputs, targets).curvature()

    results = {}
    eigen_s = timed(lambda: results.setdefault("estimate", LossHessian(model, inputs, targets).top_eigenvalue(
        max_iterations=args.max_hvps, rtol=args.rtol)), device)
    reference_s = timed(lambda: results.setdefault("reference", LossHessian(model, inputs, targets).top_eigenvalue(
        max_iterations=args.reference_iterations, rtol=args.reference_rtol, seed=args.seed + 1)), device)
    estimate, reference = results["estimate"], results["reference"]
    exact = reference.value

    def error(value: float) -> float:
        return abs(value - exact) / abs(exact)

    print(f"training step (fwd, bwd, SGD)        {step_s * 1e3:8.1f} ms   1.00 steps")
    print(f"g^T g + g^T H g (.curvature())       {curvature_s * 1e3:8.1f} ms  {curvature_s / step_s:5.2f} steps"
          f"   [goal <= 3]")
    print(f"  same, bn_stats='running' (eval)    {running_s * 1e3:8.1f} ms  {running_s / step_s:5.2f} steps")
    print(f"top eigenvalue (Lanczos, rtol {args.rtol:g})   {eigen_s * 1e3:8.1f} ms  {eigen_s / step_s:5.2f} steps"
          f"   {estimate.hvp_count} HVPs, converged={estimate.converged}")
    print(f"  per HVP (all costs included)      {eigen_s / estimate.hvp_count * 1e3:8.1f} ms  "
          f"{eigen_s / estimate.hvp_count / step_s:5.2f} steps")
    print(f"reference: {reference.hvp_count} Lanczos iterations (other start vector, rtol {args.reference_rtol:g}) "
          f"in {reference_s:.1f} s: lambda_max = {exact:.6g}, residual bound {reference.residual_norm:.2g}")
    print(f"estimate: lambda_max = {estimate.value:.6g} after {estimate.hvp_count} HVPs, "
          f"relative error {error(estimate.value):.2e}   [goal < 1e-2 in <= 20 HVPs], "
          f"residual bound {estimate.residual_norm:.2g}")
    marks = [k for k in (5, 10, 15, 20, 25) if k <= len(reference.history)]
    print("reference run's error after k HVPs:  " + ", ".join(
        f"k={k}: {error(reference.history[k - 1]):.1e}" for k in marks))
    print(f"(g^T g = {m.grad_dot_grad:.4g}, g^T H g = {m.grad_hessian_grad:.4g}, "
          f"directional curvature = {m.directional_curvature:.4g} <= lambda_max)")


if __name__ == "__main__":
    main()
