"""One progress display for every long pass over data (decoding, SI, null, CCA, ablation, attacks, ...).

On a terminal, a bar that rewrites its line: done/total, rate and time left.
Off a terminal (a log file, a pipe), one plain line when the pass ends: what
was done, how many, how long. Imports nothing heavy, so that the command
lines can show it before a backend starts.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, Optional, TextIO, TypeVar

__all__ = ["Progress", "progress"]

T = TypeVar("T")

# Redraw a terminal bar at most this often: a pass may call `update` per
# batch of a few images, and each redraw is a write to the terminal.
_REDRAW_SECONDS = 0.1
_BAR_WIDTH = 24


def _is_terminal(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _rate(count: float, seconds: float, unit: str) -> str:
    if seconds <= 0 or count <= 0:
        return f"- {unit}s/s"
    per_second = count / seconds
    if per_second >= 1:
        return f"{per_second:,.1f} {unit}s/s" if per_second < 100 else f"{per_second:,.0f} {unit}s/s"
    return f"{seconds / count:,.1f} s/{unit}"


class Progress:
    """Progress of one named pass over `total` items.

    Args:
        description: what the pass does, e.g. ``"Decoding test images"``.
        total: number of items, or None when unknown (no bar, no time left).
        unit: what an item is, singular (``"image"``, ``"run"``, ``"unit"``).
        enabled: False shows nothing (verbose 0).
        stream: where to write (default: ``sys.stdout``, read when writing).
        terminal: force the terminal (True) or the plain-line (False) form;
            default: whether `stream` is a terminal.

    Use as a context manager, or call `close`; `update(n)` adds n items done.
    """

    def __init__(self, description: str, total: Optional[int] = None, *, unit: str = "item",
                 enabled: bool = True, stream: Optional[TextIO] = None, terminal: Optional[bool] = None):
        self.description = description
        self.total = None if total is None else int(total)
        self.unit = unit
        self.enabled = enabled
        self._stream = stream
        self._terminal = terminal
        self.done = 0
        self._start = time.monotonic()
        self._drawn = 0.0
        self._closed = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def terminal(self) -> bool:
        return _is_terminal(self.stream) if self._terminal is None else self._terminal

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def update(self, count: int = 1) -> None:
        """Adds `count` items done; redraws the bar on a terminal (throttled)."""
        self.done += int(count)
        if not self.enabled or not self.terminal:
            return
        now = time.monotonic()
        finished = self.total is not None and self.done >= self.total
        if finished or now - self._drawn >= _REDRAW_SECONDS:
            self._drawn = now
            self._write("\r" + self.line() + "\033[K")

    def line(self) -> str:
        """The current state as one line (no newline)."""
        elapsed = self.elapsed
        rate = _rate(self.done, elapsed, self.unit)
        if self.total is None or self.total <= 0:
            return f"{self.description}: {self.done:,} {self.unit}s, {_duration(elapsed)}, {rate}"
        fraction = min(1.0, self.done / self.total)
        filled = int(round(fraction * _BAR_WIDTH))
        bar = "=" * filled + "." * (_BAR_WIDTH - filled)
        if 0 < self.done < self.total:
            timing = f"{_duration(elapsed)} elapsed, {_duration(elapsed * (self.total - self.done) / self.done)} left"
        else:
            timing = f"{_duration(elapsed)}"
        return f"{self.description}: [{bar}] {self.done:,}/{self.total:,} {self.unit}s, {timing}, {rate}"

    def close(self) -> None:
        """Ends the display: the terminal bar gets its newline; off a terminal, one line."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self.terminal:
            self._write("\r" + self.line() + "\033[K\n")
        else:
            self._write(self.line().replace(f"[{'=' * _BAR_WIDTH}] ", "") + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or full stream must not stop the work
            pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(items: Iterable[T], description: str, total: Optional[int] = None, *, unit: str = "item",
             enabled: bool = True, stream: Optional[TextIO] = None) -> Iterator[T]:
    """Yields `items`, showing a `Progress` of one item each (`total`: len(items) if it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(description, total, unit=unit, enabled=enabled, stream=stream) as bar:
        for item in items:
            yield item
            bar.update(1)
