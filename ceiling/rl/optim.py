"""AdamW for the RL loop: torch.optim.AdamW's arithmetic, without torch.optim's import cost.

Why not `torch.optim.AdamW`: constructing any `torch.optim.Optimizer` imports `torch._dynamo`, about 75 MB
of resident memory. On the tiny bases that is a fifth of the loop's whole footprint (model, reference,
activations and all), for no use: the loop never compiles. The update below is the one of
`torch.optim.AdamW(foreach=False)` (decoupled weight decay, bias-corrected moments, eps added to the
corrected root of the second moment), operation for operation, so the two give bitwise equal parameters
(tested). `state_dict()` has torch's layout (`state[i]` = {"step", "exp_avg", "exp_avg_sq"}, numbered
param groups), so checkpoints written with either optimizer load into the other.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

HYPER = ("lr", "betas", "eps", "weight_decay")


def adamw_update(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                 exp_avg_sqs: list[torch.Tensor], steps: list[float], lr: float, beta1: float, beta2: float,
                 eps: float, weight_decay: float) -> None:
    """One AdamW update of each tensor in `params`, in place (steps count from 1, already incremented).

    Multi-tensor (`torch._foreach_*`: a few calls for all parameters instead of a few per parameter); each
    element gets exactly the operations of torch's single-tensor AdamW, in the same order."""
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    step_sizes = [-lr / (1 - beta1**s) for s in steps]
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, [(1 - beta2**s) ** 0.5 for s in steps])
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)


class AdamW:
    """AdamW over one parameter group, with the optimizer interface the loop and checkpoints use:
    `param_groups` (set `lr` there), `zero_grad`, `step`, `state_dict`, `load_state_dict`."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.param_groups: list[dict[str, Any]] = [
            {"params": list(params), "lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = []
            for p in params:
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {
                        "step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
                state["step"] += 1
                states.append(state)
            adamw_update(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states], [float(s["step"]) for s in states],
                         group["lr"], beta1, beta2, group["eps"], group["weight_decay"])

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: parameters numbered in group order; hyper-parameters per group."""
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        groups, start = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append({**{k: g[k] for k in HYPER}, "params": list(range(start, start + n))})
            start += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a `state_dict` of this class or of `torch.optim.AdamW` (same parameters, same order)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError("optimizer state does not match the parameters")
        params = self._params()
        for g, own in zip(groups, self.param_groups):
            for k in HYPER:
                if k in g:
                    own[k] = tuple(g[k]) if k == "betas" else g[k]
        self.state = {}
        for idx, s in state_dict["state"].items():
            p = params[int(idx)]
            self.state[p] = {
                "step": torch.as_tensor(s["step"], dtype=torch.float32).clone(),
                "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone(),
            }
