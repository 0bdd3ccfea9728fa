"""The built-in families by name."""
from __future__ import annotations

from ceiling.errors import CeilingError
from ceiling.tasks.core import TaskFamily
from ceiling.tasks.countdown import Countdown
from ceiling.tasks.families import Add, Count, Mod, Mul, Parity, Cipher, Sort, Sub

FAMILIES: dict[str, TaskFamily] = {f.name: f for f in (Add(), Sub(), Mul(), Mod(), Sort(), Count(), Parity(), Countdown(), Cipher())}
"""Every built-in family, by name: add, sub, mul, mod, sort, count, parity, countdown."""


def get_family(name: str) -> TaskFamily:
    """The built-in family called `name`; a CeilingError lists the known names otherwise."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise CeilingError(f"unknown task family {name!r}; known: {', '.join(FAMILIES)}") from None
