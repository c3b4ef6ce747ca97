"""Signals: SIGTERM handled as Ctrl-C is, and signals held back around a step that must finish.

A command interrupted by Ctrl-C (SIGINT, Python's `KeyboardInterrupt`) or
asked to stop by SIGTERM (a scheduler, ``kill``) unwinds the same way:
`finally` blocks and ``except BaseException`` clean-ups run, and the command
prints one line. `stop_on_signals` makes SIGTERM raise `Terminated`, a
`KeyboardInterrupt`, so that every clean-up written for Ctrl-C serves both,
and remembers each interruption: Python drops an exception raised inside a
garbage-collection callback or a ``__del__`` (it prints "Exception
ignored"), so a Ctrl-C that lands there would be lost; a long loop calls
`raise_if_interrupted` between its steps to raise it again.

`signals_held` keeps SIGINT and SIGTERM from interrupting a short step whose
half would be worse than either end (renaming a finished analysis into
place): a signal that arrives meanwhile is delivered when the step ends.

Standard library only.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

__all__ = ["Terminated", "exit_status", "raise_if_interrupted", "signals_held", "stop_on_signals"]

# The signals `signals_held` holds back.
_HELD = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (`stop_on_sigterm`)."""

    signal_number = signal.SIGTERM


def exit_status(interruption: KeyboardInterrupt) -> int:
    """The shell's status of a process ended by `interruption`: 128 + the signal's number
    (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(getattr(interruption, "signal_number", signal.SIGINT))


# The signals whose interruption `stop_on_signals`' handler raised, newest last.
_raised: list = []


def _interrupt(signum, frame):
    _raised.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _report_unraisable(unraisable) -> None:
    """`sys.unraisablehook` of a command: an interruption Python drops is not reported (it is
    raised again, `raise_if_interrupted`); anything else goes to the hook it replaced."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _raised:
        return
    _previous_hook(unraisable)


_previous_hook = sys.unraisablehook


def stop_on_signals(sigterm: bool = True) -> None:
    """From now on SIGINT raises `KeyboardInterrupt` and, with `sigterm`, SIGTERM raises
    `Terminated` in the main thread, each remembered for `raise_if_interrupted` (call it
    from there); the interruptions Python drops are not reported as "Exception ignored"."""
    global _previous_hook
    _raised.clear()
    if sys.unraisablehook is not _report_unraisable:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _report_unraisable
    for number in (signal.SIGINT, signal.SIGTERM) if sigterm else (signal.SIGINT,):
        # Ignored when the process started (a shell's background job): its starter meant it so.
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _interrupt)


def raise_if_interrupted() -> None:
    """Raises again an interruption that was raised where Python drops exceptions.

    Without `stop_on_signals`, or when no signal arrived, it does nothing.
    An interruption that unwound normally never reaches a later call: the
    loop that calls this was left by it.
    """
    if _raised:
        number = _raised[-1]
        _raised.clear()
        raise Terminated() if number == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def signals_held():
    """Holds SIGINT and SIGTERM back while the block runs; delivers the first one received after it.

    Outside the main thread (where Python cannot set handlers) the block
    runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {number: signal.getsignal(number) for number in _HELD}

    def hold(signum, frame):
        received.append(signum)

    for number in _HELD:
        signal.signal(number, hold)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        if received:
            signal.raise_signal(received[0])
