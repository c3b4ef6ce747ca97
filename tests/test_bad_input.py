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
a second; the rows of a user's model function, a damaged checkpoint and a
damaged model load TensorFlow (about 5-10 s each).

After the table, what is not refused but must still end in one line and
keep the run resumable: --skip_bad_images over symbolic links, a full disk
while checkpointing (simulated: see FULL_DISK), Ctrl-C in the middle of an
epoch (both resume to the uninterrupted run's result, bit for bit), and
noise: CIFAR-10 offline, an alpha that overflows float32.
"""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

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
    ("train-window-start-after-end", _train("--alpha=-1", "--alpha_window=1:0.5"), "--alpha_window START must not be after END"),
    ("train-window-negative", _train("--alpha=-1", "--alpha_window=-1:1"), "--alpha_window must be non-negative epochs"),
    ("train-window-outside-the-run", _train("--alpha=-1", "--alpha_window=0:3"), "--alpha_window 0:3 lies outside the run's 1 epochs"),
    ("train-window-without-alpha", _train("--alpha_window=0:0.5"), "--alpha_window needs a non-zero alpha"),
    ("train-unknown-activation", _train("--activation=tanh"), "--activation=tanh: value should be one of <relu|leaky_relu>"),
    ("train-negative-seed", _train("--seed=-1"), "seed must be a non-negative integer"),
    ("train-validation-fraction", _train("--validation_fraction=1.5"), "validation_fraction must be in (0, 1)"),
    ("train-verbose-level", _train("--verbose=7"), "--verbose must be one of 0, 1, 2, 3"),
    ("train-no-output-dir", _train(output=None), "--output_dir is required"),
    ("train-batch-not-divisible", _train("--batch_size=10", "--devices=4"),
     "--batch_size is the global batch and must divide evenly over the 4 devices (--devices); got 10"),
    ("train-devices-not-a-number", _train("--devices=two"), "--devices must be all or a positive number"),
    ("train-per-device-batch", _train("--batch_size=8", "--devices=2", "--per_device_batch_size=8"),
     "--per_device_batch_size must be --batch_size / the devices = 8 / 2 = 4; got 8"),
    ("train-more-devices-than-exist", _train("--devices=64"), "--devices asks for 64 devices; this process sees"),
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
    # A user's model function (bad_models.py in the world) that fails: refused before the run directory.
    ("train-model-wrong-signature", _train("--model=bad_models:wrong_signature"), "bad_models:wrong_signature cannot be called with input_shape, num_classes"),
    ("train-model-returns-none", _train("--model=bad_models:returns_none"), "bad_models:returns_none returned None, not a Keras model"),
    ("train-model-raises", _train("--model=bad_models:raises"), "bad_models:raises raised RuntimeError: out of ideas"),
    ("train-model-no-convolution", _train("--model=bad_models:no_convolution"), "the model of bad_models:no_convolution cannot be instrumented: No layer"),
    ("train-model-sigmoid", _train("--model=bad_models:ends_in_sigmoid"), "bad_models:ends_in_sigmoid cannot be instrumented: The output layer 'scores' applies a sigmoid"),
    ("train-seeds-model-raises", _train("--model=bad_models:raises", "--seeds=0,1"), "bad_models:raises raised RuntimeError"),
    # An interrupted run whose checkpoint is damaged: nothing changes, config.json included.
    ("train-checkpoint-state-not-json", _train(output="{W}/damaged_state_run"), "the checkpoint file {W}/damaged_state_run/checkpoint/state.json is damaged (not valid JSON"),
    ("train-checkpoint-state-fields", _train(output="{W}/stateless_run"), "stateless_run/checkpoint/state.json is damaged (its 'epochs_done' is missing or not a integer)"),
    ("train-checkpoint-truncated-weights", _train(output="{W}/truncated_weights_run"), "truncated_weights_run/checkpoint/state.weights.h5 is damaged (not a readable HDF5 weights file"),
    ("train-checkpoint-best-missing", _train(output="{W}/no_best_run"), "no_best_run/checkpoint/best.weights.h5 is damaged (it is missing); delete {W}/no_best_run/checkpoint to train the run from its start, or restore"),
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
    ("analyze-damaged-summary", _analyze(runs="{W}/damaged_summary_run"), "summary.json is damaged (not valid JSON"),
    ("analyze-unfinished-run", _analyze(runs="{W}/unfinished_run"), "the run is not complete"),
    ("analyze-only-diverged", _analyze(runs="{W}/diverged_run"), "all 1 run(s) found diverged"),
    ("analyze-output-not-analysis", _analyze(output="{W}/someones_dir"), "holds no earlier analysis"),
    ("analyze-output-is-a-file", _analyze(output="{W}/a_file"), "exists and is a file"),
    ("analyze-output-unwritable", _analyze(output="/proc/tf_selectivity_analysis"), "cannot be created"),
    ("analyze-unknown-similarity-measure", _analyze("--similarity=pwcca,cka"), "--similarity must be among"),
    ("analyze-procrustes-alpha-out-of-range", _analyze("--procrustes_alpha=1.5"), "--procrustes_alpha"),
    ("analyze-debiased-cka-on-3-images", _analyze("--max_test_samples=3"), "--max_test_samples must be at least 4 with debiased CKA"),
    ("analyze-unknown-map-measure", _analyze("--similarity_maps", "--similarity_map_measure=rbf"), "--similarity_map_measure"),
    ("analyze-bad-cca-alpha", _analyze("--cca_alphas=-1,x"), "--cca_alphas must be comma-separated numbers; got -1,x"),
    ("analyze-dataset-missing", _analyze("--dataset=imagefolder:{W}/nope"), "image folder {W}/nope does not exist"),
    ("analyze-flagfile-missing", _analyze("--flagfile={W}/nope.flags"), "no such file"),
    ("analyze-damaged-model", _analyze(runs="{W}/damaged_model_run"), "model.keras could not be loaded (ValueError: it is not a Keras model file"),
    # Ablation and the null: refused with the flags, before any run is read.
    ("analyze-ablation-fraction-above-one", _analyze("--ablation", "--ablation_fractions=0,0.5,1.5"), "--ablation_fractions must be fractions in [0, 1]; got 1.5"),
    ("analyze-ablation-negative-fraction", _analyze("--ablation", "--ablation_fractions=-0.1,0.5"), "--ablation_fractions must be fractions in [0, 1]; got -0.1"),
    ("analyze-ablation-zero-random-orders", _analyze("--ablation", "--ablation_random_orders=0"), "--ablation_random_orders must be a positive integer; got 0"),
    ("analyze-ablation-unknown-mode", _analyze("--ablation", "--ablation_mode=noise"), "--ablation_mode"),
    ("analyze-ablation-zero-samples", _analyze("--unit_ablation", "--ablation_max_samples=0"), "--ablation_max_samples must be a positive integer; got 0"),
    ("analyze-null-negative-permutations", _analyze("--selectivity_null=-1"), "--selectivity_null must be a number of permutations B >= 1 (0: off); got -1"),
    ("analyze-pool-over-unknown", _analyze("--pool_over=epochs,epoch"), "--pool_over names no identity field of the runs that can be pooled: epoch; the fields are selectivity_index, dataset, epochs"),
    ("analyze-run-data-moved", _analyze(runs="{W}/moved_data_run"), "/nonexistent/cifar10-jpeg does not exist. The run's data are no longer at /nonexistent/cifar10-jpeg: if they moved, analyse them where they are now with --dataset=imagefolder:NEW_PATH"),
    # Unit galleries, selectivity while training: refused before anything is read or written.
    ("analyze-units-unknown-layer", _analyze("--units_page", "--units=probe_nope:3"), "--units names a layer no run has: probe_nope (the runs' probes: probe_stem)"),
    ("analyze-gallery-layers-unknown", _analyze("--units_page", "--gallery_layers=probe_stem,conv9"), "--gallery_layers names a layer no run has: conv9"),
    ("analyze-units-index-first", _analyze("--units_page", "--units=3,probe_stem:4"), "--units must start with a layer: LAYER:3,17,...; got '3' first"),
    ("analyze-units-negative-index", _analyze("--units_page", "--units=probe_stem:-1"), "--units must hold unit indices that are integers >= 0; got '-1'"),
    ("analyze-units-without-page", _analyze("--units=probe_stem:3"), "--units applies only with --units_page"),
    ("analyze-gallery-k-zero", _analyze("--units_page", "--gallery_k=0"), "--gallery_k must be a positive integer; got 0"),
    ("train-selectivity-every-negative", _train("--selectivity_every=-1"), "--selectivity_every must be a non-negative integer"),
    ("train-selectivity-every-steps-negative", _train("--selectivity_every_steps=-5"),
     "--selectivity_every_steps must be a non-negative integer"),
    ("train-selectivity-steps-until-beyond", _train("--selectivity_every_steps=5", "--selectivity_steps_until=2"),
     "--selectivity_steps_until is beyond the run's 1 epochs; got 2"),
    ("train-selectivity-steps-until-alone", _train("--selectivity_steps_until=0.5"),
     "--selectivity_steps_until needs --selectivity_every_steps"),
    ("train-keep-checkpoints-beyond", _train("--keep_checkpoints=0,0.5,2"),
     "--keep_checkpoints has epochs beyond the run's 1: 2"),
    ("train-keep-checkpoints-negative", _train("--keep_checkpoints=-1,0.5"), "--keep_checkpoints must be epochs >= 0"),
    ("train-keep-checkpoints-not-numbers", _train("--keep_checkpoints=0,half"), "--keep_checkpoints"),
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
    ("sweep-window-outside-the-run", _sweep("--alpha_windows=0:0.5,0:3"), "--alpha_window 0:3 lies outside the run's 1 epochs"),
    ("sweep-window-start-after-end", _sweep("--alpha_windows=1:0.5"), "--alpha_window START must not be after END"),
    ("sweep-window-repeated", _sweep("--alpha_windows=0:0.5,0.0:0.50"), "--alpha_windows: '0:0.5' appears twice"),
    ("sweep-window-and-windows", _sweep("--alpha_window=0:0.5", "--alpha_windows=0:0.5"), "not both"),
    ("sweep-window-search", _sweep("--mode=search", "--alpha_windows=0:0.5", alphas=None), "give --alpha_window(s) with --mode=grid"),
    ("sweep-slope-and-slopes", _sweep("--activation=leaky_relu", "--leaky_slope=0.1", "--leaky_slopes=0.2,0.3"), "not both"),
    ("sweep-other-settings", _sweep(output="{W}/other_sweep"), "holds a sweep with other settings (epochs: 200 there, 1 now)"),
    ("sweep-into-a-run", _sweep(output="{W}/good_run"), "is a training run directory, not a sweep"),
    ("sweep-output-not-a-sweep", _sweep(output="{W}/someones_dir"), "not empty and holds no sweep"),
    ("sweep-output-under-a-file", _sweep(output="{W}/a_file/sweep"), "is a file, not a directory"),
    ("sweep-output-unwritable", _sweep(output="/proc/tf_selectivity_sweep"), "cannot be created"),
    ("sweep-bad-model", _sweep("--model=resnet9"), "--model must be one of resnet8, resnet20"),
    ("sweep-model-wrong-signature", _sweep("--model=bad_models:wrong_signature"), "cannot be called with"),
    ("sweep-model-raises", _sweep("--model=bad_models:raises"), "bad_models:raises raised RuntimeError: out of ideas"),
    ("sweep-model-sigmoid", _sweep("--model=bad_models:ends_in_sigmoid"), "applies a sigmoid"),
    # CIFAR-10 from tensorflow-datasets is loaded per trial: the function is checked first all the same.
    ("sweep-cifar10-model-returns-none", _sweep("--model=bad_models:returns_none", "--dataset=cifar10"), "bad_models:returns_none returned None, not a Keras model"),
    ("sweep-aggregate-nothing", _sweep("--aggregate_only", output="{W}/someones_dir"), "holds no sweep"),
]


# ---------------------------------- --robustness
# CIFAR-10-C directories in the world: labels that do not match the images,
# images of another shape than the runs'.
def _robustness_world(root):
    for name, shape, count in (("cifar10c_bad_labels", (8, 8, 3), 19), ("cifar10c_wrong_shape", (16, 16, 3), 20)):
        os.makedirs(os.path.join(root, name))
        np.save(os.path.join(root, name, "fog.npy"), np.zeros((20, *shape), np.uint8))
        np.save(os.path.join(root, name, "labels.npy"), np.zeros(count, np.uint8))


CASES += [
    ("analyze-robustness-unknown-perturbation", _analyze("--robustness=cw"), "--robustness must be among corruptions:SOURCE"),
    ("analyze-robustness-unknown-source", _analyze("--robustness=corruptions:imagenetc:{W}"), "unknown corruption source 'imagenetc:"),
    ("analyze-robustness-unknown-corruption", _analyze("--robustness=corruptions:generated", "--corruptions=fog,rain"), "--corruptions names an unknown corruption 'rain' for generated"),
    ("analyze-robustness-corruption-not-generated", _analyze("--robustness=corruptions:generated", "--corruptions=frost"), "'frost' for generated (a CIFAR-10-C corruption that it does not have)"),
    ("analyze-robustness-severity-6", _analyze("--robustness=corruptions:generated", "--severities=1,6"), "--severities must be corruption severities from 1 to 5; got 6"),
    ("analyze-robustness-severity-0", _analyze("--robustness=corruptions:generated", "--severities=0"), "--severities must be corruption severities from 1 to 5; got 0"),
    ("analyze-robustness-negative-epsilon", _analyze("--robustness=fgsm", "--attack_epsilons=0,-2"), "--attack_epsilons must be attack budgets >= 0"),
    ("analyze-robustness-zero-steps", _analyze("--robustness=pgd", "--pgd_steps=0"), "--pgd_steps must be a positive integer; got 0"),
    ("analyze-robustness-labels-mismatch", _analyze("--robustness=corruptions:cifar10c:{W}/cifar10c_bad_labels"), "labels.npy holds (19,) labels but {W}/cifar10c_bad_labels/fog.npy holds 20 images"),
    ("analyze-robustness-shape-mismatch", _analyze("--robustness=corruptions:cifar10c:{W}/cifar10c_wrong_shape"), "fog.npy has images of shape (16, 16, 3) but the runs take (8, 8, 3)"),
    ("analyze-robustness-source-missing", _analyze("--robustness=corruptions:cifar10c:{W}/nope"), "cifar10c directory {W}/nope does not exist"),
    ("analyze-corruptions-without-source", _analyze("--robustness=fgsm", "--corruptions=fog"), "--corruptions only applies with --robustness=corruptions:SOURCE"),
]


# --------------------- analyze: what the runs cannot give, checked first
# Summary-only runs (no model: a check that came after the first pass would
# end in "no run could be analysed" instead), published corrupted sets that do
# not fit the test set (20 images of 2 classes) or the model's classes.
def _analysis_world(root):
    for alpha in (0.0, -1.0):
        _write(os.path.join(root, "no_replicates", f"a{alpha:g}", "summary.json"), json.dumps(_summary(alpha=alpha)))
    for name, per_severity, labels in (
            ("cifar10c_small", 4, np.zeros(20, np.int64)),
            ("cifar10c_label_range", 20, np.tile(np.array([0, 1, 2, -1]), 25)),
            ("cifar10c_float_labels", 20, np.zeros(100, np.float32))):
        os.makedirs(os.path.join(root, name))
        np.save(os.path.join(root, name, "fog.npy"), np.zeros((5 * per_severity, 8, 8, 3), np.uint8))
        np.save(os.path.join(root, name, "labels.npy"), labels)


CASES += [
    # Requested work that these runs cannot give: refused before the backend starts.
    ("analyze-similarity-one-run", _analyze("--similarity=pwcca"), "--similarity needs, for one model at least, runs at alpha = 0 and >= 2 replicates at another alpha (Figure 3 compares them); the runs given: resnet20 relu: alpha 0 (1 run)"),
    ("analyze-similarity-maps-one-run", _analyze("--similarity_maps"), "--similarity_maps needs, for one model at least, runs at alpha = 0"),
    ("analyze-cca-without-replicates", _analyze("--cca=true", runs="{W}/no_replicates"), "--cca needs, for one model at least, runs at alpha = 0 and >= 2 replicates at another alpha (Figure 3 compares them); the runs given: resnet8 relu: alpha -1 (1 run), alpha 0 (1 run)"),
    ("analyze-cca-alphas-no-run-has", _analyze("--cca_alphas=-5", runs="{W}/no_replicates"), "--cca_alphas names alphas no run has: -5"),
    ("analyze-ablation-layers-without-ablation", _analyze("--ablation_layers=probe_nope"), "--ablation_layers applies only with --ablation or --unit_ablation"),
    ("analyze-over-training-without-checkpoints", _analyze("--over_training"), "--over_training needs runs with kept checkpoints, and none of the 1 selected run(s) has any: train them with --keep_checkpoints="),
    ("analyze-robustness-set-smaller-than-test-set", _analyze("--robustness=corruptions:cifar10c:{W}/cifar10c_small"), "cifar10c_small/fog.npy holds 5 x 4 images but the test set has 20: a published corrupted set holds every test image once per severity"),
    ("analyze-robustness-labels-out-of-range", _analyze("--robustness=corruptions:cifar10c:{W}/cifar10c_label_range"), "cifar10c_label_range/labels.npy holds labels from -1 to 2 but the runs have 2 classes (0 to 1)"),
    ("analyze-robustness-labels-not-integers", _analyze("--robustness=corruptions:cifar10c:{W}/cifar10c_float_labels"), "cifar10c_float_labels/labels.npy must hold integer class indices; got float32"),
    ("analyze-robustness-tfds-not-prepared", _analyze("--robustness=corruptions:tfds:cifar10_corrupted", "--corruptions=fog", "--severities=1,2", "--data_dir={W}/someones_dir"), "cifar10_corrupted/fog_1 (and 1 more of the 2 asked for) is not prepared in {W}/someones_dir"),
    # Flags that were renamed or removed say so.
    ("analyze-cca-methods-renamed", _analyze("--cca_methods=pwcca"), "--cca_methods was renamed --similarity"),
    ("analyze-baseline-alpha-removed", _analyze("--baseline_alpha=0"), "--baseline_alpha was removed: the unregularized runs are alpha = 0 by the loss' definition"),
]


# ---------------------------------- streamed data (--dataset=stream:...)
# Record files that are not TFRecord, and a tfds directory without ImageNet's manual archives.
def _stream_world(root):
    _write(os.path.join(root, "records", "train-0-of-1"), "not a record\n")
    _write(os.path.join(root, "records", "validation-0-of-1"), "not a record\n")
    os.makedirs(os.path.join(root, "tfds_without_manual_files"))


STREAM = "--augmentation=random_resized_crop"
CASES += [
    ("train-stream-folder-missing", _train("--dataset=stream:imagefolder:{W}/nope", STREAM), "image folder {W}/nope does not exist; expected {W}/nope/{train,val}/<class>/<image>"),
    ("train-stream-folder-empty-class", _train("--dataset=stream:imagefolder:{W}/empty_class", STREAM), "empty_class/train/dog holds no images"),
    ("train-stream-tfrecord-no-files", _train("--dataset=stream:tfrecord:{W}/nope/{split}-*", STREAM), "no TFRecord file matches {W}/nope/train-*"),
    ("train-stream-tfrecord-unreadable", _train("--dataset=stream:tfrecord:{W}/records/{split}-*", STREAM), "cannot read the records of {W}/records/train-0-of-1 (not a TFRecord file"),
    ("train-stream-tfds-no-manual-files", _train("--dataset=stream:tfds:imagenet2012", "--data_dir={W}/tfds_without_manual_files", STREAM), "stream:tfds:imagenet2012 is not prepared in {W}/tfds_without_manual_files: prepare it once with `tfds build imagenet2012"),
    ("train-random-resized-crop-in-memory", _train("--augmentation=random_resized_crop"), "augmentation random_resized_crop needs a stream: dataset"),
    ("train-stream-skip-bad-images", _train("--dataset=stream:imagefolder:{W}/empty_class", STREAM, "--skip_bad_images"), "skip_bad_images applies to in-memory image folders"),
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
        "dataset": TINY, "num_classes": 2, "image_shape": [8, 8, 3], "num_test": 20,
    }
    summary.update(overrides)
    return summary


BAD_MODELS = '''"""A user's model functions that fail, for --model=bad_models:<name>."""
import keras


def wrong_signature(classes, shape):
    raise AssertionError("never called: the signature is refused first")


def returns_none(num_classes, input_shape):
    inputs = keras.Input(input_shape)
    keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.Flatten()(inputs)))


def raises(num_classes, input_shape):
    raise RuntimeError("out of ideas")


def no_convolution(num_classes, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.Flatten()(inputs)))


def ends_in_sigmoid(num_classes, input_shape):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="sigmoid", name="scores")(x))
'''


def _weights_file(path):
    """An HDF5 file laid out as a small weights file."""
    import h5py

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv/vars/0", data=np.arange(4096, dtype=np.float32))


def _interrupted_run(root, config):
    """A run of `config` interrupted after epoch 1 of 2 (config.json, checkpoint/)."""
    _write(os.path.join(root, "config.json"), json.dumps({"identity": config.identity(), "config": config.to_dict()}))
    state = {"epochs_done": 1, "best_epoch": 1, "best_value": 0.5, "monitor": "val_accuracy",
             "input_pipeline": "tf.data", "history": [{"epoch": 1, "val_accuracy": 0.5}]}
    _write(os.path.join(root, "checkpoint", "state.json"), json.dumps(state))
    _weights_file(os.path.join(root, "checkpoint", "state.weights.h5"))
    _weights_file(os.path.join(root, "checkpoint", "best.weights.h5"))


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture(scope="module")
def world_template(tmp_path_factory):
    from tf_selectivity.training.config import TrainConfig
    from tf_selectivity.sweeps.settings import settings_record, sweep_settings

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
    from tf_selectivity.training.summary import RunSummary

    _write(os.path.join(root, "diverged_run", "summary.json"),
           json.dumps(RunSummary.from_dict(_summary(alpha=1e300)).as_diverged(1, "loss is nan").to_dict()))
    _write(os.path.join(root, "damaged_model_run", "summary.json"), json.dumps(_summary()))
    _write(os.path.join(root, "damaged_model_run", "model.keras"), "PK but not really a zip archive")
    _write(os.path.join(root, "moved_data_run", "summary.json"),
           json.dumps(_summary(dataset="imagefolder:/nonexistent/cifar10-jpeg")))
    _write(os.path.join(root, "bad_models.py"), BAD_MODELS)
    # Interrupted runs of the table's training command, their checkpoints damaged.
    this = TrainConfig(model="resnet8", dataset=TINY, epochs=1, output_dir="x")
    for name in ("damaged_state_run", "stateless_run", "truncated_weights_run", "no_best_run"):
        _interrupted_run(os.path.join(root, name), this)
    _write(os.path.join(root, "damaged_state_run", "checkpoint", "state.json"), '{"epochs_done": 1, "best_ep')
    _write(os.path.join(root, "stateless_run", "checkpoint", "state.json"), '{"epochs_done": "one"}')
    weights = os.path.join(root, "truncated_weights_run", "checkpoint", "state.weights.h5")
    with open(weights, "rb") as f:
        data = f.read()
    with open(weights, "wb") as f:
        f.write(data[: len(data) // 2])
    os.remove(os.path.join(root, "no_best_run", "checkpoint", "best.weights.h5"))
    other = sweep_settings(TrainConfig(model="resnet8", dataset=TINY, epochs=200, output_dir="x"))
    _write(os.path.join(root, "other_sweep", "sweep.json"), json.dumps(settings_record(other)))
    os.makedirs(os.path.join(root, "cache"))  # XDG_CACHE_HOME: decoded image folders land here
    _robustness_world(root)
    _analysis_world(root)
    _stream_world(root)
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


# The rows whose command loads Keras before it refuses (a user's model
# function, a checkpoint, a saved model); the others answer before Keras is
# imported. Each row checks which it is.
LOADS_KERAS = {
    "analyze-run-data-moved", "train-model-wrong-signature", "train-model-returns-none", "train-model-raises", "train-model-no-convolution",
    "train-model-sigmoid", "train-seeds-model-raises", "train-checkpoint-state-not-json",
    "train-checkpoint-state-fields", "train-checkpoint-truncated-weights", "train-checkpoint-best-missing",
    "analyze-damaged-model", "sweep-model-wrong-signature", "sweep-model-raises", "sweep-model-sigmoid",
    "sweep-cifar10-model-returns-none", "train-more-devices-than-exist",
}
# The rows that run under every backend: one per command and kind of refusal
# that loads Keras, so that each command starts under each backend with
# nothing but its one line on stderr. The refusals themselves are Python,
# alike under any backend: the other rows run once, those that load no Keras
# as `backend_free` (the row checks that it loads none).
EVERY_BACKEND = {"train-model-sigmoid", "train-checkpoint-truncated-weights", "analyze-damaged-model", "sweep-model-sigmoid"}


def _row_marks(case_id):
    if case_id in EVERY_BACKEND:
        return [pytest.mark.backends]
    return [] if case_id in LOADS_KERAS else [pytest.mark.backend_free]


@pytest.mark.parametrize("case_id,command,expected", [
    pytest.param(*case, id=case[0], marks=_row_marks(case[0])) for case in CASES
])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(world_template, tmp_path, case_id, command, expected):
    world = _new_world(world_template, tmp_path)
    module, args = command
    expected = expected.replace("{W}", world)
    before = _tree(world)
    # Python lists every import on stderr ("import time: ... | module"): the row's mark is checked.
    completed = _run(module, args, world, _environment(world, tmp_path, PYTHONPROFILEIMPORTTIME="1"))
    imports = [line for line in completed.stderr.splitlines() if line.startswith("import time:")]
    lines = [line for line in _stderr_lines(completed) if not line.startswith("import time:")]
    assert completed.returncode == 2, (completed.returncode, "\n".join(lines)[-3000:])
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{COMMANDS[module]}: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert _tree(world) == before
    loads_keras = any(line.rsplit("|", 1)[-1].strip() == "keras" for line in imports)
    assert loads_keras == (case_id in LOADS_KERAS), f"update LOADS_KERAS: {case_id} loads Keras: {loads_keras}"


# Causes of tracebacks once seen, each in the table: symbolic links, a user's model
# function that fails, a damaged checkpoint, and a decode error that wrote
# the other split's cache (the full disk, Ctrl-C and the noise cases are the
# tests after the table).
ONCE_TRACEBACKS = [
    "train-folder-symlink-loop", "train-folder-dangling-symlink", "sweep-folder-symlink-loop",
    "sweep-folder-dangling-symlink", "train-model-wrong-signature", "train-model-returns-none", "train-model-raises",
    "train-model-no-convolution", "train-model-sigmoid", "train-seeds-model-raises", "sweep-model-wrong-signature",
    "sweep-model-raises", "sweep-model-sigmoid", "train-checkpoint-state-not-json", "train-checkpoint-state-fields",
    "train-checkpoint-truncated-weights", "train-checkpoint-best-missing", "train-folder-corrupt-train-only",
]


def test_the_table_is_big_enough():
    modules = [command[0] for _, command, _ in CASES]
    assert len(CASES) >= 90 and all(modules.count(m) >= 8 for m in COMMANDS)
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)
    assert set(ONCE_TRACEBACKS) <= {case_id for case_id, _, _ in CASES}
    assert EVERY_BACKEND <= LOADS_KERAS <= {case_id for case_id, _, _ in CASES}


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
           ANALYZE: ["--runs", "--bootstrap_resamples", "--similarity"],
           SWEEP: ["--alphas", "--seeds", "--mode", "--search_bounds", "--model", "--epochs"]}[module]
    short = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO, timeout=120).stdout
    for flag in own:
        assert f"\n  {flag}" in short or f"\n  --[no]{flag[2:]}" in short, flag
    # The train example's line continuation survives (a backslash, then the next line).
    if module == TRAIN:
        assert "--seed=0 \\\n        --dataset=cifar10" in short


# ------------------------------------------------- what is not refused


# Run once: decoding and skipping images is NumPy and PIL on every backend.
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


# ------------------------------------- full disk, Ctrl-C: the checkpoint holds
#
# A run of a few epochs long enough (about a second each) to be interrupted in
# the middle of one; the uninterrupted run is the reference a resumed one
# must equal.
LONG = "synthetic:train=1500,test=100,size=16,classes=2"
LONG_ARGS = ["--model=resnet8", f"--dataset={LONG}", "--epochs=3", "--batch_size=50", "--lr_milestones=",
             "--verbose=0"]

# A disk that fills up after the first checkpoint, simulated in the training
# process (a `sitecustomize` module on its PYTHONPATH): once checkpoint/
# state.json has been renamed into place, every file opened for writing under
# SIMULATED_FULL_DISK writes half of what it is given, then fails with ENOSPC
# as a full file system does. (TensorFlow's own C++ writers -- TensorBoard
# event files -- are not affected.)
FULL_DISK = '''
import builtins, errno, os

_root = os.environ["SIMULATED_FULL_DISK"]
_full = []
_open, _replace = builtins.open, os.replace


def _under(path):
    return os.path.abspath(os.fspath(path)).startswith(_root)


def replace(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    if _under(dst) and os.path.basename(os.fspath(dst)) == "state.json":
        _full.append(True)


class _FullFile:
    def __init__(self, file):
        self._file = file

    def write(self, data):
        self._file.write(data[: len(data) // 2])
        self._file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def open_(file, mode="r", *args, **kwargs):
    handle = _open(file, mode, *args, **kwargs)
    if _full and isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax") and _under(file):
        return _FullFile(handle)
    return handle


os.replace = replace
builtins.open = open_
'''


def _checkpoint(run_dir) -> dict:
    """The checkpoint's files, hashed (names and contents)."""
    return _tree(os.path.join(run_dir, "checkpoint"))


def _weights(path) -> dict:
    import h5py

    values = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: values.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return values


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted run of LONG_ARGS: (run directory, summary)."""
    root = tmp_path_factory.mktemp("reference")
    out = str(root / "run")
    completed = _run(TRAIN, [*LONG_ARGS, f"--output_dir={out}"], str(root), _environment(str(root), root))
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(os.path.join(out, "summary.json")) as f:
        return out, json.load(f)


def _assert_resumes_identically(run_dir, reference_run, world, tmp_path):
    completed = _run(TRAIN, [*LONG_ARGS, f"--output_dir={run_dir}"], world, _environment(world, tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    reference_dir, reference = reference_run
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    for key in ("best_epoch", "val_accuracy", "test_accuracy", "test_layer_selectivity", "test_mean_selectivity"):
        assert summary[key] == reference[key], key
    mine, theirs = (_weights(os.path.join(d, "checkpoint", "best.weights.h5")) for d in (run_dir, reference_dir))
    assert sorted(mine) == sorted(theirs)
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)


# Run once: the checkpoint's writes and their error are the same Python on
# every backend (RunCheckpoint); resuming under each backend is checked by
# the Ctrl-C test.
def test_full_disk_says_which_file_and_keeps_the_last_checkpoint(reference_run, tmp_path):
    world = str(tmp_path / "world")
    os.makedirs(world)
    run_dir = os.path.join(world, "run")
    site = tmp_path / "full_disk"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FULL_DISK)
    env = _environment(world, tmp_path, PYTHONPATH=f"{site}{os.pathsep}{REPO}", SIMULATED_FULL_DISK=run_dir)
    completed = _run(TRAIN, [*LONG_ARGS, f"--output_dir={run_dir}"], world, env)
    lines = _stderr_lines(completed)
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{COMMANDS[TRAIN]}: error: no space left on the device to write {run_dir}/checkpoint/")
    assert "free on its file system; the checkpoint of epoch 1 is intact: free space, then run the same command" in lines[0]
    # Epoch 1's checkpoint, complete; nothing of epoch 2 (no temporary left).
    with open(os.path.join(run_dir, "checkpoint", "state.json")) as f:
        assert json.load(f)["epochs_done"] == 1
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoint"))) == ["best.weights.h5", "state.json", "state.weights.h5"]
    _assert_resumes_identically(run_dir, reference_run, world, tmp_path)


@pytest.mark.backends
def test_ctrl_c_mid_epoch_says_after_which_epoch_and_resumes_identically(reference_run, tmp_path):
    import signal
    import time

    world = str(tmp_path / "world")
    os.makedirs(world)
    run_dir = os.path.join(world, "run")
    state = os.path.join(run_dir, "checkpoint", "state.json")
    process = subprocess.Popen(
        [sys.executable, "-m", TRAIN, *LONG_ARGS, f"--output_dir={run_dir}"], cwd=world,
        env=_environment(world, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 240
    while not os.path.exists(state) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into epoch 2
    kept = _checkpoint(run_dir)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 130, stderr[-3000:]
    with open(state) as f:
        done = json.load(f)["epochs_done"]
    assert done < 3, "the run ended before it was interrupted: make LONG longer"
    assert lines == [f"{COMMANDS[TRAIN]}: interrupted after epoch {done}; run the same command to resume"]
    if done == 1:
        assert _checkpoint(run_dir) == kept
    assert not os.path.exists(os.path.join(run_dir, "summary.json"))
    _assert_resumes_identically(run_dir, reference_run, world, tmp_path)


# ------------------ analyze: one writer, Ctrl-C, a full disk, broken runs
#
# An analysis stopped at any point (Ctrl-C, SIGTERM, a full disk, a kill -9)
# leaves the earlier analysis' outputs as they were and nothing half-written
# listed or lying about; the same command then computes what is missing and
# writes the tables an uninterrupted analysis writes, byte for byte
# (benchmarks/interrupt_analyze.py does this for every stage at random
# points).


def _outputs(out) -> dict:
    """The analysis' outputs in `out` (everything but its cache, lock and marker), hashed."""
    found = {}
    for directory, dirs, files in os.walk(out):
        relative = os.path.relpath(directory, out)
        if relative.split(os.sep)[0] == "cache":
            dirs[:] = []
            continue
        for name in files:
            if relative == "." and name in ("analysis.json", ".lock"):
                continue
            with open(os.path.join(directory, name), "rb") as f:
                found[os.path.normpath(os.path.join(relative, name))] = hashlib.sha256(f.read()).hexdigest()
    return found


def _left_behind(out) -> list:
    """Staging folders and temporaries anywhere under `out`."""
    return [os.path.join(directory, name) for directory, dirs, files in os.walk(out) for name in dirs + files
            if name.startswith(".analysis-") or ".tmp" in name]


def _tables(out) -> dict:
    return {name: digest for name, digest in _outputs(out).items() if name.endswith((".csv", ".parquet"))
            and os.sep not in name}


def _tiny(tiny_runs, *names):
    return [str(tiny_runs / "runs" / name) for name in names]


def test_a_second_analysis_into_the_same_directory_gets_one_line_and_touches_nothing(world_template, tmp_path):
    from tf_selectivity.analysis.outputs import AnalysisLockedError, OutputDirectory
    from tf_selectivity.core.files import exclusive_lock

    world = _new_world(world_template, tmp_path)
    out = os.path.join(world, "analysis")
    os.makedirs(out)
    with exclusive_lock(os.path.join(out, ".lock")):  # as the first analysis holds it while it writes
        before = _tree(world)
        completed = _run(ANALYZE, _analyze()[1], world, _environment(world, tmp_path))
        assert completed.returncode == 2, completed.stderr[-3000:]
        assert _stderr_lines(completed) == [
            f"{COMMANDS[ANALYZE]}: error: another process is analysing into {out}; wait for it or use another "
            "--output_dir"]
        # Two processes may pass that check together: the second is refused at its first write.
        with pytest.raises(AnalysisLockedError, match="another process is analysing into"):
            OutputDirectory(out).begin()
        assert _tree(world) == before


def test_an_analysis_killed_while_moving_into_place_is_completed_by_the_next(tmp_path, monkeypatch):
    """A kill -9 at each rename of `commit` in turn (its files' included): before
    the staging folder is marked finished the next analysis finds the earlier
    one as it was, after it that one finishes the move before anything else:
    the directory holds the whole of one analysis, never a mix."""
    import itertools

    from tf_selectivity.analysis import outputs

    def stage(out, files):
        for name, text in files.items():
            with open(os.path.join(out.begin().staging, name), "w") as f:
                f.write(text)

    def listed(path):
        return {name: open(os.path.join(path, name)).read() for name in sorted(os.listdir(path)) if name.endswith(".csv")}

    earlier = {"runs.csv": "earlier", "gone.csv": "only the earlier analysis has it"}
    new = {"runs.csv": "new", "units.csv": "new too"}
    seen = set()
    for cut in itertools.count():
        path = str(tmp_path / f"cut{cut}")
        first = outputs.OutputDirectory(path)
        stage(first, earlier)
        first.commit()
        killed = outputs.OutputDirectory(path)
        stage(killed, new)
        replace, renames = os.replace, []

        def dying_replace(source, target, *args, **kwargs):
            if len(renames) == cut:
                raise SystemExit("killed")  # nothing after this point runs, as after a kill -9
            renames.append(target)
            replace(source, target, *args, **kwargs)

        monkeypatch.setattr(outputs.os, "replace", dying_replace)
        try:
            killed.commit()
            finished = True
        except SystemExit:
            finished = False
        monkeypatch.setattr(outputs.os, "replace", replace)
        if finished:
            break
        marked = bool(glob.glob(os.path.join(path, ".analysis-*.ready")))
        seen.add(marked)
        outputs.OutputDirectory(path).begin().abort()
        expected = new if marked else earlier
        assert listed(path) == expected, cut
        assert json.load(open(os.path.join(path, "analysis.json")))["outputs"] == sorted(expected), cut
        assert _left_behind(path) == [], cut
    assert cut >= 5 and seen == {False, True}


def _full_disk_open(monkeypatch, hit):
    """Writes to a file for which `hit(path)` is true fail as on a full file system (half written, then ENOSPC)."""
    import builtins
    import errno
    import io

    real_open = builtins.open

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax") and hit(os.fspath(file)):
            return Full(handle)
        return handle

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # pathlib's


def test_a_full_disk_anywhere_names_the_path_keeps_the_earlier_analysis_and_resumes_identically(
        tiny_runs, tmp_path, monkeypatch):
    from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions, UnitsOptions
    from tf_selectivity.analysis.pipeline import analyze
    from tf_selectivity.core.files import NoSpaceError

    runs = _tiny(tiny_runs, "a0_s0", "a-10_s0")  # two alphas: figures to draw
    options = AnalysisOptions(max_test_samples=40, n_resamples=50, similarity=SimilarityOptions(enabled="false"),
                              units=UnitsOptions(page=True, gallery_layers=("probe_stem",), gallery_k=2))
    out = tmp_path / "out"
    analyze(runs, str(out), options, verbose=0)  # the earlier analysis, and what an uninterrupted one writes
    earlier, tables = _outputs(out), _tables(out)
    staged = f"{os.sep}.analysis-"
    new_galleries = dataclasses.replace(options, units=dataclasses.replace(options.units, gallery_k=3))
    places = [  # (what fills the disk, the options, where the message says it was writing)
        ("the cache", lambda p: f"{os.sep}cache{os.sep}" in p, new_galleries, str(out / "cache" / "units")),
        ("a table", lambda p: staged in p and os.path.basename(p).startswith("runs.csv"), options,
         str(out / "runs.csv")),
        ("a figure", lambda p: staged in p and f"{os.sep}figures{os.sep}" in p, options, str(out / "figures")),
        ("the unit page", lambda p: staged in p and f"{os.sep}units{os.sep}" in p, options, str(out / "units")),
        ("the report", lambda p: staged in p and p.endswith("report.md"), options, str(out / "report.md")),
    ]
    for place, hit, asked, named in places:
        with monkeypatch.context() as patch:
            _full_disk_open(patch, hit)
            try:
                analyze(runs, str(out), asked, verbose=0)
            except NoSpaceError as error:
                message = str(error)
            else:
                pytest.fail(f"a full disk while writing {place} went unnoticed")
        assert message.startswith(f"no space left on the device to write {named}"), (place, message)
        assert "free on its file system" in message and f"the earlier analysis in {out} is unchanged" in message
        assert _outputs(out) == earlier, place
        assert _left_behind(out) == [], place
    # The cached units of the aborted analyses serve the next; the tables are those of an uninterrupted one.
    analyze(runs, str(out), options, verbose=0)
    assert _tables(out) == tables and len(tables) > 10


def test_ctrl_c_and_sigterm_say_one_line_and_keep_the_earlier_analysis_and_the_finished_runs(tiny_runs, tmp_path):
    import signal
    import time

    from tf_selectivity.analysis.options import AnalysisOptions
    from tf_selectivity.analysis.pipeline import analyze

    runs = _tiny(tiny_runs, "a0_s0", "a0_s1", "a-10_s0", "a-10_s1")
    out = tmp_path / "out"
    analyze(runs[:1], str(out), AnalysisOptions(n_resamples=50, figures=False), verbose=0)
    earlier = _outputs(out)
    flags = [f"--runs={','.join(runs)}", f"--output_dir={out}", "--bootstrap_resamples=50", "--nofigures",
             "--cca=false", "--selectivity_null=40", "--verbose=0"]
    entries = lambda: len(list((out / "cache" / "selectivity").glob("*/result.json")))  # noqa: E731
    for number, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        done = entries()
        process = subprocess.Popen([sys.executable, "-m", ANALYZE, *flags], cwd=str(tmp_path),
                                   env=_environment(str(tmp_path), tmp_path), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while entries() == done and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        process.send_signal(number)  # between one run's cache entry and the next
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == status, stderr[-3000:]
        assert [line for line in stderr.splitlines() if line.strip()] == [
            f"{COMMANDS[ANALYZE]}: interrupted; the earlier analysis in {out} is unchanged and the runs analysed so "
            "far are kept in its cache: run the same command to resume"]
        assert _outputs(out) == earlier and _left_behind(out) == []
    # Each kept what it finished (the resumed tables equal an uninterrupted analysis': the full-disk test
    # above, test_stages and benchmarks/interrupt_analyze.py).
    assert 1 + 2 <= entries() < 1 + len(runs), "the analysis ended before it was interrupted"


def _with_nonfinite_weights(source, target):
    """A copy of the run `source` whose model.keras holds NaN in its first float weight (its SavedModel as was)."""
    import zipfile

    import h5py

    shutil.copytree(source, target)
    path = os.path.join(target, "model.keras")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = os.path.join(target, "weights.h5")
    with open(weights, "wb") as f:
        f.write(members["model.weights.h5"])
    with h5py.File(weights, "r+") as f:
        found = []
        f.visititems(lambda name, item: found.append(item) if isinstance(item, h5py.Dataset) and item.dtype.kind == "f"
                     else None)
        found[0][...] = np.nan
    with open(weights, "rb") as f:
        members["model.weights.h5"] = f.read()
    os.remove(weights)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_untrusted_runs_capped_requests_and_comparisons_left_out_are_said_once_in_the_warnings(tiny_runs, tmp_path):
    from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions
    from tf_selectivity.analysis.nonfinite import WatchedResponses
    from tf_selectivity.analysis.pipeline import analyze
    from tf_selectivity.training.summary import RunSummary

    lone = str(tmp_path / "lone")  # alpha -5, one run: Figure 3 cannot use it; its weights hold NaN
    _with_nonfinite_weights(tiny_runs / "runs" / "a-10_s0", lone)
    summary = RunSummary.read(os.path.join(lone, "summary.json"))
    RunSummary.from_dict({**summary.to_dict(), "alpha": -5.0}).write(os.path.join(lone, "summary.json"))
    runs = [*_tiny(tiny_runs, "a0_s0", "a0_s1", "a-10_s0", "a-10_s1"), lone]
    options = AnalysisOptions(max_test_samples=10_000, n_resamples=50, figures=False,
                              similarity=SimilarityOptions(enabled="true", measures=("pwcca",)))
    out = tmp_path / "out"
    analyze(runs, str(out), options, verbose=0)
    table = pd.read_csv(out / "warnings.csv")
    warnings = list(table["warning"])
    assert [w for w in warnings if w.startswith(f"{lone}: its weights hold NaN or Inf")], warnings
    assert len([w for w in warnings if w.startswith("--max_test_samples=10000 is more than the 200 test images")]) == 1
    assert "Figure 3 leaves out resnet8 relu at alpha -5: one run there, and the distance between replicates " \
           "needs >= 2" in warnings
    # Beside the claims' gates (these tiny networks are at chance), each said once.
    assert len(table[~table["stage"].isin(["claims", "chance"])]) == 3, warnings
    report = (out / "report.md").read_text()
    assert report.index("## Warnings") < report.index("## Headline results") and all(w in report for w in warnings)
    # Responses that hold NaN or Inf (e.g. an overflow) are counted as the pass goes.
    watched = WatchedResponses(lambda images: {"logits": np.zeros((2, 3)), "conv": np.array([[np.nan, 1], [np.inf, 0]])})
    watched(None)
    assert watched.warning("/r") == ("/r: its responses hold NaN or Inf (2 values, in conv); its SI, precision and "
                                     "accuracy count them as 0 and cannot be trusted")


def test_a_published_set_is_read_at_the_analysed_images_positions(tmp_path):
    """--max_test_samples analyses a class-balanced part of the test split: a
    published corrupted set (the whole split, in its order) is read at the
    same positions, and one shorter than them is an error, not an IndexError."""
    from tf_selectivity.analysis.options import AnalysisOptions
    from tf_selectivity.analysis.context import AnalysisContext, RunContext, TestDataLoader
    from tf_selectivity.analysis.runs import RunRecord
    from tf_selectivity.data.corruptions import CorruptedSetError, load_corrupted
    from tf_selectivity.training.summary import RunSummary

    record = RunRecord(str(tmp_path), RunSummary.from_dict(_summary(
        dataset="synthetic:train=40,test=12,size=8,classes=3", num_classes=3)), {})
    options = AnalysisOptions(max_test_samples=6)
    context = AnalysisContext(options=options, records=[record], test_data=TestDataLoader(options))
    run = RunContext(record, context)
    split = TestDataLoader(AnalysisOptions()).for_run(record)
    for data in (run.test_data, run.subset(3)):
        np.testing.assert_array_equal(split.images[data.chosen], data.images)
    root = tmp_path / "c"
    root.mkdir()
    np.save(root / "fog.npy", np.concatenate([split.images] * 5))
    np.save(root / "labels.npy", np.concatenate([split.labels] * 5))
    images, labels = load_corrupted(f"cifar10c:{root}", "fog", 2, indices=run.subset(3).chosen)
    np.testing.assert_array_equal(images, run.subset(3).images)
    np.save(root / "fog.npy", np.concatenate([split.images[:4]] * 5))
    np.save(root / "labels.npy", np.concatenate([split.labels[:4]] * 5))
    with pytest.raises(CorruptedSetError, match="holds 4 images per severity but the test set has more"):
        load_corrupted(f"cifar10c:{root}", "fog", 1, indices=run.subset(3).chosen)


def test_what_figure_3_can_compare_is_known_before_the_data(tmp_path):
    from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions
    from tf_selectivity.analysis.runs import RunRecord
    from tf_selectivity.analysis.stage import StageSkipped
    from tf_selectivity.analysis.stages.similarity.stage import SimilarityStage
    from tf_selectivity.core.settings import ParameterError
    from tf_selectivity.training.summary import RunSummary

    def runs(*conditions):
        return [RunRecord(str(tmp_path / f"{model}_{alpha}_{seed}"), RunSummary.from_dict(_summary(
            model=model, alpha=alpha, seed=seed)), {}) for model, alpha, seed in conditions]

    stage = SimilarityStage()
    auto, required = AnalysisOptions(), AnalysisOptions(similarity=SimilarityOptions(enabled="true"))
    lone = runs(("resnet8", 0.0, 0), ("resnet8", -1.0, 0))
    with pytest.raises(StageSkipped):
        stage.check(lone, auto)
    with pytest.raises(ParameterError, match="the runs given: resnet8 relu: alpha -1 \\(1 run\\), alpha 0 \\(1 run\\)"):
        stage.check(lone, required)
    from tf_selectivity.analysis.stages.similarity.coverage import coverage

    partial = runs(("resnet8", 0.0, 0), ("resnet8", 0.0, 1), ("resnet8", -1.0, 0), ("resnet8", -1.0, 1),
                   ("resnet8", -2.0, 0), ("resnet20", -1.0, 0), ("resnet20", -1.0, 1))
    stage.check(partial, required)
    found = coverage(partial, AnalysisOptions(similarity=SimilarityOptions(alphas=(-1.0, -2.0, -7.0))))
    assert found.comparable and found.left_out == [
        "Figure 3 leaves out resnet8 relu at alpha -2: one run there, and the distance between replicates needs >= 2",
        "Figure 3 leaves out resnet20 relu: it has no run at alpha = 0 to compare alpha -1 with",
        "--cca_alphas names alpha -7, which no run has",
    ]


# ---------------------------------------------------------------- noise


@pytest.mark.backends
def test_cifar10_offline_says_one_line_without_tensorflow_datasets_warnings(tmp_path):
    """No network (simulated: every connection refused) and no prepared
    CIFAR-10: the one line of the error, no absl warning of tensorflow-datasets
    before it ("Variant folder ... has no dataset_info.json")."""
    world = str(tmp_path / "world")
    os.makedirs(world)
    site = tmp_path / "offline"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import socket\n\n\ndef _refuse(*args, **kwargs):\n"
        "    raise OSError(101, 'Network is unreachable')\n\n\nsocket.create_connection = _refuse\n"
    )
    env = _environment(world, tmp_path, PYTHONPATH=f"{site}{os.pathsep}{REPO}",
                       TFDS_DATA_DIR=os.path.join(world, "tensorflow_datasets"))
    before = _tree(world)
    completed = _run(TRAIN, _train("--dataset=cifar10")[1], world, env)
    lines = _stderr_lines(completed)
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{COMMANDS[TRAIN]}: error: CIFAR-10 is not prepared in"), lines[0]
    assert "cannot be reached (no network?)" in lines[0]
    assert _tree(world) == before


@pytest.mark.backends
def test_an_alpha_that_overflows_float32_diverges_without_numpy_warnings(tmp_path):
    world = str(tmp_path / "world")
    os.makedirs(world)
    completed = _run(TRAIN, _train("--alpha=1e300", "--verbose=0")[1], world, _environment(world, tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert _stderr_lines(completed) == []
    with open(os.path.join(world, "out", "summary.json")) as f:
        summary = json.load(f)
    assert (summary["status"], summary["diverged_epoch"]) == ("diverged", 1)
