"""One progress display for every long pass over data (decoding, SI, null, CCA, ablation, attacks, ...).

On a terminal, a bar that rewrites its line: done/total, rate and time left.
Off a terminal (a log file, a pipe), one plain line when the pass ends: what
was done, how many, how long. Imports nothing heavy, so that the command
lines can show it before a backend starts.

A pass whose items run passes of their own (the analysis' runs, each with
its SI pass, null, ablation, ...) is *nested*: it draws no bar, which the
inner bars would overwrite, but `announce`s each item on a line of its own
with the time left, and ends with its line. Items done without work (a
result read from a cache, a trial completed by an earlier session) are
`skip`ped: counted as done, left out of the rate and the time left.
"""

from __future__ import annotations

import shutil
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


def _terminal_width() -> int:
    """Characters a bar may take: a line as wide as the terminal wraps, and ``\\r`` then
    returns to its last row only, so the next redraw would not erase it."""
    return shutil.get_terminal_size().columns - 1


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
        nested: the items run passes with bars of their own: no bar here;
            `announce` writes one line per item instead.

    Use as a context manager (an exception ends the line with "stopped"), or
    call `close`; `update(n)` adds n items done, `skip(n)` n items done
    without work.
    """

    def __init__(self, description: str, total: Optional[int] = None, *, unit: str = "item",
                 enabled: bool = True, stream: Optional[TextIO] = None, terminal: Optional[bool] = None,
                 nested: bool = False):
        self.description = description
        self.total = None if total is None else int(total)
        self.unit = unit
        self.enabled = enabled
        self.nested = nested
        self._stream = stream
        self._terminal = terminal
        self.done = 0
        self.skipped = 0
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

    @property
    def worked(self) -> int:
        """Items done with work (not skipped): what the rate and the time left are measured on."""
        return self.done - self.skipped

    def update(self, count: int = 1) -> None:
        """Adds `count` items done; redraws the bar on a terminal (throttled)."""
        self.done += int(count)
        if not self.enabled or self.nested or not self.terminal:
            return
        now = time.monotonic()
        finished = self.total is not None and self.done >= self.total
        if finished or now - self._drawn >= _REDRAW_SECONDS:
            self._drawn = now
            self._write("\r" + self.line(_terminal_width()) + "\033[K")

    def update_to(self, done: int, total: Optional[int] = None) -> None:
        """Sets the number of items done (and the total, where it is known only now); for
        callbacks that report a running count, e.g. ``progress(done, total)``."""
        if total is not None:
            self.total = int(total)
        self.update(int(done) - self.done)

    def skip(self, count: int = 1) -> None:
        """Adds `count` items done without work (read from a cache, done before)."""
        self.skipped += int(count)
        self.update(count)

    def time_left(self) -> Optional[float]:
        """Seconds left at the rate of the items worked so far (None: unknown total or nothing worked yet)."""
        if self.total is None or self.worked <= 0:
            return None
        return self.elapsed * max(0, self.total - self.done) / self.worked

    def timing(self) -> str:
        """Time elapsed, and time left while items remain: ``"0:42 elapsed, 2:06 left"``."""
        left = self.time_left()
        text = f"{_duration(self.elapsed)} elapsed"
        return text + f", {_duration(left)} left" if left is not None and self.done < self.total else text

    def status(self) -> str:
        """Done (of total), time elapsed and left, rate; e.g. ``"3/12 runs, 0:42 elapsed, 2:06 left, 14.0 s/run"``
        (a finished pass: ``"12/12 runs, 2:48, 14.0 s/run"``)."""
        elapsed = self.elapsed
        rate = _rate(self.worked, elapsed, self.unit)
        if self.total is None or self.total <= 0:
            return f"{self.done:,} {self.unit}s, {_duration(elapsed)}, {rate}"
        running = self.time_left() is not None and self.done < self.total
        return f"{self.done:,}/{self.total:,} {self.unit}s, {self.timing() if running else _duration(elapsed)}, {rate}"

    def line(self, width: Optional[int] = None) -> str:
        """The current state as one line (no newline): the bar on a terminal, without it elsewhere.

        Args:
            width: at most this many characters (a terminal's): the
                description is shortened first, then the bar left out.
        """
        status = self.status()
        if not self.terminal or self.nested or self.total is None or self.total <= 0:
            return f"{self.description}: {status}"
        filled = int(round(min(1.0, self.done / self.total) * _BAR_WIDTH))
        bar = "[" + "=" * filled + "." * (_BAR_WIDTH - filled) + "] "
        line = f"{self.description}: {bar}{status}"
        if width is None or len(line) <= width:
            return line
        for rest in (f": {bar}{status}", f": {status}"):
            keep = width - len(rest)
            if len(self.description) <= keep:
                return self.description + rest
            if keep >= 3 + 12:  # enough of the description to recognize the pass
                return self.description[: keep - 3] + "..." + rest
        return f"{self.description}: {status}"[:width]

    def announce(self, label: str) -> None:
        """Writes one line naming the item about to start, e.g. ``"[3/12] runs/a0_s1 (1:10 elapsed, 5:50 left)"``.

        For a nested pass: the lines of the item's own passes follow it.
        """
        if not self.enabled:
            return
        count = f"[{self.done + 1}/{self.total}]" if self.total is not None else f"[{self.done + 1}]"
        timing = f" ({self.timing()})" if self.worked > 0 else ""
        self._write(f"{count} {label}{timing}\n")

    def close(self, stopped: bool = False) -> None:
        """Ends the display: the terminal bar gets its newline; off a terminal, one line.

        Args:
            stopped: the pass ended early (an error, an interruption): the
                line says so.
        """
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        end = ", stopped" if stopped else ""
        if self.terminal and not self.nested:
            self._write("\r" + self.line(_terminal_width() - len(end)) + end + "\033[K\n")
        else:
            self._write(self.line() + end + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or full stream must not stop the work
            pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(stopped=kind is not None)


def progress(items: Iterable[T], description: str, total: Optional[int] = None, *, unit: str = "item",
             enabled: bool = True, stream: Optional[TextIO] = None) -> Iterator[T]:
    """Yields `items`, showing a `Progress` of one item each (`total`: len(items) if it has one).

    The pass's line is written when the iteration ends, or says "stopped"
    when the generator is closed before.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(description, total, unit=unit, enabled=enabled, stream=stream) as bar:
        for item in items:
            yield item
            bar.update(1)
