"""Optimizers by name, and the one momentum form torch does not ship.

PyTorch's SGD keeps the learning rate *outside* the momentum buffer (``v = mu v + g; p -= lr v``).
Polyak's heavy ball, as many papers and Sutskever et al. (2013) write it, keeps it *inside*
(``v = mu v + lr g; p -= v``). With a constant learning rate the two are the same method; with a
learning rate or a loss weight that changes over training they are not, and which one is used decides
whether loss decay equals learning-rate decay (chapter "Loss decay or learning-rate decay?").

:class:`ShadowAdam` is Adam's moment averages kept beside a run (the one place they are written
outside torch): it measures what a loss weight did to Adam's steps (pix2pix, :mod:`.equivalence`).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch

__all__ = ["HeavyBallSGD", "ShadowAdam", "OPTIMIZERS", "build_optimizer", "check_optimizer_name"]


class HeavyBallSGD(torch.optim.Optimizer):
    """SGD with heavy-ball momentum, learning rate inside the velocity (Polyak 1964).

    ``v <- momentum * v + lr * (g + weight_decay * p)``; ``p <- p - v``.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or not 0.0 <= momentum < 1.0 or weight_decay < 0:
            raise ValueError(f"invalid HeavyBallSGD settings: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["weight_decay"]:
                    d = d.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(group["momentum"]).add_(d, alpha=group["lr"])
                p.sub_(v)
        return loss


def _sgd(params, lr, momentum=0.0, weight_decay=0.0, **kw):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kw)


def _sgd_schedule_free(params, lr, momentum=0.9, weight_decay=0.0, warmup_steps=0, **kw):
    """Schedule-Free SGD (Defazio et al. 2024), from the ``schedulefree`` package: no learning-rate
    schedule at all. Needs ``optimizer.train()``/``optimizer.eval()`` around training and evaluation."""
    try:
        import schedulefree
    except ImportError:
        raise ImportError("Schedule-Free SGD needs the 'schedulefree' package: pip install schedulefree") from None
    return schedulefree.SGDScheduleFree(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                        warmup_steps=warmup_steps, **kw)


OPTIMIZERS: Dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "sgd_schedule_free": _sgd_schedule_free,
    "heavy_ball_sgd": HeavyBallSGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def _torch_optimizer(name: str):
    cls = getattr(torch.optim, name, None)
    if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
        return cls
    return None


def check_optimizer_name(name: str) -> None:
    """Accept a name of :data:`OPTIMIZERS` or any ``torch.optim`` class (e.g. ``"RMSprop"``)."""
    if name not in OPTIMIZERS and _torch_optimizer(name) is None:
        raise ValueError(
            f"unknown optimizer {name!r}; valid optimizers: {', '.join(sorted(OPTIMIZERS))}, "
            "or the name of any torch.optim class (e.g. 'RMSprop')"
        )


def build_optimizer(name: str, params: Iterable, **settings) -> torch.optim.Optimizer:
    """An optimizer from its name; an unknown name is an error that lists the valid ones."""
    check_optimizer_name(name)
    factory = OPTIMIZERS.get(name) or _torch_optimizer(name)
    return factory(params, **settings)


class ShadowAdam:
    """Adam's moment averages of the gradients it is fed, and the step they would make.

    :meth:`update` takes this step's gradients (times ``scale``, e.g. ``1/w`` to undo a loss weight);
    :meth:`step_direction` is the update that Adam (``lr``, ``betas``, ``eps``) would subtract from the
    parameters with them. Everything stays on the device. ``state_dict``/``load_state_dict`` make a
    resumed run identical to an uninterrupted one.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: Tuple[float, float],
                 eps: float = 1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def update(self, grads: Sequence[torch.Tensor], scale: float = 1.0) -> None:
        """Feed ``scale * grads`` into the moment averages."""
        self.t += 1
        g = torch._foreach_mul(list(grads), scale) if scale != 1.0 else list(grads)
        torch._foreach_mul_(self.m, self.b1)
        torch._foreach_add_(self.m, g, alpha=1 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, g, g, value=1 - self.b2)

    @torch.no_grad()
    def step_direction(self) -> List[torch.Tensor]:
        """``lr m_hat / (sqrt(v_hat) + eps)``, per parameter."""
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, c2**0.5)
        torch._foreach_add_(denom, self.eps)
        out = torch._foreach_div(self.m, denom)
        torch._foreach_mul_(out, self.lr / c1)
        return out

    def state_dict(self) -> Dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: Dict) -> None:
        for mine, saved in ((self.m, state["m"]), (self.v, state["v"])):
            for a, b in zip(mine, saved):
                a.copy_(b)
        self.t = int(state["t"])
