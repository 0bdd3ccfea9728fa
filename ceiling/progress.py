"""Progress of long stages, so that a slow stage is never silent.

On a terminal the stages show a tqdm bar (or their own per-step line). When the output is not a terminal (a
log file, CI, `nohup`), a `Heartbeat` prints a plain line whenever nothing was reported for `every` seconds:
a 30-second evaluation of one checkpoint on a busy machine still prints a line at least every 10 seconds.

    with Heartbeat("evaluate: sampling the base") as beat:
        for ...:
            beat.now = f"evaluate: checkpoint step {step}"      # what a silent stretch is spent on
            ...
            beat.report(f"evaluate: step {step} done")          # printed now; the silence clock restarts
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

EVERY = 8.0
"""Seconds of silence after which the heartbeat speaks when the output is not a terminal (under 10 s, so that
with the thread's own wake-up delay on a loaded CPU the gap between two lines stays under 10 s)."""


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default: stderr, where progress goes) is an interactive terminal."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class Heartbeat:
    """A context manager: while open, a daemon thread prints `now` and the elapsed seconds to `stream` whenever
    nothing was printed through `report` or `beat` for `every` seconds."""

    def __init__(self, now: str, every: float | None = None, stream: TextIO | None = None, enabled: bool = True):
        self.now = now
        """What is running now, in a few words; the worker updates it."""
        self.every = EVERY if every is None else every
        """Longest silence, in seconds (default: EVERY)."""
        self.stream = stream
        """Where lines go (default: sys.stderr at the time of printing)."""
        self.enabled = enabled
        """False: print nothing (e.g. on a terminal, where a bar shows progress)."""
        self.start = self.last = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self.start = self.last = time.monotonic()
        if not self.enabled:
            return self
        self._thread = threading.Thread(target=self._watch, name="ceiling-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def beat(self) -> None:
        """Something else just printed progress: restart the silence clock."""
        with self._lock:
            self.last = time.monotonic()

    def report(self, line: str) -> None:
        """Print `line` now (when enabled) and restart the silence clock."""
        with self._lock:
            if self.enabled:
                self._print(line)
            self.last = time.monotonic()

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(timeout=max(0.05, self.last + self.every - time.monotonic())):
            with self._lock:
                now = time.monotonic()
                if now - self.last >= self.every:
                    self._print(f"{self.now} ({now - self.start:.0f} s)")
                    self.last = now
