"""Small statistical primitives shared by pretrain and evaluate (no model code here)."""
from __future__ import annotations

import numpy as np


def pass_at_k(n: int | np.ndarray, c: int | np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), vectorised over problems.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k / i), which is exact and stable for large n.
    Requires k <= n; returns 1.0 where n - c < k.
    """
    n_arr = np.atleast_1d(np.asarray(n, dtype=np.int64))
    c_arr = np.atleast_1d(np.asarray(c, dtype=np.int64))
    n_arr, c_arr = np.broadcast_arrays(n_arr, c_arr)
    if k < 1 or np.any(k > n_arr):
        raise ValueError(f"pass@k needs 1 <= k <= n (k={k}, min n={int(n_arr.min())})")
    if np.any((c_arr < 0) | (c_arr > n_arr)):
        raise ValueError("pass@k needs 0 <= c <= n")
    out = np.empty(n_arr.shape, dtype=np.float64)
    for idx, (ni, ci) in enumerate(zip(n_arr.ravel(), c_arr.ravel())):
        if ni - ci < k:
            out.flat[idx] = 1.0
        else:
            i = np.arange(ni - ci + 1, ni + 1, dtype=np.float64)
            out.flat[idx] = 1.0 - np.prod(1.0 - k / i)
    return out
