"""One style for every config dataclass (`GRPOConfig`, `EvalConfig`, the pretraining specs).

A config is a dataclass whose fields are typed, each followed by a one-line string, its doc (an attribute
docstring). `__post_init__` validates, raising `error_at(None, message, field=name)`. This module reads the
docs (for `--help`), builds a config from a JSON object or from command-line flags by each field's type
(`typing.get_type_hints`: bool, int, float, str, tuple[int, ...], and X | None), and writes it back as JSON.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from ceiling.errors import CeilingError, error_at

C = TypeVar("C")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's doc: the string right under its annotation in the class body ({} when there is no source)."""
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body  # type: ignore[attr-defined]
    except (OSError, TypeError):
        return {}
    return {node.target.id: " ".join(doc.value.value.split()) for node, doc in zip(body, body[1:])
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}


def _inner(tp: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, else (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def parse_value(value: Any, tp: Any, name: str, where: str | Path | None = None) -> Any:
    """`value` (from JSON) checked against the type `tp` of field `name`; a mismatch is a one-line error."""
    inner, optional = _inner(tp)
    if value is None and optional:
        return None
    try:
        if inner is bool and isinstance(value, bool):
            return value
        if inner is int and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        if inner is float and not isinstance(value, bool):
            return float(value)
        if inner is str and isinstance(value, str):
            return value
        if typing.get_origin(inner) is tuple and isinstance(value, (list, tuple)):
            return tuple(parse_value(v, typing.get_args(inner)[0], name, where) for v in value)
    except (TypeError, ValueError, OverflowError):
        pass
    raise error_at(where, f"expected {getattr(inner, '__name__', inner)}, got {value!r}", field=name)


def from_dict(cls: type[C], data: Any, where: str | Path | None = None,
              renamed: dict[str, str] | None = None) -> C:
    """A `cls` from a JSON object: each value checked against its field's type, unknown keys refused, old
    field names (`renamed`, old -> new) accepted. Errors name `where` (a file) and the field."""
    if not isinstance(data, dict):
        raise error_at(where, "settings must be a JSON object")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        name = (renamed or {}).get(key, key)
        if name not in names:
            raise error_at(where, f"unknown setting (known: {', '.join(names)})", field=key)
        kwargs[name] = parse_value(value, hints[name], key, where)
    try:
        return cls(**kwargs)
    except CeilingError as exc:  # __post_init__'s one-line error, now naming the file
        raise (CeilingError(f"{where}: {exc}") if where is not None else exc) from None


def to_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON object, fields in declaration order (tuples as lists)."""
    return {f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
            for f in dataclasses.fields(config)}


def _cli_type(tp: Any) -> Any:
    """How a flag's text becomes a value of type `tp` (a tuple of ints is written 1,8,64)."""
    if typing.get_origin(tp) is tuple:
        def items(text: str) -> tuple[int, ...]:
            try:
                return tuple(int(k) for k in text.split(",") if k.strip())
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
        return items
    return tp


def add_flags(parser: Any, cls: type, names: Iterable[str] | None = None,
              defaults: dict[str, Any] | str | None = None) -> None:
    """One flag `--field-name` per field of `cls` (or per name in `names`), its help the field's doc and the
    default: the field's, the one in `defaults` (a dict), or the text `defaults`. A flag not given sets
    nothing: read the given ones with `given_flags`."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names or fields:
        if isinstance(defaults, str):
            shown = defaults
        else:
            shown = f"default: {(defaults or {}).get(name, fields[name].default)}"
        text = (f"{docs.get(name, '').rstrip('.')} ({shown})").replace("%", "%%")
        flag, inner = "--" + name.replace("_", "-"), _inner(hints[name])[0]
        if inner is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, dest=name, type=_cli_type(inner), default=argparse.SUPPRESS,
                                metavar=name.upper(), help=text)


def given_flags(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` that were given as flags (see `add_flags`)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
