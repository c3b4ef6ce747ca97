"""Replicates in one program (JAX): each packed replicate is its seed's single run."""

import csv
import os

import keras
import numpy as np
import pytest

from conftest import error_lines, run_cli
from training_callbacks import Interrupt, PoisonAWeight
from tf_selectivity.training import ConfigError, TrainConfig, train
from tf_selectivity.training.packing import check_replicate_configs, seed_run_dir, split_into_packs
from tf_selectivity.core.files import read_json

TINY = "synthetic:train=200,test=60,size=16"
EPOCHS = 3

# Replicates are packed in one program on JAX only; TensorFlow trains them one by one
# (tests/conftest.py: jax_only).
jax_only = pytest.mark.jax_only


def config(root, seed, **overrides):
    values = dict(
        # Well-conditioned steps, so that float rounding (vmap adds up in
        # another order) stays at rounding size: at a rate of 0.1, ResNet8 on
        # random images turns a 1e-7 change of the weights into 1e-3 in five
        # steps, in a single run as much as between a packed and a single
        # one; at alpha = -1 the SI's maximum over classes makes a gradient
        # jump when rounding flips a near tie (7e-5 in a momentum after 3
        # steps with weights equal to 6e-8). The vmap of the epoch functions
        # at alpha = -1 is compared on a smaller model in test_device_loop.
        model="resnet8", dataset=TINY, epochs=EPOCHS, batch_size=64, lr_milestones=(2,), alpha=0.0,
        learning_rate=1e-3,
        seed=seed, data_on_device="true", output_dir=str(root / f"seed{seed}"),
        # Records inside epochs (3 steps each): the weights after step 2
        # (before the smaller last batch), selectivity at steps 0, 2, 4, 6, 8.
        keep_checkpoints=(0.5,), selectivity_every_steps=2,
    )
    values.update(overrides)
    return TrainConfig(**values)


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def weights(run_dir, name="state.weights.h5"):
    """Every array of a checkpoint file (weights and optimizer state), by path."""
    import h5py

    arrays = {}
    with h5py.File(os.path.join(run_dir, "checkpoint", name), "r") as f:
        f.visititems(lambda path, item: arrays.__setitem__(path, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def tree(run_dir):
    """The run directory's files (relative paths), TensorBoard event files by folder."""
    found = set()
    for folder, _, files in os.walk(run_dir):
        for name in files:
            relative = os.path.relpath(os.path.join(folder, name), run_dir)
            found.add(os.path.dirname(relative) + "/<events>" if "tfevents" in name else relative)
    return found


# --------------------------------------------------------------- planning
def test_seed_run_dirs_and_packs():
    assert seed_run_dir("runs/x", 3) == os.path.join("runs/x", "seed3")
    assert seed_run_dir("runs/a-1_s{seed}/run", 12) == "runs/a-1_s12/run"
    assert split_into_packs(range(20), 8) == [list(range(7)), list(range(7, 14)), list(range(14, 20))]
    assert split_into_packs([5, 1, 9], 8) == [[5, 1, 9]]
    assert split_into_packs([5, 1, 9], 1) == [[5], [1], [9]]
    assert split_into_packs([], 4) == []
    with pytest.raises(ValueError, match="at least one seed"):
        split_into_packs([1], 0)


def test_only_seed_and_run_directory_may_differ(tmp_path):
    check_replicate_configs([config(tmp_path, 0), config(tmp_path, 1)])
    with pytest.raises(ConfigError, match="these differ: alpha: 0.0 and -1.0"):
        check_replicate_configs([config(tmp_path, 0), config(tmp_path, 1, alpha=-1.0)])
    with pytest.raises(ConfigError, match="seed 0 is given twice"):
        check_replicate_configs([config(tmp_path, 0), config(tmp_path, 0, output_dir=str(tmp_path / "b"))])
    with pytest.raises(ConfigError, match="would both write"):
        check_replicate_configs([config(tmp_path, 0), config(tmp_path, 1, output_dir=str(tmp_path / "seed0"))])


# --------------------------------------------------------------- training
@pytest.fixture(scope="module")
def packed_and_single(tmp_path_factory):
    """A pack of seeds 0 and 1, uninterrupted, and seed 1 trained alone."""
    from tf_selectivity.training.replicates import train_replicates

    root = tmp_path_factory.mktemp("replicates")
    packed = train_replicates([config(root / "packed", 0), config(root / "packed", 1)], verbose=0)
    keras.backend.clear_session()
    single = train(config(root / "single", 1), verbose=0)
    return root, packed, single


@pytest.mark.backends
@jax_only
def test_a_packed_replicate_equals_the_single_run_of_its_seed(packed_and_single):
    root, packed, single = packed_and_single
    packed_dir, single_dir = str(root / "packed" / "seed1"), str(root / "single" / "seed1")
    assert [s.status for s in packed] == ["completed", "completed"]
    assert packed[1].packed_replicates == 2 and single.packed_replicates is None
    # Same files, same summary (but the time and the packing), same config but the directory.
    assert tree(packed_dir) == tree(single_dir)
    different = {"train_seconds_this_session", "packed_replicates"}
    ours, theirs = packed[1].to_dict(), single.to_dict()
    assert set(ours) - different == set(theirs) - different
    for key in set(theirs) - different:
        if isinstance(theirs[key], float) or (isinstance(theirs[key], list) and theirs[key]
                                              and isinstance(theirs[key][0], float)):
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-5, err_msg=key)
        else:
            assert ours[key] == theirs[key], key
    recorded = read_json(os.path.join(packed_dir, "config.json"))
    alone = read_json(os.path.join(single_dir, "config.json"))
    assert recorded["identity"] == alone["identity"]
    assert {k: v for k, v in recorded["config"].items() if k != "output_dir"} == {
        k: v for k, v in alone["config"].items() if k != "output_dir"
    }
    # Weights (and batch-norm statistics) after 3 epochs, and the per-epoch logs.
    ours, theirs = weights(packed_dir), weights(single_dir)
    assert ours.keys() == theirs.keys() and any(path.startswith("layers/") for path in theirs)
    for path in theirs:
        if path.startswith("optimizer/"):
            # The momentum holds the last gradients, which jump where rounding
            # flips a ReLU input at zero: a single run whose weights are
            # changed by 1e-8 shows the same 1.6e-4 jump at its third step.
            np.testing.assert_allclose(ours[path], theirs[path], atol=2e-3, err_msg=path)
        else:
            np.testing.assert_allclose(ours[path], theirs[path], rtol=1e-4, atol=1e-5, err_msg=path)
    for a, b in zip(history(packed_dir), history(single_dir)):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([float(a[k]) for k in a], [float(b[k]) for k in a], rtol=1e-4, atol=1e-5)
    # The records: the kept weights of step 2, the selectivity of steps 0, 2, 4, 6 (an epoch's end), 8.
    assert packed[1].kept_checkpoints == single.kept_checkpoints == (0.5,)
    ours, theirs = weights(packed_dir, "../checkpoints/epoch-0.5.weights.h5"), weights(single_dir, "../checkpoints/epoch-0.5.weights.h5")
    for path in theirs:
        if not path.startswith("optimizer/"):
            np.testing.assert_allclose(ours[path], theirs[path], rtol=1e-4, atol=1e-5, err_msg=path)
    ours, theirs = (list(csv.DictReader(open(os.path.join(d, "selectivity_steps.csv")))) for d in (packed_dir, single_dir))
    assert [(r["step"], r["layer"]) for r in ours] == [(r["step"], r["layer"]) for r in theirs]
    assert {r["step"] for r in theirs} == {"0", "2", "4", "6", "8"}
    np.testing.assert_allclose([float(r["selectivity"]) for r in ours], [float(r["selectivity"]) for r in theirs],
                               rtol=1e-4, atol=1e-5)
    # The replicates differ (their own seeds), and a single run of a packed seed is finished.
    assert packed[0].val_accuracy != packed[1].val_accuracy or packed[0].test_layer_selectivity != packed[1].test_layer_selectivity
    mtime = os.stat(os.path.join(packed_dir, "summary.json")).st_mtime_ns
    assert train(config(root / "packed", 1), verbose=0) == packed[1]
    assert os.stat(os.path.join(packed_dir, "summary.json")).st_mtime_ns == mtime


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, packed_and_single):
    """Seeds 0, 1 and 2 packed, killed between two replicates' checkpoint
    writes (seed 0 finished epoch 2, seeds 1 and 2 only epoch 1), then
    resumed; seed 2's weights turn NaN before its epoch 2."""
    from tf_selectivity.training.replicates import train_replicates

    root = tmp_path_factory.mktemp("resumed")
    configs = [config(root, seed) for seed in (0, 1, 2)]

    def interrupt_seed0_after_epoch_2(run_config):
        return [Interrupt(2)] if run_config.seed == 0 else []

    with pytest.raises(KeyboardInterrupt):
        train_replicates(configs, verbose=0, callbacks_for=interrupt_seed0_after_epoch_2)
    done = [read_json(os.path.join(c.output_dir, "checkpoint", "state.json"))["epochs_done"] for c in configs]
    assert not any(os.path.exists(os.path.join(c.output_dir, "summary.json")) for c in configs)
    resumed = train_replicates(
        configs, verbose=0, callbacks_for=lambda c: [PoisonAWeight(2)] if c.seed == 2 else []
    )
    return configs, done, resumed


@pytest.mark.backends
@jax_only
def test_a_killed_pack_resumes_each_replicate_from_its_own_checkpoint(packed_and_single, killed_and_resumed):
    root, straight, _ = packed_and_single
    configs, done, resumed = killed_and_resumed
    assert done == [2, 1, 1]
    for seed in (0, 1):
        for key in ("best_epoch", "val_accuracy", "test_accuracy", "test_mean_selectivity"):
            assert getattr(resumed[seed], key) == pytest.approx(getattr(straight[seed], key), rel=1e-4, abs=1e-5), (seed, key)
        ours = history(configs[seed].output_dir)
        theirs = history(str(root / "packed" / f"seed{seed}"))
        assert [row["epoch"] for row in ours] == ["1", "2", "3"]
        np.testing.assert_allclose(
            [float(r["loss"]) for r in ours], [float(r["loss"]) for r in theirs], rtol=1e-4
        )


@pytest.mark.backends
@jax_only
def test_a_diverging_replicate_is_reported_alone_and_the_others_go_on(packed_and_single, killed_and_resumed):
    _, straight, _ = packed_and_single
    configs, _, summaries = killed_and_resumed
    diverged = summaries[2]
    recorded = read_json(os.path.join(configs[2].output_dir, "summary.json"))
    assert diverged.to_dict() == recorded
    assert (diverged.status, diverged.diverged_epoch, diverged.epochs_completed) == ("diverged", 2, 1)
    # The loss, or (where NaN activations are mapped to finite values) the weight check.
    assert diverged.reason in ("loss is nan", "weight stem_conv/kernel is not finite"), diverged.reason
    assert "test_accuracy" not in recorded and not os.path.exists(os.path.join(configs[2].output_dir, "model.keras"))
    assert read_json(os.path.join(configs[2].output_dir, "checkpoint", "state.json"))["epochs_done"] == 1
    assert [row["epoch"] for row in history(configs[2].output_dir)] == ["1", "2"]
    # NaN did not reach the other replicates of the program: they trained as
    # in the pack without a NaN (previous test).
    assert [s.status for s in summaries[:2]] == ["completed", "completed"]
    assert summaries[0].test_accuracy == pytest.approx(straight[0].test_accuracy, rel=1e-4)


# -------------------------------------------------------------- command line
CLI = ["--model=resnet8", f"--dataset={TINY}", "--epochs=1", "--batch_size=64", "--lr_milestones=", "--verbose=2"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seeds=0,1", "--seed=3"], "give either --seed or --seeds, not both"),
        (["--seeds=0,1,0"], "--seeds: 0 appears twice"),
        (["--seeds=2-1"], "range '2-1' is empty"),
        (["--seeds=0-1", "--pack_replicates=0"], "--pack_replicates must be at least 1"),
        (["--seeds=0-1", "--alpha=nan"], "alpha must be a finite number"),
    ],
)
def test_bad_seeds_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    completed = run_cli("tf_selectivity.train", *CLI, f"--output_dir={tmp_path / 'runs'}", *args)
    assert completed.returncode == 2, completed.stderr
    lines = error_lines(completed.stderr)
    assert len(lines) == 1 and message in lines[0], lines
    assert not os.path.exists(tmp_path / "runs")


def test_cli_trains_one_run_directory_per_seed_and_reruns_nothing(tmp_path):
    """`--seeds` with a `{seed}` placeholder; on TensorFlow the seeds train one
    after another (the packed program is tested above on JAX), each run as the
    single-seed command would write it."""
    pattern = str(tmp_path / "runs" / "a0_s{seed}")
    first = run_cli("tf_selectivity.train", *CLI, "--seeds=3,5", f"--output_dir={pattern}")
    assert first.returncode == 0, first.stderr
    assert "2 runs finished (2 completed)" in first.stdout
    for seed in (3, 5):
        summary = read_json(str(tmp_path / "runs" / f"a0_s{seed}" / "summary.json"))
        assert summary["seed"] == seed and summary["status"] == "completed"
    # A single run of one of the seeds finds its directory complete.
    alone = run_cli("tf_selectivity.train", *CLI, "--seed=5", f"--output_dir={tmp_path / 'runs' / 'a0_s5'}")
    assert alone.returncode == 0 and "already complete" in alone.stdout
    # The parent-directory form writes DIR/seedN.
    again = run_cli("tf_selectivity.train", *CLI, "--seeds=3", f"--output_dir={tmp_path / 'parent'}")
    assert again.returncode == 0 and os.path.exists(tmp_path / "parent" / "seed3" / "summary.json")
