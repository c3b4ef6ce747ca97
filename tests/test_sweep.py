"""Sweeps on keras-tuner: plans, the oracle, flags, resume, tables, TensorBoard.

The end-to-end tests train real (tiny) runs in `python -m tf_selectivity.sweep`
subprocesses: resnet8 on the synthetic dataset, 2 alphas x 2 seeds.
"""

import copy
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, error_lines

from tf_selectivity.sweeps import plans
from tf_selectivity.sweeps.layout import format_float, run_name
from tf_selectivity.sweeps.options import SweepOptions

# keras-tuner 1.4.8's `synchronized` uses threading's deprecated camelCase names.
pytestmark = pytest.mark.filterwarnings(
    "ignore:currentThread:DeprecationWarning", "ignore:getName:DeprecationWarning"
)

TINY = [
    "--model=resnet8",
    "--dataset=synthetic:train=500,test=200,size=16",
    "--batch_size=64",
    "--lr_milestones=",
    "--verbose=2",
]


def sweep_command(*args):
    return [sys.executable, "-m", "tf_selectivity.sweep", *TINY, *args]


def run_sweep_cli(*args, timeout=300, env=None):
    return subprocess.run(
        sweep_command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def train_sessions(run_dir) -> int:
    """How many times training started in a run: one TensorBoard file per `fit`."""
    return len(glob.glob(os.path.join(run_dir, "logs", "train", "events.out.tfevents.*")))


def trial_records(sweep_dir) -> list:
    records = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, "tuner", "trial_*", "trial.json"))):
        with open(path) as f:
            records.append(json.load(f))
    return records


# ------------------------------------------------------------------ naming


def test_run_names_are_readable_unique_and_round_trip(rng):
    assert run_name("resnet20", "relu", 0.0, -1.0, 3) == "resnet20_relu_alpha-1_seed3"
    assert run_name("resnet20", "leaky_relu", 0.1, 0.5, 0) == "resnet20_leaky0.1_alpha0.5_seed0"
    assert run_name("vgg16", "relu", 0.0, -0.0, 0) == run_name("vgg16", "relu", 0.0, 0.0, 0)
    assert format_float(-30.0) == "-30" and format_float(1e-5) == "1e-05"
    # A window of training is named where there is one; the whole run keeps the old names.
    assert run_name("resnet20", "relu", 0.0, -10.0, 0, "0:2") == "resnet20_relu_alpha-10_window0-2_seed0"
    assert run_name("resnet20", "relu", 0.0, -10.0, 0, "0.5:end") == "resnet20_relu_alpha-10_window0.5-end_seed0"
    assert run_name("resnet20", "relu", 0.0, -1.0, 3, None) == "resnet20_relu_alpha-1_seed3"
    for value in np.concatenate([rng.normal(size=50), -(10.0 ** rng.uniform(-4, 3, size=50))]):
        text = format_float(value)
        assert float(text) == float(value)
        assert set(text) <= set("0123456789.-+e")


# ------------------------------------------------------------------ plans


def test_grid_plan_is_seed_major_and_needs_only_missing_points():
    plan = plans.GridPlan([0, -1], [0, 1], [0.0])
    assert [(p.alpha, p.seed) for p in plan.points] == [(0.0, 0), (-1.0, 0), (0.0, 1), (-1.0, 1)]
    done = {plan.points[0]: plans.Outcome(plans.COMPLETED, {"val_accuracy": 0.5})}
    step = plan.step(done)
    assert step.needed == plan.points[1:] and step.total == 4 and not step.finished
    every = {p: plans.Outcome(plans.FAILED) for p in plan.points}
    assert plan.step(every).finished


def test_grid_plan_crosses_windows_with_alphas_and_seeds():
    plan = plans.GridPlan([0, -1, -10], [0, 1], [0.0], ["0:1", "1:end"])
    seed0 = [(p.alpha, p.alpha_window) for p in plan.points if p.seed == 0]
    # alpha = 0 has nothing to switch: one run, the baseline of both windows.
    assert seed0 == [(0.0, None), (-1.0, "0:1"), (-10.0, "0:1"), (-1.0, "1:end"), (-10.0, "1:end")]
    assert len(plan.points) == 10 and plan.describe()["alpha_windows"] == ["0:1", "1:end"]
    assert "alpha_windows" not in plans.GridPlan([0, -1], [0]).describe()  # sweeps without windows: as before


def test_oracle_hands_out_windows_and_names_their_runs(tmp_path):
    oracle = _tuner(tmp_path, plans.GridPlan([-1], [0], [0.0], ["0:1", None])).oracle
    first, second = oracle.create_trial("a"), oracle.create_trial("b")
    assert first.hyperparameters.values["alpha_window"] == "0:1"
    assert "alpha_window" not in second.hyperparameters.values  # the whole run: recorded as before
    assert oracle.run_name(first) == "resnet8_relu_alpha-1_window0-1_seed0"
    assert oracle.run_name(second) == "resnet8_relu_alpha-1_seed0"


def _search_until_done(plan, accuracy):
    """Runs the plan against a known accuracy curve; returns (result, points run)."""
    outcomes, ran = {}, []
    for _ in range(50):
        step = plan.step(outcomes)
        if step.finished:
            return step.result, ran
        assert step.needed
        for point in step.needed:
            ran.append(point)
            outcomes[point] = plans.Outcome(plans.COMPLETED, {"val_accuracy": accuracy(point.alpha, point.seed)})
    raise AssertionError("the search did not finish")


def test_margin_search_bisects_log_alpha_to_the_resolution():
    # Mean accuracy over seeds is 0.9 - 0.01 |alpha|: within a 0.05 margin iff |alpha| <= 5.
    def accuracy(alpha, seed):
        return 0.9 - 0.01 * abs(alpha) + (0.002 if seed else -0.002)

    plan = plans.MarginSearchPlan(seeds=[0, 1], weakest=-0.1, strongest=-100, margin=0.05, resolution=2.0)
    result, ran = _search_until_done(plan, accuracy)
    within, outside = result["strongest_alpha_within_margin"], result["weakest_alpha_outside_margin"]
    assert -5 <= within < 0 and outside < -5
    assert abs(outside) / abs(within) <= 2.0
    evaluated = [row["alpha"] for row in result["evaluated"]]
    assert len(ran) == 2 * (1 + len(evaluated))  # every alpha, baseline included, with both seeds
    assert len(evaluated) <= 8  # log-scale bisection, not a grid
    assert all(float(f"{abs(a):.3g}") == abs(a) for a in evaluated)


def test_margin_search_stops_at_the_bounds():
    free = plans.MarginSearchPlan([0], -0.1, -100, margin=0.5, resolution=2.0)
    result, ran = _search_until_done(free, lambda alpha, seed: 0.9 - 0.001 * abs(alpha))
    assert result["strongest_alpha_within_margin"] == -100 and len(ran) == 2
    costly = plans.MarginSearchPlan([0], 0.1, 5, margin=0.01, resolution=2.0)
    result, _ = _search_until_done(costly, lambda alpha, seed: 0.9 - abs(alpha))
    assert result["strongest_alpha_within_margin"] is None
    assert result["weakest_alpha_outside_margin"] == 0.1
    with pytest.raises(ValueError):
        plans.MarginSearchPlan([0], -0.1, 100, margin=0.01, resolution=2.0)


def test_margin_search_treats_a_diverged_alpha_as_outside_the_margin():
    # Free up to |alpha| = 20; from |alpha| > 20 on, seed 1 diverges.
    def run(point):
        if abs(point.alpha) > 20 and point.seed == 1:
            return plans.Outcome(plans.DIVERGED, {"diverged_epoch": 3.0})
        return plans.Outcome(plans.COMPLETED, {"val_accuracy": 0.9})

    plan = plans.MarginSearchPlan(seeds=[0, 1], weakest=-0.1, strongest=-100, margin=0.05, resolution=2.0)
    outcomes = {}
    for _ in range(50):
        step = plan.step(outcomes)
        if step.finished:
            break
        outcomes.update({point: run(point) for point in step.needed})
    result = step.result
    within, outside = result["strongest_alpha_within_margin"], result["weakest_alpha_outside_margin"]
    assert -20 <= within < 0 and -40 <= outside < -20
    diverged_rows = [row for row in result["evaluated"] if row.get("diverged_seeds")]
    assert diverged_rows and all(not row["within_margin"] and row["mean_val_accuracy"] is None for row in diverged_rows)
    assert plans.Outcome(plans.DIVERGED).finished and not plans.Outcome(plans.DIVERGED).completed
    # A diverged baseline: no answer, and it says why.
    base = plans.MarginSearchPlan([0], -0.1, -100, margin=0.05, resolution=2.0)
    step = base.step({plans.Point.make(0, 0, 0): plans.Outcome(plans.DIVERGED),
                      plans.Point.make(0, -100, 0): plans.Outcome(plans.COMPLETED, {"val_accuracy": 0.9})})
    assert step.finished and "alpha = 0 diverged" in step.result["message"]


# ------------------------------------------------------------------ flags


def test_list_flags_reject_non_numbers_repeats_negatives_and_empty_lists():
    from tf_selectivity.core.cli import UsageError
    from tf_selectivity.sweep import parse_alphas, parse_leaky_slopes, parse_seeds

    assert parse_alphas("0,-0.1,-1e1") == [0.0, -0.1, -10.0]
    assert parse_seeds("0,3-5") == [0, 3, 4, 5]
    assert parse_leaky_slopes("0.01,0.5") == [0.01, 0.5]
    bad = [
        (parse_alphas, "0,x", "not a number"),
        (parse_alphas, "0,-1,-1.0", "appears twice"),
        (parse_alphas, "0,-0", "appears twice"),
        (parse_alphas, "", "empty"),
        (parse_alphas, "0,nan", "finite"),
        (parse_seeds, "0,1,0", "appears twice"),
        (parse_seeds, "0-3,2", "appears twice"),
        (parse_seeds, "-1", "negative"),
        (parse_seeds, "0,one", "not an integer"),
        (parse_seeds, "5-2", "empty"),
        (parse_seeds, " , ", "empty"),
    ]
    for parse, text, message in bad:
        with pytest.raises(UsageError, match=message):
            parse(text)


def test_cli_rejects_bad_input_and_conflicting_directories_in_one_line(resumed_sweep, tmp_path):
    out = resumed_sweep["out"]
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(f"{out}/**", recursive=True)}
    cases = {
        # (The other list errors are checked in-process above.)
        "alpha": ([f"--output_dir={tmp_path / 'a'}", "--alphas=0,-1,oops", "--seeds=0"], "'oops' is not a number"),
        # The sweep of the fixture has --epochs=2: a different value is refused.
        "conflict": ([f"--output_dir={out}", "--alphas=0,-1", "--seeds=0,1", "--epochs=3"], "epochs: 2 there, 3 now"),
    }
    # In parallel: each pays TensorFlow's start-up.
    procs = {
        name: subprocess.Popen(sweep_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        for name, (args, _) in cases.items()
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        lines = error_lines(stderr)
        assert proc.returncode == 2, (name, stderr)
        assert len(lines) == 1 and lines[0].startswith("python -m tf_selectivity.sweep: error: "), lines
        assert cases[name][1] in lines[0]
    assert not (tmp_path / "a").exists()
    after = {p: os.stat(p).st_mtime_ns for p in glob.glob(f"{out}/**", recursive=True)}
    assert after == before  # nothing written in the refused directory


def test_the_sweeps_own_flags_are_its_settings_each_defined_once():
    """Every flag of PlanOptions and SweepOptions has its field's default and
    help; the spec, the oracle's scheduler and the command share them."""
    script = """
import dataclasses, json
from absl import flags
from tf_selectivity import sweep as cli
from tf_selectivity.sweeps.options import PlanOptions, SweepOptions
cli.define_flags()
FLAGS = flags.FLAGS
FLAGS(["sweep", "--output_dir=/nonexistent/sweep", "--alphas=0"])
out = {}
for cls in (PlanOptions, SweepOptions):
    for field in dataclasses.fields(cls):
        out[field.name] = [FLAGS[field.name].default == field.default, FLAGS[field.name].help.endswith(field.metadata["help"])]
out["spec"] = dataclasses.asdict(cli.build_spec(FLAGS).options) == dataclasses.asdict(SweepOptions())
print(json.dumps(out))
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert completed.returncode == 0, completed.stderr
    checks = json.loads(completed.stdout.strip().splitlines()[-1])
    assert checks.pop("spec") is True
    assert set(checks) == {"alphas", "seeds", "leaky_slopes", "alpha_windows", "mode", "search_bounds", "search_margin",
                           "search_resolution", "max_retries", "max_consecutive_failures", "worker_timeout",
                           "chief_timeout"}
    assert all(same_default and same_help for same_default, same_help in checks.values()), checks
    from tf_selectivity.sweeps.runner import SweepSpec
    from tf_selectivity.sweeps.scheduler import Scheduler

    assert Scheduler().options == SweepOptions() == SweepSpec(base_config=None, output_dir="x", plan=None).options


def test_presets_define_the_paper_and_smoke_sweeps(tmp_path):
    """Parses every preset (in a subprocess: absl's global flags). The ImageNet one reads a
    tensorflow-datasets directory that looks prepared."""
    tfds_dir = tmp_path / "tfds"
    (tfds_dir / "imagenet2012" / "5.1.0").mkdir(parents=True)
    (tfds_dir / "imagenet2012" / "5.1.0" / "dataset_info.json").write_text("{}")
    script = """
import json
from absl import flags
from tf_selectivity import sweep as cli
from tf_selectivity.core.cli import presets
cli.define_flags()
FLAGS = flags.FLAGS
out = {}
paths = {name: path for name, (path, _) in presets().items()}
for name, path in paths.items():
    FLAGS.unparse_flags()
    FLAGS(["sweep", "--flagfile=" + path, *(["--data_dir=TFDS_DIR"] if "imagenet" in name else [])])
    spec = cli.build_spec(FLAGS)
    out[name] = {"plan": spec.plan.describe(), "settings": spec.settings, "output_dir": FLAGS.output_dir}
FLAGS.unparse_flags()
FLAGS(["sweep", "--flagfile=" + paths["paper_resnet20_suppress"], "--dataset=cifar10_sample"])
out["override"] = cli.build_spec(FLAGS).settings["dataset"]
# Search mode with a preset: its --alphas list is ignored, or cleared by a later --alphas=.
for extra in ([], ["--alphas="]):
    FLAGS.unparse_flags()
    FLAGS(["sweep", "--flagfile=" + paths["smoke_resnet20_suppress"], "--mode=search", *extra])
    out["search" + "".join(extra)] = cli.build_spec(FLAGS).plan.describe()
FLAGS.unparse_flags()
FLAGS(["sweep", "--flagfile=" + paths["smoke_resnet20_leaky"], "--leaky_slopes=", "--leaky_slope=0.1"])
out["cleared_slopes"] = cli.build_spec(FLAGS).plan.describe()["leaky_slopes"]
print(json.dumps(out))
"""
    script = script.replace("TFDS_DIR", str(tfds_dir))
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert completed.returncode == 0, completed.stderr
    specs = json.loads(completed.stdout.strip().splitlines()[-1])
    assert specs.pop("override") == "cifar10_sample"  # flags after the preset win
    for key in ("search", "search--alphas="):
        search = specs.pop(key)
        assert search["mode"] == "search" and search["seeds"] == [0, 1], search
    assert specs.pop("cleared_slopes") == [0.1]  # an empty value clears the file's list
    reduced = specs.pop("reduced_resnet20")
    assert sorted(reduced["plan"]["alphas"]) == [-10.0, -1.0, 0.0, 5.0] and reduced["plan"]["seeds"] == [0, 1, 2]
    assert reduced["settings"]["epochs"] == 12 and reduced["settings"]["lr_milestones"] == [6, 9]
    assert reduced["settings"]["max_train_samples"] == 10000 and reduced["settings"]["batch_size"] == 256
    assert reduced["output_dir"] == "sweeps/reduced/resnet20"
    windows = specs.pop("reduced_resnet20_windows")  # the reduced protocol, suppressed in two windows
    for name in ("epochs", "lr_milestones", "max_train_samples", "batch_size", "dataset"):
        assert windows["settings"][name] == reduced["settings"][name], name
    assert windows["plan"]["alphas"] == [0.0, -10.0] and windows["plan"]["alpha_windows"] == ["0:2", "4:6"]
    assert windows["plan"]["seeds"] == [0, 1, 2] and windows["plan"]["trials"] == 9  # alpha = 0 once per seed
    assert windows["output_dir"] == "sweeps/reduced/windows"
    followup = specs.pop("followup_resnet50_imagenet")
    assert followup["settings"]["model"] == "resnet50_imagenet" and followup["settings"]["epochs"] == 90
    assert followup["settings"]["augmentation"] == "random_resized_crop" and followup["settings"]["image_size"] == 224
    assert followup["settings"]["lr_milestones"] == [30, 60] and followup["settings"]["batch_size"] == 256
    assert followup["settings"]["dataset"] == "stream:tfds:imagenet2012" and followup["plan"]["alphas"] == [0.0]
    experiments = {"resnet20_suppress", "resnet20_promote", "vgg16", "resnet20_leaky", "resnet20_cca"}
    assert set(specs) == {f"{profile}_{name}" for profile in ("paper", "smoke") for name in experiments}
    for name, spec in specs.items():
        plan, settings = spec["plan"], spec["settings"]
        assert 0.0 in plan["alphas"], name
        if name.startswith("paper_"):
            assert settings["epochs"] == 200 and settings["dataset"] == "cifar10"
            assert plan["seeds"] == list(range(20))
            assert settings["max_train_samples"] is None
        else:
            assert settings["epochs"] <= 2 and settings["max_train_samples"] is not None
            assert spec["output_dir"].startswith("sweeps/smoke/")
    paper = {name[len("paper_"):]: s["plan"] for name, s in specs.items() if name.startswith("paper_")}
    suppress = set(paper["resnet20_suppress"]["alphas"])
    promote = set(paper["resnet20_promote"]["alphas"])
    assert {-0.1, -1, -2, -10, -30} <= suppress and min(suppress) == -30
    assert {0.1, 0.2, 2, 5} <= promote and max(promote) == 5
    assert set(paper["vgg16"]["alphas"]) == suppress | promote
    assert paper["resnet20_leaky"]["leaky_slopes"] == [0.01, 0.1, 0.3, 0.5]


def test_tf_selectivity_command_and_presets(tmp_path):
    """`tf-selectivity COMMAND` runs the commands; `--preset=NAME` reads a shipped flagfile,
    from any directory (the presets are package data, not files of the checkout)."""
    def command(*args):
        return subprocess.run([sys.executable, "-m", "tf_selectivity", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300, env={**os.environ, "PYTHONPATH": REPO})

    listed = command("--help")
    assert listed.returncode == 0 and all(f"  {name} " in listed.stdout for name in ("train", "sweep", "analyze"))
    unknown = command("fit")
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines() == [
        "tf-selectivity: error: unknown command 'fit'; choose one of train, sweep, analyze "
        "('tf-selectivity --help' says what each does)"]
    helped = command("sweep", "--help")
    assert helped.returncode == 0 and "  smoke_resnet20_suppress: Smoke test" in helped.stdout
    planned = command("sweep", "--preset=smoke_resnet20_suppress", "--output_dir=out", "--dry_run")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)["plan"]
    assert plan["alphas"] == [0.0, -1.0] and plan["seeds"] == [0, 1] and plan["trials"] == 4, plan
    wrong = command("sweep", "--preset=smoke", "--output_dir=out", "--dry_run")
    lines = error_lines(wrong.stderr)
    assert wrong.returncode == 2 and len(lines) == 1, wrong.stderr
    assert lines[0].startswith("tf-selectivity sweep: error: --preset must be one of followup_resnet50_imagenet, paper_resnet20_cca, ")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ oracle


def _tuner(directory, plan, **oracle_kwargs):
    from tf_selectivity.sweeps.oracle import SweepOracle
    from tf_selectivity.sweeps.settings import settings_to_values, sweep_settings
    from tf_selectivity.sweeps.tuner import SweepTuner
    from tf_selectivity.training import TrainConfig

    settings = sweep_settings(TrainConfig(model="resnet8", epochs=1, output_dir="unused"))
    oracle = SweepOracle(plan, settings_to_values(settings), **oracle_kwargs)
    return SweepTuner(oracle, str(directory))


def _report(oracle, trial, status="COMPLETED", accuracy=0.5):
    """What a worker sends back: metrics, then a copy of the trial (gRPC)."""
    if status == "COMPLETED":
        oracle.update_trial(trial.trial_id, {"val_accuracy": accuracy, "test_accuracy": accuracy})
    report = copy.deepcopy(trial)
    report.status = status
    report.message = None if status == "COMPLETED" else "Traceback...\nRuntimeError: attempt failed"
    oracle.end_trial(report)


def _point(trial):
    values = trial.hyperparameters.values
    return values["alpha"], values["seed"]


def test_oracle_hands_out_each_point_once_idles_then_stops(tmp_path):
    oracle = _tuner(tmp_path, plans.GridPlan([0, -1], [0, 1])).oracle
    a0 = oracle.create_trial("a")
    b0 = oracle.create_trial("b")
    assert [a0.trial_id, b0.trial_id] == ["0000", "0001"]
    assert [_point(a0), _point(b0)] == [(0.0, 0), (-1.0, 0)]
    _report(oracle, a0)
    a1 = oracle.create_trial("a")
    _report(oracle, b0)
    b1 = oracle.create_trial("b")
    assert [_point(a1), _point(b1)] == [(0.0, 1), (-1.0, 1)]
    _report(oracle, a1)
    assert oracle.create_trial("a").status == "IDLE"  # b1 still runs: a waits, it may have to take it over
    assert not oracle.finished()
    _report(oracle, b1)
    assert oracle.create_trial("a").status == "STOPPED"
    assert not oracle.finished()  # b has not been told yet
    assert oracle.create_trial("b").status == "STOPPED"
    assert oracle.finished()
    assert sorted(t.status for t in oracle.trials.values()) == ["COMPLETED"] * 4
    assert oracle.progress() == (4, 4)


def test_oracle_reload_reruns_the_cut_trial_keeps_finished_ones_and_adds_new_points(tmp_path):
    tuner = _tuner(tmp_path, plans.GridPlan([0, -1], [0]))
    finished = tuner.oracle.create_trial("tuner0")
    _report(tuner.oracle, finished)
    cut = tuner.oracle.create_trial("tuner0")  # the process dies while training it
    tuner.save()

    oracle = _tuner(tmp_path, plans.GridPlan([0, -1, -2], [0])).oracle
    assert oracle.reloaded
    again = oracle.create_trial("tuner0")
    assert again.trial_id == cut.trial_id and _point(again) == (-1.0, 0)
    _report(oracle, again)
    new = oracle.create_trial("tuner0")
    assert new.trial_id == "0002" and _point(new) == (-2.0, 0)
    _report(oracle, new)
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert len(oracle.trials) == 3  # the finished point was not handed out again


def test_oracle_reclaims_the_trial_of_a_silent_worker(tmp_path):
    oracle = _tuner(tmp_path, plans.GridPlan([0], [0, 1]), worker_timeout=0.4).oracle
    held = oracle.create_trial("alive")
    lost = oracle.create_trial("dies")
    for _ in range(6):  # "alive" keeps beating, "dies" is silent
        time.sleep(0.1)
        oracle.get_trial(held.trial_id)
    taken_over = oracle.create_trial("other")
    assert taken_over.trial_id == lost.trial_id  # reclaimed, not the held one
    assert "dies" not in oracle.tuner_ids and "dies" not in oracle.ongoing_trials
    assert "worker dies sent no heartbeat" in oracle.trials[lost.trial_id].message
    _report(oracle, held)
    # The silent worker was alive after all and reports first: its success counts,
    # the second report of the same trial is ignored.
    _report(oracle, lost, accuracy=0.7)
    _report(oracle, taken_over, accuracy=0.7)
    assert [t.status for t in oracle.trials.values()] == ["COMPLETED", "COMPLETED"]
    for tuner_id in ("alive", "other"):
        assert oracle.create_trial(tuner_id).status == "STOPPED"
    assert oracle.finished()


def test_oracle_retries_failed_trials_stops_after_consecutive_failures_and_retries_on_restart(tmp_path):
    plan = plans.GridPlan([0, -1, -2], [0])
    tuner = _tuner(tmp_path, plan, options=SweepOptions(max_retries=1, max_consecutive_failures=2))
    oracle = tuner.oracle
    first = oracle.create_trial("w")
    _report(oracle, first, status="INVALID")
    retry = oracle.create_trial("w")
    assert retry.trial_id == first.trial_id  # one retry
    _report(oracle, retry, status="INVALID")
    assert oracle.trials[first.trial_id].status == "FAILED"
    second = oracle.create_trial("w")
    _report(oracle, second, status="FAILED")  # FailedTrialError: no retry
    assert oracle.stop_reason and "2 trials failed in a row" in oracle.stop_reason
    assert oracle.create_trial("w").status == "STOPPED" and oracle.finished()
    tuner.save()
    # A new session (the command run again) retries what failed before.
    oracle = _tuner(tmp_path, plan, options=SweepOptions(max_retries=1, max_consecutive_failures=2)).oracle
    assert oracle.stop_reason is None
    assert oracle.create_trial("w").trial_id == first.trial_id


def _pack(trial):
    return trial.hyperparameters.values["packed_seeds"]


def test_oracle_packs_the_seeds_of_a_point_for_one_worker(tmp_path):
    """With pack_replicates=2 a worker gets a point and one more seed of its
    alpha reserved; others get other points; a failed pack frees its seeds."""
    oracle = _tuner(tmp_path, plans.GridPlan([0, -1], [0, 1, 2]), pack_replicates=2).oracle
    a, b, c, d = (oracle.create_trial(tuner_id) for tuner_id in "abcd")
    assert [(_point(t), _pack(t)) for t in (a, b, c, d)] == [
        ((0.0, 0), "0,1"), ((-1.0, 0), "0,1"), ((0.0, 2), "2"), ((-1.0, 2), "2"),
    ]
    assert oracle.create_trial("e").status == "IDLE"  # (0, 1) and (-1, 1) are reserved
    _report(oracle, a)
    a_next = oracle.create_trial("a")
    assert (_point(a_next), _pack(a_next)) == ((0.0, 1), "1")  # its reserved seed, alone
    # b's pack fails: its reserved seed goes back to the queue with the failed one.
    _report(oracle, b, status="INVALID")
    retry = oracle.create_trial("e")
    assert (_point(retry), _pack(retry)) == ((-1.0, 0), "0,1")
    for trial in (a_next, c, d, retry):
        _report(oracle, trial)
    mate = oracle.create_trial("e")
    assert (_point(mate), _pack(mate)) == ((-1.0, 1), "1")
    _report(oracle, mate)
    for tuner_id in "abcde":
        assert oracle.create_trial(tuner_id).status == "STOPPED"
    assert oracle.finished() and sorted(t.status for t in oracle.trials.values()) == ["COMPLETED"] * 6
    assert len(oracle.trials) == 6  # one trial per (alpha, seed)


def test_oracle_keeps_a_pack_reserved_while_its_worker_beats_and_frees_it_when_silent(tmp_path):
    oracle = _tuner(tmp_path, plans.GridPlan([0], [0, 1]), pack_replicates=2, worker_timeout=0.4).oracle
    lead = oracle.create_trial("w")
    assert _pack(lead) == "0,1"
    for _ in range(6):  # training the pack: the heartbeat names the lead trial only
        time.sleep(0.1)
        oracle.get_trial(lead.trial_id)
    assert oracle.create_trial("other").status == "IDLE"  # seed 1 is still reserved
    time.sleep(0.6)  # "w" dies
    taken = oracle.create_trial("other")
    assert taken.trial_id == lead.trial_id and _pack(taken) == "0,1"
    reserved = next(t for t in oracle.trials.values() if t.trial_id != lead.trial_id)
    assert "sent no heartbeat" in oracle.trials[lead.trial_id].message
    assert reserved.message is None  # never started: no failed attempt
    _report(oracle, taken)
    assert oracle.create_trial("other").trial_id == reserved.trial_id


def test_only_one_process_owns_a_sweep_directory(tmp_path):
    from tf_selectivity.sweeps.layout import SweepPaths
    from tf_selectivity.sweeps.runner import SweepLockedError, sweep_lock

    paths = SweepPaths(str(tmp_path / "sweep"))
    with sweep_lock(paths):
        with pytest.raises(SweepLockedError, match=f"pid {os.getpid()}"):
            with sweep_lock(paths):
                pass
    with sweep_lock(paths):  # released with its holder
        pass


def test_settings_travel_through_trial_values_unchanged():
    from tf_selectivity.sweeps.settings import config_from_values, settings_to_values, sweep_settings
    from tf_selectivity.training import TrainConfig

    config = TrainConfig(model="vgg16", activation="leaky_relu", leaky_slope=0.3, alpha=-2.0, seed=7,
                         max_train_samples=100, lr_milestones=(3, 9), output_dir="x")
    values = {**settings_to_values(sweep_settings(config)), "alpha": -2.0, "seed": 7, "leaky_slope": 0.3}
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())
    rebuilt = config_from_values(values, "x", {"jit_compile": "false", "data_on_device": "false"})
    assert rebuilt.identity() == config.identity() and rebuilt.jit_compile == "false"
    assert rebuilt.data_on_device == "false"  # each worker places its data
    values.pop("max_train_samples")
    assert config_from_values(values, "x").max_train_samples is None
    assert config_from_values(values, "x").alpha_window is None
    windowed = TrainConfig(alpha=-2.0, epochs=4, alpha_window="0.5:2", output_dir="x")
    assert sweep_settings(windowed) == sweep_settings(TrainConfig(alpha=-2.0, epochs=4, output_dir="x"))
    values = {**settings_to_values(sweep_settings(windowed)), "alpha": -2.0, "seed": 0, "leaky_slope": 0.0,
              "alpha_window": "0.5:2"}
    assert config_from_values(values, "x").identity() == windowed.identity()


# ------------------------------------------------------------ end to end


def wait_until(predicate, timeout, process=None, what=""):
    """Polls `predicate`; fails if `process` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep exited ({process.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def resumed_sweep(tmp_path_factory):
    """A 2 x 2 sweep SIGKILLed during its second trial's second epoch, then run again."""
    root = tmp_path_factory.mktemp("resume")
    out = root / "sweep"
    args = [f"--output_dir={out}", "--alphas=0,-1", "--seeds=0,1", "--epochs=2"]
    first_run = out / "runs" / "resnet8_relu_alpha0_seed0"
    cut_run = out / "runs" / "resnet8_relu_alpha-1_seed0"
    with open(root / "first.log", "w") as log:
        process = subprocess.Popen(sweep_command(*args), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_until(
                lambda: (first_run / "summary.json").exists() and (cut_run / "checkpoint" / "state.json").exists(),
                240, process, "the first trial to finish and the second to checkpoint an epoch",
            )
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    cut_before_finish = not (cut_run / "summary.json").exists()
    first_mtime = (first_run / "summary.json").stat().st_mtime_ns
    second = run_sweep_cli(*args)
    return {
        "out": str(out), "second": second, "first_mtime": first_mtime, "cut_before_finish": cut_before_finish,
        "first_run": str(first_run), "cut_run": str(cut_run),
    }


def test_a_killed_sweep_resumes_without_retraining_finished_trials(resumed_sweep):
    second, out = resumed_sweep["second"], resumed_sweep["out"]
    assert second.returncode == 0, second.stderr[-3000:]
    assert resumed_sweep["cut_before_finish"]
    runs = sorted(glob.glob(os.path.join(out, "runs", "*")))
    assert [os.path.basename(r) for r in runs] == [
        "resnet8_relu_alpha-1_seed0", "resnet8_relu_alpha-1_seed1",
        "resnet8_relu_alpha0_seed0", "resnet8_relu_alpha0_seed1",
    ]
    assert all(os.path.exists(os.path.join(r, "summary.json")) for r in runs)
    # The finished trial was not trained again; the cut one resumed from its checkpoint.
    assert os.stat(os.path.join(resumed_sweep["first_run"], "summary.json")).st_mtime_ns == resumed_sweep["first_mtime"]
    assert train_sessions(resumed_sweep["first_run"]) == 1
    cut = resumed_sweep["cut_run"]
    assert train_sessions(cut) == 2
    assert f"Resuming {cut} after epoch 1/2." in second.stdout
    assert list(pd.read_csv(os.path.join(cut, "history.csv"))["epoch"]) == [1, 2]
    for run in runs:
        if run not in (resumed_sweep["first_run"], cut):
            assert train_sessions(run) == 1
    records = trial_records(out)
    assert [r["status"] for r in records] == ["COMPLETED"] * 4
    assert len({(r["hyperparameters"]["values"]["alpha"], r["hyperparameters"]["values"]["seed"]) for r in records}) == 4
    assert "[sweep 4/4]" in second.stdout and "1/4 already complete" in second.stdout
    # The time left, from the trials this session ran (the one done before takes none).
    ended = [line for line in second.stdout.splitlines() if line.startswith("[sweep ") and " done: " in line]
    assert ended[0].startswith("[sweep 2/4]") and ended[0].endswith(" left)") and ended[-1].endswith(" elapsed)")


def test_trials_lines_tell_the_time_left_from_this_session_s_trials(monkeypatch, capsys):
    import types

    from keras_tuner.engine.trial import Trial

    from tf_selectivity.sweeps import oracle as oracle_module

    class Oracle:  # the display asks the oracle for the counts and the descriptions only
        distributed = False
        finished = 1  # one trial completed by an earlier session

        def progress(self):
            return self.finished, 4

        def trial_holder(self, trial_id):
            return None

        def describe_trial(self, trial):
            return f"seed {trial.hyperparameters.values['seed']}"

    clock = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr("tf_selectivity.core.progress.time.monotonic", lambda: clock.now)
    oracle = Oracle()
    display = oracle_module.SweepDisplay(oracle)
    for number, seed in enumerate((1, 2, 3), start=2):
        trial = Trial(hyperparameters=None, trial_id=f"000{number}")
        trial.hyperparameters = types.SimpleNamespace(values={"seed": seed})
        display.on_trial_begin(trial)
        clock.now += 60  # a minute per trial
        trial.status = oracle_module.COMPLETED
        trial.metrics.register("val_accuracy")
        trial.metrics.update("val_accuracy", 0.5)
        oracle.finished += 1
        display.on_trial_end(trial)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[sweep ")]
    # The earlier session's trial takes no time: 1 minute per trial run here, times the trials left.
    assert lines[0].startswith("[sweep 2/4] trial 0002 done: seed 1: val_accuracy 0.5000")
    assert lines[0].endswith(" (1:00 elapsed, 2:00 left)")
    assert lines[1].endswith(" (2:00 elapsed, 1:00 left)")
    assert lines[2].startswith("[sweep 4/4] trial 0004 done") and lines[2].endswith(" (3:00 elapsed)")


def test_trials_table_has_one_row_per_trial_with_config_and_metrics(resumed_sweep):
    out = resumed_sweep["out"]
    table = pd.read_csv(os.path.join(out, "trials.csv"))
    parquet = pd.read_parquet(os.path.join(out, "trials.parquet"))
    assert list(parquet.columns) == list(table.columns) and len(table) == 4
    np.testing.assert_allclose(parquet.test_accuracy, table.test_accuracy)
    for column in ("alpha", "seed", "run_dir", "val_accuracy", "test_accuracy", "test_mean_selectivity",
                   "model", "epochs", "dataset", "status", "trial_id"):
        assert column in table.columns
    assert sorted(zip(table.alpha, table.seed)) == [(-1.0, 0), (-1.0, 1), (0.0, 0), (0.0, 1)]
    for row in table.itertuples():
        with open(os.path.join(out, row.run_dir, "summary.json")) as f:
            summary = json.load(f)
        assert (summary["alpha"], summary["seed"]) == (row.alpha, row.seed)
        assert math.isclose(summary["test_accuracy"], row.test_accuracy)
        assert math.isclose(summary["test_mean_selectivity"], row.test_mean_selectivity)
        assert row.status == "COMPLETED" and row.epochs == 2
    layer_columns = [c for c in table.columns if c.startswith("test_selectivity/")]
    assert layer_columns == [f"test_selectivity/{name}" for name in summary["probe_names"]]  # Network order.


def test_tensorboard_has_the_hparams_experiment_and_one_session_per_run(resumed_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    out = resumed_sweep["out"]
    experiment_events = EventAccumulator(os.path.join(out, "hparams_config"))
    experiment_events.Reload()
    content = experiment_events.PluginTagToContent(metadata.PLUGIN_NAME)
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert {h.name for h in experiment.hparam_infos} == {"alpha", "seed", "model", "activation", "leaky_slope"}
    assert {m.name.tag for m in experiment.metric_infos} == {"test_accuracy", "test_mean_selectivity", "val_accuracy"}
    for run in glob.glob(os.path.join(out, "runs", "*")):
        session = EventAccumulator(os.path.join(run, "logs"))
        session.Reload()
        start = metadata.parse_session_start_info_plugin_data(
            session.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
        )
        with open(os.path.join(run, "summary.json")) as f:
            summary = json.load(f)
        assert start.group_name == os.path.basename(run)
        assert start.hparams["alpha"].number_value == summary["alpha"]
        assert start.hparams["model"].string_value == "resnet8"
        value = float(tensor_util.make_ndarray(session.Tensors("test_accuracy")[0].tensor_proto))
        assert math.isclose(value, summary["test_accuracy"], rel_tol=1e-6)
        assert session.Tensors("test_mean_selectivity")
        # The per-epoch curves are the run's own Keras TensorBoard logs.
        assert glob.glob(os.path.join(run, "logs", "validation", "events.out.tfevents.*"))


def test_the_analysis_command_finds_every_run_of_the_sweep(resumed_sweep):
    from tf_selectivity.analysis.runs import discover_runs

    records, errors = discover_runs([resumed_sweep["out"]])
    assert errors == []
    assert sorted((r.summary.alpha, r.summary.seed) for r in records) == [(-1.0, 0), (-1.0, 1), (0.0, 0), (0.0, 1)]


def test_search_mode_reuses_finished_runs_and_records_its_answer(resumed_sweep, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(resumed_sweep["out"], out)
    baseline = out / "runs" / "resnet8_relu_alpha0_seed0" / "summary.json"
    baseline_mtime = baseline.stat().st_mtime_ns
    # A margin of 1.0 (any accuracy) makes the answer independent of what the
    # tiny runs learn: the strongest bound is within it.
    completed = run_sweep_cli(
        f"--output_dir={out}", "--epochs=2", "--seeds=0,1", "--mode=search",
        "--search_bounds=-1,-4", "--search_margin=1.0",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(out / "search.json") as f:
        result = json.load(f)
    assert result["strongest_alpha_within_margin"] == -4.0
    assert result["evaluated"][0]["alpha"] == -4.0
    assert baseline.stat().st_mtime_ns == baseline_mtime  # alpha = 0 runs reused
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 6 and sorted(table.alpha.unique()) == [-4.0, -1.0, 0.0]
    assert (table.status == "COMPLETED").all()
    assert "search: alpha = -4.0 (the strongest searched) stays within the margin" in completed.stdout


def test_a_diverged_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "sweep"
    # alpha = 1e300 overflows the float32 loss in the first epoch.
    completed = run_sweep_cli(f"--output_dir={out}", "--alphas=1e300,0", "--seeds=0", "--epochs=1")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "trial 0000 diverged in epoch 1" in completed.stdout
    assert "[sweep 2/2] trial 0001 done" in completed.stdout  # the next trial still ran
    assert "1 of them diverged" in completed.stdout
    table = pd.read_csv(out / "trials.csv").set_index("alpha")
    assert table.loc[1e300, "status"] == "DIVERGED" and table.loc[1e300, "diverged_epoch"] == 1
    assert pd.isna(table.loc[1e300, "test_accuracy"]) and pd.isna(table.loc[1e300, "val_accuracy"])
    assert table.loc[0.0, "status"] == "COMPLETED" and not pd.isna(table.loc[0.0, "test_accuracy"])
    # A rerun keeps the diverged trial as finished: nothing is trained again.
    again = run_sweep_cli(f"--output_dir={out}", "--alphas=1e300,0", "--seeds=0", "--epochs=1")
    assert again.returncode == 0 and "2/2 already complete" in again.stdout and "starts" not in again.stdout
    # The analysis lists it apart.
    analysis = subprocess.run(
        [sys.executable, "-m", "tf_selectivity.analyze", f"--runs={out}", f"--output_dir={tmp_path / 'analysis'}",
         "--figures=false", "--bootstrap_resamples=100"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    assert "1 run(s) diverged during training" in analysis.stdout
    assert len(pd.read_csv(tmp_path / "analysis" / "runs.csv")) == 1
    assert len(pd.read_csv(tmp_path / "analysis" / "diverged.csv")) == 1


@pytest.mark.backends
@pytest.mark.jax_only  # seeds are packed in one program on JAX only
def test_a_sweep_on_jax_packs_the_seeds_of_each_alpha(tmp_path):
    """Seeds 0 and 1 of alpha 0 train as one program, seed 2 alone; each keeps
    its trial, run directory and row; a rerun trains nothing."""
    out = tmp_path / "sweep"
    args = [
        f"--output_dir={out}", "--dataset=synthetic:train=200,test=60,size=16", "--alphas=0", "--seeds=0-2",
        "--epochs=2", "--pack_replicates=2",
    ]
    completed = run_sweep_cli(*args)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "trial 0000 starts: alpha=0 seed=0 (resnet8_relu_alpha0_seed0), packed with seed 1" in completed.stdout
    assert "Training 2 replicates (seeds 0-1) packed in one program" in completed.stdout
    assert "[sweep 3/3]" in completed.stdout
    table = pd.read_csv(out / "trials.csv")
    assert sorted(table.seed) == [0, 1, 2] and (table.status == "COMPLETED").all()
    assert table.test_accuracy.notna().all() and table.trial_id.is_unique
    packed = {}
    for seed in (0, 1, 2):
        with open(out / "runs" / f"resnet8_relu_alpha0_seed{seed}" / "summary.json") as f:
            packed[seed] = json.load(f).get("packed_replicates")
    assert packed == {0: 2, 1: 2, 2: None}
    again = run_sweep_cli(*args)
    assert again.returncode == 0 and "3/3 already complete" in again.stdout and "starts" not in again.stdout
