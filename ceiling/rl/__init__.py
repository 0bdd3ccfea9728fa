"""The GRPO-family RLVR loop (`grpo.py`, readable top to bottom) and its checkpoint I/O (`checkpoint.py`).

Public API: `GRPOConfig`, `train(cfg, resume=False) -> Path`, the pure math (`group_advantages`, `kl_k1`,
`kl_k2`, `kl_k3`, `token_weights`, `clipped_surrogate`, `policy_loss`), and checkpoint helpers
(`list_checkpoints`, `latest_checkpoint`, `checkpoint_path`).
"""
from ceiling.rl.checkpoint import checkpoint_path, latest_checkpoint, list_checkpoints
from ceiling.rl.grpo import (
    GRPOConfig,
    clipped_surrogate,
    group_advantages,
    kl_k1,
    kl_k2,
    kl_k3,
    policy_loss,
    token_weights,
    train,
)

__all__ = [
    "GRPOConfig",
    "checkpoint_path",
    "clipped_surrogate",
    "group_advantages",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "latest_checkpoint",
    "list_checkpoints",
    "policy_loss",
    "token_weights",
    "train",
]
