"""The stage protocol (`analysis.stage`) and its engine: a toy stage registered in a test, the
per-run cache (computed once, read back, resumed after an interruption), checks before any pass
over the data, and the settings groups that give the flags users know."""

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
from absl import flags

from conftest import error_lines, run_cli
from tf_selectivity.analysis.options import AblationOptions, AnalysisOptions, SimilarityOptions
from tf_selectivity.analysis.stage import RunResult, Stage, StageSkipped
from tf_selectivity.core import settings
from tf_selectivity.core.settings import ParameterError, group, setting


class MeanLabelStage(Stage):
    """A complete stage in a few lines: per run, the mean label of its first N test images."""

    name = "mean_label"
    requires = ("selectivity",)
    computed = []  # run directories, in the order computed (shared by the tests)
    interrupt_at = None  # the run directory whose computation is interrupted (Ctrl-C)

    def __init__(self, images=8):
        self.images = images

    def cache_key(self, options):
        return (self.images,)

    def compute(self, run):
        if run.run_dir == self.interrupt_at:
            raise KeyboardInterrupt
        type(self).computed.append(run.run_dir)
        labels = run.subset(self.images).labels
        with open(os.path.join(run.directory, "labels.npy"), "wb") as f:  # a file kept with the entry
            np.save(f, labels)
        frame = run.with_condition(pd.DataFrame({"mean_label": [float(labels.mean())]}))
        return RunResult(tables={"mean_label": frame}, values={"n": int(len(labels))})

    def combine(self, results, context):
        for result in results.values():  # the files written while computing lie in the entry
            assert len(np.load(os.path.join(result.directory, "labels.npy"))) == result.values["n"]
        return {"mean_label": pd.concat([r.tables["mean_label"] for r in results.values()], ignore_index=True)}

    def section(self, tables, context):
        return ["## Mean labels", "", f"{len(tables['mean_label'])} runs."]


def _stages(*extra):
    from tf_selectivity.analysis.stages import registered_stages

    return [*registered_stages(), *extra]


OPTIONS = AnalysisOptions(n_resamples=50, figures=False, max_test_samples=40,
                          similarity=SimilarityOptions(enabled="false"))


def _entries(out, stage):
    folder = out / "cache" / stage
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(autouse=True)
def _fresh_counts():
    MeanLabelStage.computed, MeanLabelStage.interrupt_at = [], None


def test_compute_runs_once_per_run_and_is_read_from_the_cache_after(tiny_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    out = tmp_path / "out"
    first = analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(MeanLabelStage()))
    runs = list(first.runs["run_dir"])
    assert MeanLabelStage.computed == runs  # once per run, in the runs table's order
    table = pd.read_csv(out / "mean_label.csv")
    assert list(table["run_dir"]) == runs and list(table.columns[:6]) == [
        "run_dir", "model", "alpha", "seed", "activation", "leaky_slope"]
    assert "## Mean labels" in (out / "report.md").read_text()
    assert len(_entries(out, "mean_label")) == len(runs)

    MeanLabelStage.computed = []
    again = analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(MeanLabelStage()))
    assert MeanLabelStage.computed == []  # every result read back
    pd.testing.assert_frame_equal(again.tables["mean_label"], first.tables["mean_label"])
    # A damaged entry is computed again, and only it.
    entries = _entries(out, "mean_label")
    (out / "cache" / "mean_label" / entries[0] / "result.json").write_text("{damaged")
    analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(MeanLabelStage()))
    assert len(MeanLabelStage.computed) == 1 and _entries(out, "mean_label") == entries
    # A setting in the stage's cache key gives new entries; the old ones stay for later.
    MeanLabelStage.computed = []
    analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(MeanLabelStage(images=4)))
    assert MeanLabelStage.computed == runs and len(_entries(out, "mean_label")) == 2 * len(runs)


def test_an_interrupted_analysis_resumes_with_the_finished_runs(tiny_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze, find_runs

    records, _, _ = find_runs([str(tiny_runs)])
    runs = [record.run_dir for record in records]
    out = tmp_path / "out"
    MeanLabelStage.interrupt_at = runs[2]
    with pytest.raises(KeyboardInterrupt):
        analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(MeanLabelStage()))
    # No outputs, no half-written entry; the finished runs' entries kept (in a new directory too, with its lock file).
    assert sorted(os.listdir(out)) == [".lock", "analysis.json", "cache"]
    assert len(_entries(out, "mean_label")) == 2 and len(_entries(out, "selectivity")) == 3
    assert not list((out / "cache").glob("*/*.tmp"))

    MeanLabelStage.computed, MeanLabelStage.interrupt_at = [], None
    resumed = analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(MeanLabelStage()))
    assert MeanLabelStage.computed == runs[2:]  # only what the interrupted analysis had not finished
    assert len(_entries(out, "selectivity")) == 4
    whole = analyze([str(tiny_runs)], str(tmp_path / "whole"), OPTIONS, verbose=0, stages=_stages(MeanLabelStage()))
    for name in ("runs", "units", "mean_label"):
        pd.testing.assert_frame_equal(resumed.tables[name], whole.tables[name])


def test_checks_run_before_anything_is_written(tiny_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    class Refuses(MeanLabelStage):
        name = "refuses"

        def check(self, runs, options):
            raise ParameterError("mean_label", f"cannot be computed for {len(runs)} runs")

    class NothingToDo(MeanLabelStage):
        name = "nothing_to_do"

        def check(self, runs, options):
            raise StageSkipped("no run has what it needs")

    out = tmp_path / "out"
    with pytest.raises(ParameterError, match="^mean_label cannot be computed for 4 runs$"):
        analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(Refuses()))
    assert not out.exists() and MeanLabelStage.computed == []
    result = analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(NothingToDo()))
    assert result.skipped["nothing_to_do"] == "no run has what it needs"
    assert MeanLabelStage.computed == [] and not (out / "mean_label.csv").exists()
    # The tiny runs recorded no SI while training; similarity is off (not enabled: not listed).
    assert result.skipped["training_curves"] == (
        "no run recorded the SI while training (--selectivity_every, --selectivity_every_steps)")
    assert "similarity" not in result.skipped


def test_every_registered_stage_has_its_settings_group():
    from tf_selectivity.analysis.stages import registered_stages

    groups = {field.name: field.metadata["group"] for field in settings.groups_of(AnalysisOptions)}
    stages = registered_stages()
    assert [stage.name for stage in stages] == ["selectivity", "chance", "initialization", "similarity", "ablation",
                                                 "units", "training_curves", "over_training", "robustness"]
    for stage in stages:
        if stage.options_class is not None:
            assert groups.get(stage.name) is stage.options_class, stage.name
    assert set(groups) <= {stage.name for stage in stages}
    # A stage names only earlier stages as required.
    names = [stage.name for stage in stages]
    for index, stage in enumerate(stages):
        assert set(stage.requires) <= set(names[:index]), stage.name


# ------------------------------------------------------------ settings groups
@dataclasses.dataclass
class _Inner:
    count: int = setting(2, "How many.", check=settings.positive, flag_name="toy_count")
    names: tuple = setting(None, "Which.", default_factory=lambda: ("a",), item=str)


@dataclasses.dataclass
class _Outer:
    rate: float = setting(0.5, "A rate.", check=settings.finite)
    toy: _Inner = group(_Inner)


def test_a_group_of_settings_gets_flat_flags_and_is_named_by_its_path():
    flag_values = flags.FlagValues()
    assert settings.define_flags(_Outer, flag_values=flag_values, module_name="test") == ["rate", "toy_count", "names"]
    assert settings.flag_names(_Outer) == {"toy.count": "toy_count", "toy.names": "names"}
    flag_values(["prog", "--toy_count=5", "--names=x,y"])
    values = settings.values_from_flags(_Outer, flag_values, ["rate", "toy"])
    assert values == {"rate": 0.5, "toy": _Inner(count=5, names=("x", "y"))}
    with pytest.raises(ParameterError) as error:
        settings.check_settings(_Outer(toy=_Inner(count=0)))
    assert str(error.value) == "toy.count must be a positive integer; got 0"
    assert error.value.for_flags(settings.flag_names(_Outer)) == "--toy_count must be a positive integer; got 0"
    # A quoted setting of a group becomes its flag in the command's messages.
    message = settings.message_for_flags("set `toy.count=3`", settings.flag_names(_Outer), settings.flag_names(_Outer))
    assert message == "set --toy_count=3"


def test_analysis_groups_name_their_settings_and_the_command_names_the_flag(tmp_path):
    with pytest.raises(ParameterError) as error:
        AnalysisOptions(ablation=AblationOptions(curves=True, fractions=(0.0, 1.5))).validate()
    assert str(error.value) == "ablation.fractions must be fractions in [0, 1]; got 1.5"
    assert error.value.for_flags(settings.flag_names(AnalysisOptions)).startswith("--ablation_fractions must be")
    completed = run_cli("tf_selectivity.analyze", f"--runs={tmp_path}", f"--output_dir={tmp_path / 'out'}",
                        "--ablation", "--ablation_fractions=0,1.5")
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [
        "python -m tf_selectivity.analyze: error: --ablation_fractions must be fractions in [0, 1]; got 1.5"]
    # The baseline is alpha = 0 by the loss' definition: there is no flag to name another.
    completed = run_cli("tf_selectivity.analyze", f"--runs={tmp_path}", f"--output_dir={tmp_path / 'out'}",
                        "--baseline_alpha=1")
    assert completed.returncode == 2 and "baseline_alpha" in error_lines(completed.stderr)[0]
    assert not (tmp_path / "out").exists()


class WarningStage(MeanLabelStage):
    """Warns about one run while computing and about the whole analysis from its table."""

    name = "warning_stage"

    def compute(self, run):
        result = super().compute(run)
        if run.run_dir.endswith("a0_s0"):
            result.warnings.append(f"{run.run_dir}: a per-run warning")
        return result

    def combine(self, results, context):
        return {"warned": pd.concat([r.tables["mean_label"] for r in results.values()], ignore_index=True)}

    def restore(self, tables, context):
        return {"warned": tables["warned"]} if "warned" in tables else None

    def warnings(self, tables, context):
        return [f"{len(tables['warned'])} runs: a warning from the tables"]

    def section(self, tables, context):
        return None


def test_warnings_open_the_report_survive_the_cache_and_a_redraw(tiny_runs, tmp_path):
    from tf_selectivity.analysis.from_tables import read_tables, redraw
    from tf_selectivity.analysis.pipeline import analyze

    out = tmp_path / "out"
    for attempt in range(2):  # the second analysis reads every result from the cache
        analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0, stages=_stages(WarningStage()))
        report = (out / "report.md").read_text()
        block = report.split("## Warnings", 1)[1].split("## Headline results", 1)[0]
        assert "a0_s0: a per-run warning" in block and "4 runs: a warning from the tables" in block, block
        assert report.index("## Warnings") < report.index("## Headline results")
        table = pd.read_csv(out / "warnings.csv")
        assert list(table.loc[table["stage"] == "warning_stage", "warning"]) == [
            f"{tiny_runs / 'runs' / 'a0_s0'}: a per-run warning", "4 runs: a warning from the tables"]
    assert len(WarningStage.computed) == 4  # computed once per run, then cached with its warning
    redrawn = redraw(read_tables(str(out)), tmp_path / "redrawn", OPTIONS, stages=_stages(WarningStage()))
    assert open(redrawn.report).read().split("## Warnings", 1)[1].split("##", 1)[0] == block.split("##", 1)[0]


def test_no_warnings_no_block(trained_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    analyze([str(trained_runs)], str(tmp_path / "out"), OPTIONS, verbose=0, stages=_stages(MeanLabelStage()))
    assert "## Warnings" not in (tmp_path / "out" / "report.md").read_text()
    assert pd.read_csv(tmp_path / "out" / "warnings.csv").empty
