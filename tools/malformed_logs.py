"""Malformed logs for every reader: what `ceiling.ingest.read_log` (and the fits.json loader) make of them.

    python tools/malformed_logs.py                 # 600 hypothesis-generated cases over 10 readers
    python tools/malformed_logs.py --n 60 --seed 1

Each case takes a small real log of one format (the fixtures under tests/fixtures, cut to a few dozen lines)
and damages it the way files get damaged: cut mid-line, junk bytes or a junk line inserted, a value of the
wrong type, a ragged row, a duplicated or renamed header, NUL bytes, non-UTF-8 bytes, CRLF line ends, a BOM, an
empty or blank file, lines shuffled or repeated. The reader must answer with

- a one-line `CeilingError` that names the file, and where the damage sits on one line, that line
  (`file:LINE:` / `line N` / `entry N` / `event N`), or
- a result whose frame is not empty and which says what it dropped (its `notes` or `dropped` rows): a
  damaged value that vanished without a word is a "silent loss".

Any other exception is a crash. `classify` returns the verdict of one case; tests/test_malformed_logs.py runs
>= 100 of these cases, this script >= 500 and prints the tally (exit status 1 on any failure).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ceiling.errors import CeilingError  # noqa: E402
from ceiling.ingest import read_log  # noqa: E402

FIX = ROOT / "tests" / "fixtures"


def _head(path: Path, n: int) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:n])


def _small_trl() -> bytes:
    state = json.loads((FIX / "trl" / "trainer_state.json").read_text())
    state["log_history"] = state["log_history"][:8] + state["log_history"][-1:]
    return json.dumps(state, indent=2).encode()


@dataclass(frozen=True)
class Source:
    """One reader's clean input."""

    file: str
    """File name to write (the reader may look at it)."""
    data: bytes
    """The clean bytes."""
    format: str
    """Format passed to read_log ('fits' for the fits.json loader)."""
    lines: bool = True
    """Whether the format is line-based (errors should name a line)."""


def _tensorboard() -> bytes:
    return min((FIX / "tensorboard_verl").glob("events.*")).read_bytes()


SOURCES: dict[str, Source] = {
    "csv": Source("log.csv", _head(FIX / "real_logs" / "7_3_plus_tracking_metrics.csv", 40), "csv"),
    "wandb": Source("history.csv", _head(FIX / "wandb" / "history.csv", 30), "wandb"),
    "jsonl": Source("log.jsonl", _head(FIX / "ceiling_run" / "metrics.jsonl", 10), "jsonl"),
    "verl": Source("metrics.jsonl", _head(FIX / "verl" / "metrics.jsonl", 25), "verl"),
    "verl-console": Source("console.log", _head(FIX / "verl" / "console.log", 30), "verl"),
    "trl": Source("trainer_state.json", _small_trl(), "trl"),
    "tensorboard": Source(min((FIX / "tensorboard_verl").glob("events.*")).name, _tensorboard(), "tensorboard", False),
    "run-metrics": Source("metrics.jsonl", _head(FIX / "ceiling_run" / "metrics.jsonl", 10), "ceiling"),
    "run-eval": Source("eval.csv", (FIX / "ceiling_run" / "eval.csv").read_bytes(), "ceiling"),
    "fits": Source("fits.json", b"", "fits", False),  # filled in lazily (needs a fit)
}

# values that are clearly not numbers (a cell holding them is malformed, not "not logged")
BAD_VALUES = [b"abc", b"[1, 2]", b"{}", b"1e999", b"\xff\xfe", b"-inf", b"0x1G", b"12..5", b"\"\"\"", b"true"]
KINDS = ["cut", "junk_bytes", "junk_line", "bad_value", "ragged_row", "header", "nul", "not_utf8", "crlf", "bom",
         "empty", "blank", "shuffle", "repeat", "drop_header"]
DAMAGES = {"junk_bytes", "junk_line", "bad_value", "ragged_row", "nul", "not_utf8"}
"""Kinds that damage content in place: a value they destroy must be reported (an error, a note or a dropped row)."""


def _fits_bytes() -> bytes:
    """A real fits.json (from the fixture run, small bootstrap)."""
    from ceiling.fit import fit_frame

    res = read_log(FIX / "ceiling_run", format="ceiling")
    return json.dumps(fit_frame(res.frame, n_boot=20, across=False).to_dict(), indent=2, default=str).encode()


def source(name: str) -> Source:
    src = SOURCES[name]
    if name == "fits" and not src.data:
        src = SOURCES[name] = Source(src.file, _fits_bytes(), src.format, False)
    return src


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> tuple[str, bytes, int | None]:
    """(kind, damaged bytes, 1-based line number where the damage sits when it sits on one line)."""
    kind = draw(st.sampled_from(KINDS), label="kind")
    lines = data.splitlines(keepends=True)
    n = len(lines)
    pick = lambda lo=0: draw(st.integers(lo, max(n - 1, lo)))  # noqa: E731 - a line index
    if kind == "cut":
        at = draw(st.integers(0, len(data) - 1))
        return kind, data[:at], None
    if kind == "junk_bytes":
        i = pick()
        line = lines[i]
        at = draw(st.integers(0, max(len(line) - 1, 0)))
        junk = draw(st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b))
        lines[i] = line[:at] + junk + line[at:]
        return kind, b"".join(lines), i + 1
    if kind == "junk_line":
        i = pick(1 if n > 1 else 0)
        junk = draw(st.sampled_from([b"garbage line\n", b"{\"step\": \n", b",,,,,\n", b"\x00\x01\x02\n", b"<html>\n",
                                     b"Traceback (most recent call last):\n", b"[1, 2, 3]\n", b"step,reward\n"]))
        return kind, b"".join(lines[:i] + [junk] + lines[i:]), i + 1
    if kind == "bad_value":
        i = pick(1 if n > 1 else 0)
        cells = re.split(rb"(?<=[:,=])", lines[i])  # after a separator (CSV), a colon (JSON, console) or '='
        j = draw(st.integers(1, max(len(cells) - 1, 1))) if len(cells) > 1 else 0
        cell = cells[j]
        m = re.match(rb"\s*-?[0-9][0-9.eE+-]*", cell)
        if not m:
            return kind, data, None  # nothing numeric there: the file is unchanged (still a valid case)
        cells[j] = draw(st.sampled_from(BAD_VALUES)) + cell[m.end():]
        return kind, b"".join(lines[:i] + [b"".join(cells)] + lines[i + 1:]), i + 1
    if kind == "ragged_row":
        i = pick(1 if n > 1 else 0)
        line = lines[i].rstrip(b"\r\n")
        ragged = line + b",1,2,3" if draw(st.booleans()) else line[: max(1, len(line) // 2)]
        return kind, b"".join(lines[:i] + [ragged + b"\n"] + lines[i + 1:]), i + 1
    if kind == "header":
        first = lines[0] if lines else b""
        new = draw(st.sampled_from([first.replace(b",", b",step,", 1), first.upper(), b"a,b,c\n", first.replace(b",", b";"),
                                    b"\"unclosed," + first]))
        return kind, b"".join([new] + lines[1:]), 1
    if kind == "nul":
        at = draw(st.integers(0, len(data) - 1))
        line = data[:at].count(b"\n") + 1
        return kind, data[:at] + b"\x00" * draw(st.integers(1, 64)) + data[at:], line
    if kind == "not_utf8":
        i = pick()
        lines[i] = b"\xc3\x28\xa0\xa1" + lines[i]
        return kind, b"".join(lines), i + 1
    if kind == "crlf":
        return kind, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), None
    if kind == "bom":
        return kind, b"\xef\xbb\xbf" + data, None
    if kind == "empty":
        return kind, b"", None
    if kind == "blank":
        return kind, draw(st.sampled_from([b"\n", b"   \n\n", b"\t\r\n"])), None
    if kind == "shuffle":
        return kind, b"".join(draw(st.permutations(lines))), None
    if kind == "repeat":
        idx = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=1, max_size=5))
        return kind, b"".join(lines + [lines[i] for i in idx]), None
    assert kind == "drop_header"
    return kind, b"".join(lines[1:]), None


@dataclass
class Verdict:
    """What a reader made of one damaged file."""

    reader: str
    """SOURCES key."""
    kind: str
    """The damage (KINDS)."""
    outcome: str
    """error-file-line, error-file, result, renamed-key (a damaged column name kept as the key: reported, not
    counted a failure), or a failure: crash, error-not-one-line, error-no-file, empty-result, silent-loss."""
    detail: str = ""
    """The error text, the crash, or what went missing."""

    @property
    def failed(self) -> bool:
        return self.outcome not in ("error-file-line", "error-file", "result", "renamed-key")


def _read(src: Source, path: Path):  # -> IngestResult | Fits
    if src.format == "fits":
        from ceiling.report.results import Fits

        return Fits.load(path)
    if src.format == "ceiling":
        return read_log(path.parent, format="ceiling")
    return read_log(path, format=src.format)


def _write(src: Source, folder: Path, payload: bytes) -> Path:
    """Write the case; a run-folder case gets the other run files clean beside it."""
    if src.format == "ceiling":
        for f in ("config.json", "metrics.jsonl", "eval.csv"):
            (folder / f).write_bytes((FIX / "ceiling_run" / f).read_bytes() if f != "metrics.jsonl"
                                     else SOURCES["run-metrics"].data)
    path = folder / src.file
    path.write_bytes(payload)
    return path


def _cells(res) -> dict[tuple[int, str], float]:  # IngestResult -> {(step, source_key): value}
    f = res.frame
    return {(int(s), str(k)): float(v) for s, k, v in f[["step", "source_key", "value"]].itertuples(index=False)}


_CLEAN: dict[str, object] = {}


def _clean(name: str):
    if name not in _CLEAN:
        src = source(name)
        with tempfile.TemporaryDirectory() as tmp:
            _CLEAN[name] = _read(src, _write(src, Path(tmp), src.data))
    return _CLEAN[name]


def _names_line(text: str, file: str) -> bool:
    return bool(re.search(rf"{re.escape(file)}:\d+|\b(line|lines|entry|event|record|row) \d+", text))


def classify(name: str, kind: str, payload: bytes, line: int | None) -> Verdict:
    """Read one damaged file and judge the outcome (never raises)."""
    src = source(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(src, Path(tmp), payload)
        try:
            res = _read(src, path)
        except CeilingError as exc:
            text = str(exc)
            if "\n" in text or not text.strip():
                return Verdict(name, kind, "error-not-one-line", repr(text))
            if src.file not in text and str(path.parent) not in text:
                return Verdict(name, kind, "error-no-file", text)
            named = _names_line(text, src.file)
            return Verdict(name, kind, "error-file-line" if named else "error-file", text)
        except Exception as exc:  # noqa: BLE001 - this is what the campaign looks for
            tb = traceback.extract_tb(exc.__traceback__)
            where = next((f"{Path(f.filename).relative_to(ROOT)}:{f.lineno}" for f in reversed(tb)
                          if f.filename.startswith(str(ROOT / "ceiling"))), "?")
            return Verdict(name, kind, "crash", f"{exc.__class__.__name__}: {exc} (at {where})")
    if src.format == "fits":
        return Verdict(name, kind, "result")
    if res.frame.empty:
        return Verdict(name, kind, "empty-result", "; ".join(res.notes))
    if kind in DAMAGES and line is not None:
        clean = _clean(name)
        now, before = _cells(res), _cells(clean)
        lost = [k for k in before if k not in now]
        said = len(res.dropped) > len(clean.dropped) or len(res.notes) > len(clean.notes)
        if lost and not said:
            new_keys = {k for _, k in now} - {k for _, k in before}
            moved = [(s, k) for s, k in lost if any(now.get((s, n)) == before[(s, k)] for n in new_keys)]
            if len(moved) == len(lost):  # a damaged column name: the values are there, under the damaged name
                return Verdict(name, kind, "renamed-key", f"{len(lost)} values kept under a damaged key, "
                                                          f"e.g. {sorted(new_keys)[0]!r}, without a note")
            return Verdict(name, kind, "silent-loss", f"{len(lost)} values gone without a note, e.g. {lost[0]}")
    return Verdict(name, kind, "result")


def readers() -> list[str]:
    return list(SOURCES)


def tally(verdicts: list[Verdict]) -> str:
    lines = [f"{len(verdicts)} malformed files over {len({v.reader for v in verdicts})} readers, "
             f"{len({v.kind for v in verdicts})} kinds of damage; {sum(v.failed for v in verdicts)} failures"]
    for r in readers():
        mine = [v for v in verdicts if v.reader == r]
        if mine:
            c = Counter(v.outcome for v in mine)
            lines.append(f"  {r:13s} {len(mine):4d}: " + ", ".join(f"{k} {n}" for k, n in c.most_common()))
    file_only = Counter(re.sub(r"\d+", "N", v.detail.split(": ", 1)[-1])[:100] for v in verdicts
                        if v.outcome == "error-file")
    if file_only:
        lines.append("  errors naming the file but no line, most common: "
                     + " | ".join(f"{m} ({n})" for m, n in file_only.most_common(5)))
    for v in [v for v in verdicts if v.failed][:25]:
        lines.append(f"  FAIL {v.reader} / {v.kind}: {v.outcome}: {v.detail[:240]}")
    return "\n".join(lines)


def campaign(n: int, seed: int) -> list[Verdict]:
    """n hypothesis-generated cases, spread evenly over the readers."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    out: list[Verdict] = []
    names = readers()
    for i, name in enumerate(names):
        count = n // len(names) + (1 if i < n % len(names) else 0)

        @hseed(seed * 1000 + i)
        @settings(max_examples=count, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=("generate",))
        @given(case=damaged(source(name).data))
        def one(case: tuple[str, bytes, int | None]) -> None:
            out.append(classify(name, *case))

        before = len(out)
        one()
        print(f"  {name}: {len(out) - before} cases", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="number of cases (spread over the readers)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    verdicts = campaign(args.n, args.seed)
    print(tally(verdicts))
    print(f"{len(verdicts)} cases, {sum(v.failed for v in verdicts)} failures, {time.perf_counter() - t0:.0f} s")
    return 1 if any(v.failed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
