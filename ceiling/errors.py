"""User-facing errors: one line that names the file, line or field."""
from __future__ import annotations

from pathlib import Path


class CeilingError(Exception):
    """An error the user can cause and fix. The CLI prints it as one line, without a traceback."""


def error_at(path: str | Path | None, message: str, line: int | None = None, field: str | None = None) -> CeilingError:
    """Build a CeilingError whose text reads `file:line: field 'x': message` (parts omitted when unknown)."""
    where = ""
    if path is not None:
        where = str(path)
        if line is not None:
            where += f":{line}"
        where += ": "
    if field is not None:
        where += f"field {field!r}: "
    text = (where + message).replace("\n", " ")
    return CeilingError(text)
