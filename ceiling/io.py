"""Atomic file I/O: nothing is ever half-written after a crash.

- `atomic_write_text` / `atomic_write_json` / `atomic_write_bytes`: write to a temporary name in the same
  folder, fsync, then `os.replace` (atomic on POSIX).
- `atomic_dir`: build a whole folder under a temporary name and rename it into place at the end.
- `append_jsonl`: append one complete JSON line (a single write + fsync); `read_jsonl` ignores a trailing
  partial line and `repair_jsonl` cuts it off before a resumed run appends.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ceiling.errors import error_at


def _plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays and Paths to builtins, and NaN/inf to None (standard JSON)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalar or array, torch tensor
        return _plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """JSON text with NaN/inf written as null and numpy/torch values converted."""
    return json.dumps(_plain(obj), indent=indent, allow_nan=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: str | Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give them the usual umask-based modes."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish_mode(tmp, is_dir=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, dumps(obj, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename.

    On any exception the temporary folder is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _publish_mode(tmp, is_dir=True)
        for root, dirs, files in os.walk(tmp):
            for name in dirs:
                _publish_mode(os.path.join(root, name), is_dir=True)
            for name in files:
                if os.stat(os.path.join(root, name)).st_mode & 0o077 == 0:  # private temp files inside
                    _publish_mode(os.path.join(root, name), is_dir=False)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON object as one line, in a single write followed by fsync."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (dumps(record) + "\n").encode("utf-8")
    with open(path, "ab") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def repair_jsonl(path: str | Path) -> int:
    """Cut off a trailing partial line (left by a crash mid-write). Returns the number of bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
    return len(data) - keep


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file; a missing or malformed file is a one-line CeilingError naming it (and the line)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error_at(path, f"{what} not found (no such file)") from None
    except IsADirectoryError:
        raise error_at(path, f"{what} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise error_at(path, f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise error_at(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from None


def read_jsonl(path: str | Path, strict: bool = True) -> list[dict]:
    """Read complete JSON lines; a final line without newline is a crash remnant and is skipped.

    A malformed complete line raises a CeilingError naming the file and line (or is skipped if not strict).
    """
    path = Path(path)
    out: list[dict] = []
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        lines = lines[:-1]  # trailing partial line
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            if strict:
                raise error_at(path, f"malformed JSON line ({exc.__class__.__name__})", line=i) from None
            continue
        out.append(obj)
    return out
