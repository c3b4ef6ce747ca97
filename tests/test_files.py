"""The bottom floor's file mechanisms: atomic replacement, JSON, locks."""

import json
import multiprocessing
import os

import numpy as np
import pytest

from tf_selectivity.core import files


def test_replacing_renames_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with files.replacing(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed in the middle")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.csv"]  # the temporary is gone
    with files.replacing(str(target)) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and not os.path.exists(tmp)
        with open(tmp, "w") as f:
            f.write("new\n")
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["table.csv"]


def test_temporary_names_keep_the_suffix_last_and_match_the_cleanup_patterns(tmp_path):
    import fnmatch

    name = os.path.basename(files.temporary_path(str(tmp_path / "best.weights.h5"), suffix=".weights.h5"))
    assert name == f"best.{os.getpid()}.tmp.weights.h5"
    assert files.temporary_path("model.keras", suffix=".keras") == f"model.{os.getpid()}.tmp.keras"
    assert files.temporary_path("summary.json") == f"summary.json.{os.getpid()}.tmp"
    for temporary in (name, f"summary.json.{os.getpid()}.tmp", "saved_model.7.tmp"):
        assert any(fnmatch.fnmatch(temporary, p) for p in files.TEMPORARY_PATTERNS), temporary
    for final in ("best.weights.h5", "summary.json", "model.keras", "history.csv"):
        assert not any(fnmatch.fnmatch(final, p) for p in files.TEMPORARY_PATTERNS), final


def test_replacing_a_directory(tmp_path):
    target = tmp_path / "saved_model"
    target.mkdir()
    (target / "old.pb").write_text("old")
    with files.replacing(str(target)) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "new.pb"), "w") as f:
            f.write("new")
    assert os.listdir(target) == ["new.pb"] and os.listdir(tmp_path) == ["saved_model"]


def test_json_round_trip_with_numpy_values_and_a_damaged_file(tmp_path):
    path = str(tmp_path / "state.json")
    files.write_json_atomic(path, {"b": np.float32(0.5), "a": np.arange(3), "n": np.int64(7)})
    assert files.read_json(path) == {"a": [0, 1, 2], "b": 0.5, "n": 7}
    assert list(json.loads(open(path).read())) == ["a", "b", "n"]  # sorted keys
    with open(path, "w") as f:
        f.write('{"epochs_done": 3, "hist')
    with pytest.raises(files.DamagedFileError) as error:
        files.read_json(path)
    assert error.value.path == path and "not valid JSON" in str(error.value)
    assert isinstance(error.value, ValueError)  # callers that catch ValueError still do
    open(path, "w").close()
    with pytest.raises(files.DamagedFileError, match="it is empty"):
        files.read_json(path)
    with pytest.raises(FileNotFoundError):
        files.read_json(str(tmp_path / "missing.json"))


def _hold_lock(path, ready, release):
    with files.exclusive_lock(path):
        ready.set()
        release.wait(30)


def test_exclusive_lock_is_held_across_processes_and_released_with_the_holder(tmp_path):
    path = str(tmp_path / ".lock")
    assert not files.is_locked(path)  # no file: not locked, nothing created
    assert not os.path.exists(path)
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        assert files.is_locked(path)
        with pytest.raises(files.LockedError) as error:
            with files.exclusive_lock(path, describe="the run"):
                pass
        assert error.value.owner == str(holder.pid) and "the run" in str(error.value)
    finally:
        release.set()
        holder.join(30)
    assert not files.is_locked(path)
    with files.exclusive_lock(path):
        assert open(path).read() == str(os.getpid())


def test_writable_dir_problem(tmp_path):
    assert files.writable_dir_problem(str(tmp_path / "new" / "deeper")) is None
    (tmp_path / "a_file").write_text("x")
    assert "is a file" in files.writable_dir_problem(str(tmp_path / "a_file"))
    assert "is a file" in files.writable_dir_problem(str(tmp_path / "a_file" / "below"))
    assert files.writable_dir_problem("/proc/tf_selectivity_test") is not None
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # the probe left nothing
