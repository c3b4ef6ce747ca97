"""`prepare_runs`: finished, locked by another process, or pending; one lock message."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, error_lines, run_cli
from tf_selectivity.training import ConfigError, RunLockedError, TrainConfig
from tf_selectivity.training.prepare import prepare_runs, refuse_locked
from tf_selectivity.training.summary import RunSummary

TINY = "synthetic:train=60,test=20,size=8,classes=2"


def _config(tmp_path, name, **overrides):
    values = dict(model="resnet8", dataset=TINY, epochs=1, output_dir=str(tmp_path / name))
    values.update(overrides)
    return TrainConfig(**values)


def _started(config):
    """A run directory as `train` starts it: its config.json."""
    os.makedirs(config.output_dir, exist_ok=True)
    with open(os.path.join(config.output_dir, "config.json"), "w") as f:
        json.dump({"identity": config.identity(), "config": config.to_dict()}, f)


def _finished(config):
    _started(config)
    summary = RunSummary(
        model=config.model, alpha=config.alpha, seed=config.seed, activation=config.activation,
        leaky_slope=config.leaky_slope, probe_names=["probe_stem"], test_accuracy=0.5,
    )
    summary.write(os.path.join(config.output_dir, "summary.json"))
    return summary


@pytest.fixture
def lock_holder():
    """Starts a process that holds a run directory's lock until the test ends."""
    holders = []

    def hold(run_dir):
        code = (
            "import sys\n"
            "from tf_selectivity.training.run_dir import RunPaths\n"
            "with RunPaths(sys.argv[1]).locked():\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n"
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", code, run_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
        )
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"
        return holder

    yield hold
    for holder in holders:
        holder.stdin.close()  # the holder leaves its `with` block and exits
        holder.wait(timeout=60)


def test_each_run_is_finished_locked_or_pending(tmp_path, lock_holder):
    finished, locked, pending, fresh = (_config(tmp_path, name, seed=seed)
                                        for seed, name in enumerate(("finished", "locked", "pending", "fresh")))
    recorded = _finished(finished)
    _started(locked)
    _started(pending)
    lock_holder(locked.output_dir)
    runs = prepare_runs([finished, locked, pending, fresh])
    assert [run.state for run in runs] == ["finished", "locked", "pending", "pending"]
    assert runs[0].finished and runs[0].summary == recorded
    assert runs[1].locked and runs[1].summary is None and runs[2].pending
    assert [run.config for run in runs] == [finished, locked, pending, fresh]
    assert not os.path.exists(fresh.output_dir)  # prepare_runs writes nothing
    with pytest.raises(RunLockedError) as caught:
        refuse_locked(runs)
    assert str(caught.value) == (
        f"another process is training in {runs[1].paths.root}; wait for it or use another `output_dir`"
    )
    refuse_locked([runs[0], runs[2], runs[3]])  # no locked run: nothing raised


def test_a_lock_released_leaves_the_run_pending(tmp_path, lock_holder):
    config = _config(tmp_path, "run")
    _started(config)
    holder = lock_holder(config.output_dir)
    assert prepare_runs([config])[0].locked
    holder.stdin.close()
    holder.wait(timeout=60)
    assert prepare_runs([config])[0].pending


def test_configurations_and_directories_are_checked_first(tmp_path):
    with pytest.raises(ConfigError, match="^alpha must be a finite number"):
        prepare_runs([_config(tmp_path, "run", alpha=float("inf"))])
    other = _config(tmp_path, "other", alpha=-1.0)
    _started(other)
    with pytest.raises(ConfigError, match="holds a run of another configuration"):
        prepare_runs([_config(tmp_path, "other")])


def test_the_command_line_names_its_flag_in_the_lock_message(tmp_path, lock_holder):
    """The one lock message, with `output_dir` spelled as the command's flag,
    for one run and for --seeds; nothing is written and no backend starts."""
    flags = ["--model=resnet8", f"--dataset={TINY}", "--epochs=1"]
    single, seed1 = _config(tmp_path, "run"), _config(tmp_path, "seeds/seed1", seed=1)
    for config in (single, seed1):
        _started(config)
        lock_holder(config.output_dir)
    commands = {
        single.output_dir: run_cli("tf_selectivity.train", *flags, f"--output_dir={single.output_dir}"),
        seed1.output_dir: run_cli("tf_selectivity.train", *flags, "--seeds=0,1", f"--output_dir={tmp_path / 'seeds'}"),
    }
    for locked, completed in commands.items():
        assert completed.returncode == 2, completed.stderr
        assert error_lines(completed.stderr) == [
            f"python -m tf_selectivity.train: error: another process is training in {locked}; "
            "wait for it or use another --output_dir"
        ]
        assert sorted(os.listdir(locked)) == [".lock", "config.json"]
    assert sorted(os.listdir(tmp_path / "seeds")) == ["seed1"]
