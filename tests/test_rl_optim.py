"""ceiling.rl.optim.AdamW against torch.optim.AdamW: same parameters bit for bit, interchangeable states."""
from __future__ import annotations

import copy

import torch

from ceiling.rl.optim import AdamW


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def train(model: torch.nn.Module, opt, steps: range) -> None:
    for s in steps:
        x = torch.randn(4, 5, generator=torch.Generator().manual_seed(s))
        opt.zero_grad(set_to_none=True)
        model(x).pow(2).sum().backward()
        opt.step()


def test_adamw_matches_torch_bit_for_bit():
    kw = dict(lr=3e-2, betas=(0.9, 0.99), weight_decay=0.1)
    a, b = net(), net()
    ta = torch.optim.AdamW(a.parameters(), foreach=False, **kw)
    ob = AdamW(b.parameters(), **kw)
    train(a, ta, range(7))
    train(b, ob, range(7))
    moved = False
    for p, q, p0 in zip(a.parameters(), b.parameters(), net().parameters()):
        assert torch.equal(p, q)
        moved |= not torch.equal(p, p0)
    assert moved


def test_state_dicts_load_across_implementations():
    kw = dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=0.05)
    a = net()
    ta = torch.optim.AdamW(a.parameters(), foreach=False, **kw)
    train(a, ta, range(3))
    b = copy.deepcopy(a)
    ob = AdamW(b.parameters(), lr=1.0)  # hyper-parameters come from the loaded state
    ob.load_state_dict(ta.state_dict())
    assert ob.param_groups[0]["betas"] == (0.8, 0.95) and ob.param_groups[0]["lr"] == 1e-2
    train(a, ta, range(3, 6))
    train(b, ob, range(3, 6))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = copy.deepcopy(b)  # and back: ours -> torch
    tc = torch.optim.AdamW(c.parameters(), foreach=False, lr=1.0)
    tc.load_state_dict(copy.deepcopy(ob.state_dict()))  # torch keeps the given tensors; do not share them
    train(b, ob, range(6, 8))
    train(c, tc, range(6, 8))
    for p, q in zip(b.parameters(), c.parameters()):
        assert torch.equal(p, q)


def test_zero_grad_and_skipped_parameters():
    m = net()
    opt = AdamW(m.parameters(), lr=1e-2)
    frozen = m[2].bias
    frozen.requires_grad_(False)
    before = frozen.clone()
    train(m, opt, range(2))
    assert torch.equal(frozen, before) and frozen not in opt.state  # no gradient, no update, no state
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is None or not p.grad.any() for p in m.parameters())
