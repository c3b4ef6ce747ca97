"""Bad input, as a table: every case exits 2 with one line and writes nothing.

Each row runs one command line (`train`, `analyze` or `sweep`) in a fresh
copy of a small world of files -- image folders (good, corrupt, with an empty
class, with a class missing from a split), run directories (of another
configuration, with damaged JSON, diverged, with a damaged model), sweep
directories, a stray file, someone's directory -- and checks:

* exit status 2;
* exactly one line on stderr, ``<command>: error: ...``, naming the problem;
* the world's file tree (contents hashed, the data cache included) is the
  same before and after: no directory, lock, cache entry or table is left.

Almost every check runs before Keras is imported, so a row costs about half
a second; the damaged-model row loads TensorFlow (about 10 s).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.core

TINY = "synthetic:train=60,test=20,size=8,classes=2"
TRAIN = "tf_selectivity.train"
ANALYZE = "tf_selectivity.analyze"
SWEEP = "tf_selectivity.sweep"
COMMANDS = {TRAIN: "python -m tf_selectivity.train", ANALYZE: "python -m tf_selectivity.analyze",
            SWEEP: "python -m tf_selectivity.sweep"}


def _train(*args, output="{W}/out"):
    base = ["--model=resnet8", f"--dataset={TINY}", "--epochs=1"]
    return TRAIN, [*base, *([f"--output_dir={output}"] if output else []), *args]


def _analyze(*args, runs="{W}/good_run", output="{W}/analysis"):
    return ANALYZE, [*([f"--runs={runs}"] if runs else []), *([f"--output_dir={output}"] if output else []), *args]


def _sweep(*args, output="{W}/sweep", alphas="0,-1"):
    base = ["--model=resnet8", f"--dataset={TINY}", "--epochs=1", "--seeds=0"]
    return SWEEP, [*base, *([f"--alphas={alphas}"] if alphas else []),
                   *([f"--output_dir={output}"] if output else []), *args]


# (id, (module, args), text the error line must contain). {W} is the world.
CASES = [
    # ---------------------------------------------------------------- train
    ("train-unknown-model", _train("--model=resnet21"), "--model must be one of resnet8, resnet20"),
    ("train-alpha-nan", _train("--alpha=nan"), "alpha must be a finite number"),
    ("train-alpha-not-a-number", _train("--alpha=abc"), "--alpha=abc"),
    ("train-zero-epochs", _train("--epochs=0"), "--epochs must be a positive integer; got 0"),
    ("train-negative-batch", _train("--batch_size=-8"), "--batch_size must be a positive integer; got -8"),
    ("train-zero-learning-rate", _train("--learning_rate=0"), "learning_rate must be a finite positive number"),
    ("train-momentum-above-one", _train("--momentum=1.5"), "momentum must be in [0, 1)"),
    ("train-milestone-not-integer", _train("--lr_milestones=100,abc"), "--lr_milestones must be comma-separated integers; got 100,abc"),
    ("train-milestones-decreasing", _train("--lr_milestones=150,100"), "lr_milestones must be increasing"),
    ("train-slope-without-leaky", _train("--leaky_slope=0.2"), "leaky_slope only applies"),
    ("train-unknown-activation", _train("--activation=tanh"), "--activation=tanh: value should be one of <relu|leaky_relu>"),
    ("train-negative-seed", _train("--seed=-1"), "seed must be a non-negative integer"),
    ("train-validation-fraction", _train("--validation_fraction=1.5"), "validation_fraction must be in (0, 1)"),
    ("train-verbose-level", _train("--verbose=7"), "--verbose must be one of 0, 1, 2, 3"),
    ("train-no-output-dir", _train(output=None), "--output_dir is required"),
    ("train-output-under-a-file", _train(output="{W}/a_file/run"), "{W}/a_file is a file, not a directory"),
    ("train-output-is-a-file", _train(output="{W}/a_file"), "{W}/a_file exists and is a file"),
    ("train-output-not-a-run", _train(output="{W}/someones_dir"), "is not empty and holds no run"),
    ("train-output-other-run", _train(output="{W}/good_run"), "holds a run of another configuration (model"),
    ("train-output-unwritable", _train(output="/proc/tf_selectivity_run"), "/proc/tf_selectivity_run cannot be created"),
    ("train-output-damaged-config", _train(output="{W}/damaged_config_run"), "damaged_config_run/config.json"),
    ("train-folder-missing", _train("--dataset=imagefolder:{W}/nope"), "image folder {W}/nope does not exist"),
    ("train-folder-is-a-file", _train("--dataset=imagefolder:{W}/a_file"), "is a file, not a folder"),
    ("train-folder-empty-class", _train("--dataset=imagefolder:{W}/empty_class"), "empty_class/train/dog holds no images"),
    ("train-folder-class-missing", _train("--dataset=imagefolder:{W}/missing_class"), "dog in train/ but not in test/"),
    ("train-folder-no-test-split", _train("--dataset=imagefolder:{W}/no_test"), "no_test/test does not exist"),
    ("train-folder-corrupt-images", _train("--dataset=imagefolder:{W}/corrupt"), "and 1 more; fix or remove"),
    ("train-folder-no-path", _train("--dataset=imagefolder:"), "needs a PATH"),
    ("train-folder-symlink-loop", _train("--dataset=imagefolder:{W}/symlink_loop"), "symlink_loop/train/cat/loop.png (a loop of symbolic links)"),
    ("train-folder-dangling-symlink", _train("--dataset=imagefolder:{W}/dangling_symlink"), "gone.png (a symbolic link to missing.png, which does not exist)"),
    # The test split decodes, the train split does not: no cache entry of either.
    ("train-folder-corrupt-train-only", _train("--dataset=imagefolder:{W}/corrupt_train"), "corrupt_train/train/cat/x.png (UnidentifiedImageError"),
    ("train-unknown-dataset", _train("--dataset=mnist"), "unknown dataset 'mnist'"),
    ("train-synthetic-options", _train("--dataset=synthetic:train=x"), "train='x' is not an integer"),
    ("train-too-few-images", _train("--dataset=synthetic:train=4,classes=2"), "leaves 0 for validation"),
    ("train-data-dir-not-cifar", _train("--dataset=cifar10_sample", "--data_dir={W}/nope"), "--data_dir only applies"),
    ("train-data-dir-missing", _train("--dataset=cifar10", "--data_dir={W}/nope"), "--data_dir {W}/nope does not exist"),
    ("train-flagfile-missing", _train("--flagfile={W}/nope.flags"), "--flagfile {W}/nope.flags: no such file"),
    ("train-flagfile-is-a-directory", _train("--flagfile={W}"), "is a directory, not a file of flags"),
    ("train-flag-typo", _train("--alhpa=-1"), "Unknown command line flag 'alhpa'"),
    ("train-stray-argument", _train("alpha=-1"), "unexpected arguments: alpha=-1"),
    # -------------------------------------------------------------- analyze
    ("analyze-zero-resamples", _analyze("--bootstrap_resamples=0"), "--bootstrap_resamples must be a positive integer"),
    ("analyze-zero-batch", _analyze("--batch_size=0"), "--batch_size must be a positive integer"),
    ("analyze-no-runs-flag", _analyze(runs=None), "--runs is required"),
    ("analyze-no-output-flag", _analyze(output=None), "--output_dir is required"),
    ("analyze-runs-missing", _analyze(runs="{W}/nothing_here"), "{W}/nothing_here: no such file or directory"),
    ("analyze-glob-matches-nothing", _analyze(runs="{W}/none_*"), "the pattern matched nothing"),
    ("analyze-damaged-summary", _analyze(runs="{W}/damaged_summary_run"), "summary.json is not valid JSON"),
    ("analyze-unfinished-run", _analyze(runs="{W}/unfinished_run"), "the run is not complete"),
    ("analyze-only-diverged", _analyze(runs="{W}/diverged_run"), "all 1 run(s) found diverged"),
    ("analyze-output-not-analysis", _analyze(output="{W}/someones_dir"), "holds no earlier analysis"),
    ("analyze-output-is-a-file", _analyze(output="{W}/a_file"), "exists and is a file"),
    ("analyze-output-unwritable", _analyze(output="/proc/tf_selectivity_analysis"), "cannot be created"),
    ("analyze-unknown-cca-method", _analyze("--cca_methods=pwcca,cka"), "--cca_methods must be among"),
    ("analyze-bad-cca-alpha", _analyze("--cca_alphas=-1,x"), "--cca_alphas must be comma-separated numbers; got -1,x"),
    ("analyze-dataset-missing", _analyze("--dataset=imagefolder:{W}/nope"), "image folder {W}/nope does not exist"),
    ("analyze-flagfile-missing", _analyze("--flagfile={W}/nope.flags"), "no such file"),
    ("analyze-damaged-model", _analyze(runs="{W}/damaged_model_run"), "model.keras could not be loaded (ValueError: it is not a Keras model file"),
    # ---------------------------------------------------------------- sweep
    ("sweep-folder-missing", _sweep("--dataset=imagefolder:{W}/nope"), "image folder {W}/nope does not exist"),
    ("sweep-folder-corrupt", _sweep("--dataset=imagefolder:{W}/corrupt"), "cannot decode image"),
    ("sweep-folder-symlink-loop", _sweep("--dataset=imagefolder:{W}/symlink_loop"), "loop.png (a loop of symbolic links)"),
    ("sweep-folder-dangling-symlink", _sweep("--dataset=imagefolder:{W}/dangling_symlink"), "which does not exist"),
    ("sweep-alpha-not-a-number", _sweep(alphas="0,oops"), "--alphas: 'oops' is not a number"),
    ("sweep-alpha-twice", _sweep(alphas="0,-1,-1.0"), "appears twice"),
    ("sweep-no-alphas", _sweep(alphas=None), "--alphas is required in grid mode"),
    ("sweep-empty-seed-range", _sweep("--seeds=5-2"), "range '5-2' is empty"),
    ("sweep-search-with-alphas", _sweep("--mode=search"), "--alphas is for --mode=grid"),
    ("sweep-search-one-bound", _sweep("--mode=search", "--search_bounds=-1", alphas=None), "takes two alphas"),
    ("sweep-search-bounds-order", _sweep("--mode=search", "--search_bounds=-10,-1", alphas=None), "must be the weaker"),
    ("sweep-zero-worker-timeout", _sweep("--worker_timeout=0"), "--worker_timeout must be a positive number"),
    ("sweep-negative-retries", _sweep("--max_retries=-1"), "--max_retries must be >= 0"),
    ("sweep-slope-and-slopes", _sweep("--activation=leaky_relu", "--leaky_slope=0.1", "--leaky_slopes=0.2,0.3"), "not both"),
    ("sweep-other-settings", _sweep(output="{W}/other_sweep"), "holds a sweep with other settings (epochs: 200 there, 1 now)"),
    ("sweep-into-a-run", _sweep(output="{W}/good_run"), "is a training run directory, not a sweep"),
    ("sweep-output-not-a-sweep", _sweep(output="{W}/someones_dir"), "not empty and holds no sweep"),
    ("sweep-output-under-a-file", _sweep(output="{W}/a_file/sweep"), "is a file, not a directory"),
    ("sweep-output-unwritable", _sweep(output="/proc/tf_selectivity_sweep"), "cannot be created"),
    ("sweep-bad-model", _sweep("--model=resnet9"), "--model must be one of resnet8, resnet20"),
    ("sweep-aggregate-nothing", _sweep("--aggregate_only", output="{W}/someones_dir"), "holds no sweep"),
]


# ------------------------------------------------------------------ world


def _image(path, rng, size=8):
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _image_folder(root, rng, classes=("cat", "dog"), per_class=6):
    for split in ("train", "test"):
        for name in classes:
            os.makedirs(os.path.join(root, split, name))
            for i in range(per_class):
                _image(os.path.join(root, split, name, f"{i}.png"), rng)


def _summary(**overrides):
    summary = {
        "status": "completed", "model": "resnet8", "alpha": 0.0, "seed": 0, "activation": "relu",
        "leaky_slope": 0.0, "epochs": 1, "best_epoch": 1, "val_accuracy": 0.5, "test_accuracy": 0.5,
        "test_layer_selectivity": [0.1], "test_mean_selectivity": 0.1, "probe_names": ["probe_stem"],
        "dataset": TINY, "num_classes": 2, "image_shape": [8, 8, 3],
    }
    summary.update(overrides)
    return summary


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture(scope="module")
def world_template(tmp_path_factory):
    from tf_selectivity.training.config import TrainConfig
    from tf_selectivity.sweep.settings import settings_record, sweep_settings

    root = str(tmp_path_factory.mktemp("world_template"))
    rng = np.random.default_rng(0)
    _image_folder(os.path.join(root, "good_folder"), rng)
    # One truncated JPEG and one file that is no image at all.
    _image_folder(os.path.join(root, "corrupt"), rng)
    jpeg = os.path.join(root, "corrupt", "train", "cat", "x.jpg")
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(jpeg, quality=95)
    with open(jpeg, "rb") as f:
        data = f.read()
    with open(jpeg, "wb") as f:
        f.write(data[: len(data) // 2])
    _write(os.path.join(root, "corrupt", "test", "dog", "y.png"), "not an image")
    # Symbolic links among the images: one that points at itself, one at nothing.
    _image_folder(os.path.join(root, "symlink_loop"), rng)
    os.symlink("loop.png", os.path.join(root, "symlink_loop", "train", "cat", "loop.png"))
    _image_folder(os.path.join(root, "dangling_symlink"), rng)
    os.symlink("missing.png", os.path.join(root, "dangling_symlink", "test", "dog", "gone.png"))
    _image_folder(os.path.join(root, "corrupt_train"), rng)
    _write(os.path.join(root, "corrupt_train", "train", "cat", "x.png"), "not an image")
    _image_folder(os.path.join(root, "empty_class"), rng)
    for name in os.listdir(os.path.join(root, "empty_class", "train", "dog")):
        os.remove(os.path.join(root, "empty_class", "train", "dog", name))
    _image_folder(os.path.join(root, "missing_class"), rng, classes=("ant", "cat", "dog"))
    shutil.rmtree(os.path.join(root, "missing_class", "test", "dog"))
    _image_folder(os.path.join(root, "no_test"), rng)
    shutil.rmtree(os.path.join(root, "no_test", "test"))
    _write(os.path.join(root, "a_file"), "just a file\n")
    _write(os.path.join(root, "someones_dir", "thesis.tex"), "\\documentclass{article}\n")
    # A finished run of another configuration (resnet20, not resnet8).
    config = TrainConfig(model="resnet20", dataset=TINY, epochs=1, output_dir="x")
    good = os.path.join(root, "good_run")
    _write(os.path.join(good, "config.json"), json.dumps({"identity": config.identity(), "config": config.to_dict()}))
    _write(os.path.join(good, "summary.json"), json.dumps(_summary(model="resnet20")))
    _write(os.path.join(root, "damaged_config_run", "config.json"), '{"identity": {"model": "resn')
    _write(os.path.join(root, "damaged_summary_run", "summary.json"), '{"model": "resnet8", "alp')
    _write(os.path.join(root, "unfinished_run", "config.json"), json.dumps({"identity": config.identity()}))
    from tf_selectivity.training.status import diverged_summary

    _write(os.path.join(root, "diverged_run", "summary.json"),
           json.dumps(diverged_summary(_summary(alpha=1e300), 1, "loss is nan")))
    _write(os.path.join(root, "damaged_model_run", "summary.json"), json.dumps(_summary()))
    _write(os.path.join(root, "damaged_model_run", "model.keras"), "PK but not really a zip archive")
    other = sweep_settings(TrainConfig(model="resnet8", dataset=TINY, epochs=200, output_dir="x"))
    _write(os.path.join(root, "other_sweep", "sweep.json"), json.dumps(settings_record(other)))
    os.makedirs(os.path.join(root, "cache"))  # XDG_CACHE_HOME: decoded image folders land here
    return root


def _tree(root) -> dict:
    """Every path under `root`: files with a hash of their content,
    directories with their modification time (an entry created and removed
    again changes it)."""
    entries = {}
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        entries[os.path.relpath(directory, root)] = ("dir", os.stat(directory).st_mtime_ns)
        for name in sorted(files):
            path = os.path.join(directory, name)
            if os.path.islink(path):
                entries[os.path.relpath(path, root)] = ("link", os.readlink(path))
                continue
            with open(path, "rb") as f:
                entries[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return entries


def _new_world(world_template, tmp_path) -> str:
    world = str(tmp_path / "world")
    shutil.copytree(world_template, world, symlinks=True)
    return world


def _environment(world, tmp_path, **extra) -> dict:
    # Our data cache lives in the world; matplotlib's font cache (a library's,
    # written when it is first imported) outside it. The world is the
    # current directory: its user model module (bad_models.py) imports.
    env = {**os.environ, "XDG_CACHE_HOME": os.path.join(world, "cache"), "PYTHONPATH": REPO,
           "MPLCONFIGDIR": str(tmp_path / "matplotlib"), **extra}
    env.pop("KERASTUNER_ORACLE_IP", None)
    env.pop("KERASTUNER_ORACLE_PORT", None)
    return env


def _run(module, args, world, env, timeout=300):
    args = [a.replace("{W}", world) for a in args]
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=world, timeout=timeout,
    )


def _stderr_lines(completed) -> list:
    return [line for line in completed.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case_id,command,expected", [(c[0], c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(world_template, tmp_path, case_id, command, expected):
    world = _new_world(world_template, tmp_path)
    module, args = command
    expected = expected.replace("{W}", world)
    before = _tree(world)
    completed = _run(module, args, world, _environment(world, tmp_path))
    lines = _stderr_lines(completed)
    assert completed.returncode == 2, (completed.returncode, completed.stderr[-3000:])
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{COMMANDS[module]}: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert _tree(world) == before


def test_the_table_is_big_enough():
    modules = [command[0] for _, command, _ in CASES]
    assert len(CASES) >= 30 and all(modules.count(m) >= 8 for m in COMMANDS)
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_exits_0_and_lists_the_commands_own_flags(module):
    for flag in ("--help", "-h", "--helpfull"):
        completed = subprocess.run([sys.executable, "-m", module, flag], capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO, timeout=120)
        assert completed.returncode == 0, (flag, completed.stderr)
        assert completed.stderr == ""
        assert f"python -m {module}" in completed.stdout  # the command's own description
        assert "--output_dir" in completed.stdout
    own = {TRAIN: ["--alpha", "--skip_bad_images", "--verbose"],
           ANALYZE: ["--runs", "--bootstrap_resamples", "--cca_methods"],
           SWEEP: ["--alphas", "--seeds", "--mode", "--search_bounds", "--model", "--epochs"]}[module]
    short = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO, timeout=120).stdout
    for flag in own:
        assert f"\n  {flag}" in short or f"\n  --[no]{flag[2:]}" in short, flag
    # The train example's line continuation survives (a backslash, then the next line).
    if module == TRAIN:
        assert "--seed=0 \\\n        --dataset=cifar10" in short


# ------------------------------------------------- what is not refused


def test_skip_bad_images_leaves_out_and_lists_symbolic_links(world_template, tmp_path):
    """--skip_bad_images: a loop of symbolic links (train/) and a dangling one
    (test/) are left out like undecodable images and listed in config.json."""
    world = _new_world(world_template, tmp_path)
    folder = os.path.join(world, "symlink_loop")
    os.symlink("missing.png", os.path.join(folder, "test", "dog", "gone.png"))
    completed = _run(TRAIN, _train(f"--dataset=imagefolder:{folder}", "--skip_bad_images", "--verbose=0",
                                   output="{W}/skip_run")[1], world, _environment(world, tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert _stderr_lines(completed) == []
    with open(os.path.join(world, "skip_run", "config.json")) as f:
        record = json.load(f)
    assert record["skipped_images"] == [os.path.join(folder, "train", "cat", "loop.png"),
                                        os.path.join(folder, "test", "dog", "gone.png")]
    assert (record["num_train"] + record["num_validation"], record["num_test"]) == (12, 12)
