"""`core.signals`: interruptions that unwind, that are held back, and that Python would drop."""

import gc
import signal
import sys

import pytest

from tf_selectivity.core import signals


@pytest.fixture
def handlers():
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    hooks = sys.unraisablehook, signals._previous_hook
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)
    sys.unraisablehook, signals._previous_hook = hooks
    signals._raised.clear()


class _InterruptedWhileCollected:
    """An object whose finalizer receives the signal: Python prints 'Exception ignored' and goes on."""

    def __init__(self, number):
        self.number = number

    def __del__(self):
        signal.raise_signal(self.number)


@pytest.mark.parametrize("number, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interruption_dropped_in_a_finalizer_is_raised_again(handlers, number, status):
    signals.stop_on_signals()
    signals.raise_if_interrupted()  # nothing received: nothing raised
    reported = []
    previous = sys.unraisablehook
    sys.unraisablehook = reported.append
    signals.stop_on_signals()  # wraps the hook it finds
    try:
        _InterruptedWhileCollected(number)  # dropped at once: its __del__ raises, and Python drops that
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert reported == []  # not reported as "Exception ignored": raised again below
    with pytest.raises(KeyboardInterrupt) as raised:
        signals.raise_if_interrupted()
    assert signals.exit_status(raised.value) == status
    signals.raise_if_interrupted()  # raised once


def test_a_new_start_forgets_earlier_interruptions(handlers):
    signals.stop_on_signals()
    with pytest.raises(signals.Terminated):
        signal.raise_signal(signal.SIGTERM)
    signals.stop_on_signals()  # a new command starts afresh
    signals.raise_if_interrupted()


def test_signals_held_deliver_after_the_block(handlers):
    signals.stop_on_signals()
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with signals.signals_held():
            signal.raise_signal(signal.SIGINT)
            finished.append(True)
    assert finished == [True]


def test_a_signal_ignored_at_start_stays_ignored(handlers):
    """A shell's background job starts with SIGINT ignored: the command leaves it so."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signals.stop_on_signals()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
