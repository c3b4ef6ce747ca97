"""The one progress display: a bar on a terminal, one plain line elsewhere."""

import io
import re

from tf_selectivity.core.progress import Progress, progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_one_line_when_the_pass_ends():
    stream = io.StringIO()
    with Progress("Decoding test images", 1000, unit="image", stream=stream) as bar:
        for _ in range(10):
            bar.update(100)
        assert stream.getvalue() == ""  # nothing while the pass runs
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"Decoding test images: 1,000/1,000 images, 0:0\d, .+ images/s", lines[0]), lines[0]


def test_on_a_terminal_a_bar_with_time_left(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    stream = _Terminal()
    bar = Progress("Ablation", 4, unit="unit", stream=stream)
    bar._start -= 10  # 10 s elapsed for the first unit
    bar.update(1)
    assert "[======..................] 1/4 units, 0:10 elapsed, 0:30 left" in stream.getvalue()
    bar.update(3)
    bar.close()
    text = stream.getvalue()
    assert text.endswith("\n") and "4/4 units" in text and "\r" in text


def test_unknown_total_and_disabled():
    stream = io.StringIO()
    assert list(progress(iter(range(3)), "Runs", unit="run", stream=stream)) == [0, 1, 2]
    assert stream.getvalue().startswith("Runs: 3 runs, ")
    quiet = io.StringIO()
    assert list(progress([1, 2], "Runs", enabled=False, stream=quiet)) == [1, 2]
    assert quiet.getvalue() == ""


def test_a_broken_stream_does_not_stop_the_work():
    stream = io.StringIO()
    stream.close()
    with Progress("x", 2, stream=stream, terminal=True) as bar:
        bar.update(2)


def test_a_nested_pass_announces_its_items_with_the_time_left_of_the_items_worked():
    stream = _Terminal()
    runs = Progress("Per-run analysis", 4, unit="run", stream=stream, nested=True)
    runs.skip()  # read from the cache: no time, not in the rate
    runs._start -= 20
    runs.announce("runs/b")
    runs.update()  # 20 s for the one run worked
    runs.announce("runs/c")
    runs.update()
    runs.update()
    runs.close()
    lines = stream.getvalue().splitlines()
    # No bar on a terminal either (the inner passes draw theirs): plain lines only.
    assert "\r" not in stream.getvalue()
    assert lines[0] == "[2/4] runs/b"  # nothing worked yet: no time left to tell
    assert lines[1] == "[3/4] runs/c (0:20 elapsed, 0:40 left)"  # 2 runs left at 20 s per run worked
    assert re.fullmatch(r"Per-run analysis: 4/4 runs, 0:2\d, \d+\.\d s/run", lines[2]), lines[2]


def test_update_to_a_running_count_and_a_total_known_late():
    stream = io.StringIO()
    with Progress("CCA", unit="comparison", stream=stream) as bar:
        for done in range(1, 7):
            bar.update_to(done, 6)
    assert stream.getvalue().startswith("CCA: 6/6 comparisons, ")
    assert bar.timing().endswith("elapsed")  # nothing left


def test_a_pass_stopped_by_an_error_says_so():
    stream = io.StringIO()
    try:
        with Progress("Ablation curves", 10, unit="ablation", stream=stream) as bar:
            bar.update(3)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert re.fullmatch(r"Ablation curves: 3/10 ablations, .*, stopped\n", stream.getvalue()), stream.getvalue()


def test_a_terminal_bar_fits_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    stream = _Terminal()
    with Progress("Similarity (pwcca, debiased_cka) resnet8 relu: alpha=-10 vs alpha=0", 21, unit="comparison",
                  stream=stream) as bar:
        bar.update(21)
    for line in stream.getvalue().replace("\033[K", "").split("\r"):
        assert len(line.rstrip("\n")) <= 99
    # The description gives way first (then the bar): the numbers stay.
    assert "Similarity (pwcca" in stream.getvalue() and "...: [====" in stream.getvalue()
    assert "21/21 comparisons" in stream.getvalue()
