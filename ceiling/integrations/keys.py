"""Logged metric keys -> the monitor's streams, with the key tables `ceiling fit` uses for the same logs."""
from __future__ import annotations

from typing import Any

from ceiling.ingest.core import check_mapping
from ceiling.ingest.mappings import resolve_keys

METRIC_STREAMS = {"verified/reward": "reward", "verified/eval_acc": "eval", "unverified/score": "unverified",
                  "policy/entropy": "entropy", "length/mean": "length", "diversity/duplicate_share": "duplicates"}
"""Canonical metric -> monitor stream (any `kl/...` metric is the `kl` stream)."""


class KeyMap:
    """Maps the keys of successive log records to monitor streams (`ceiling.ingest.mappings` tables of `fmt`;
    the user's mapping wins, as with `ceiling fit`'s mapping flags)."""

    def __init__(self, fmt: str, mapping: dict[str, str] | None = None, eval_n: int | None = None,
                 skip_prefix: str | None = None) -> None:
        self.fmt = fmt
        self.user = check_mapping(mapping)
        self.eval_n = eval_n
        self.skip_prefix = skip_prefix
        self.keys: list[str] = []  # every logged key seen, in first-seen order
        self.mapped: dict[str, str] = {}  # logged key -> canonical metric

    def values(self, logs: dict[str, Any]) -> dict[str, Any]:
        """The monitor streams in one record: {stream: value, or (value, n) for the held-out accuracy}."""
        new = [k for k in logs if k not in self.keys and not (self.skip_prefix and k.startswith(self.skip_prefix))]
        if new:
            self.keys.extend(new)
            self.mapped, _ = resolve_keys(self.keys, self.fmt, self.user)
        out: dict[str, Any] = {}
        for key, metric in self.mapped.items():
            if key not in logs:
                continue
            try:
                value = float(logs[key])
            except (TypeError, ValueError):
                continue
            stream = "kl" if metric.startswith("kl/") else METRIC_STREAMS.get(metric)
            if stream is None or stream in out:
                continue
            out[stream] = (value, float(self.eval_n)) if stream == "eval" and self.eval_n else value
        return out
