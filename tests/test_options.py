"""Settings defined once: the library names Python parameters, the command
lines name their flags, and flags are derived from the fields."""

import dataclasses

import pytest
from absl import flags

from conftest import error_lines, run_cli
from tf_selectivity.core import settings as options
from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions
from tf_selectivity.core.settings import ParameterError, message_for_flags, quote
from tf_selectivity.training.config import ConfigError, TrainConfig


def test_a_bad_value_through_the_library_names_the_parameter(tmp_path):
    with pytest.raises(ConfigError) as error:
        TrainConfig(alpha=float("inf"), output_dir=str(tmp_path)).validate()
    assert str(error.value) == "alpha must be a finite number; got inf"
    assert error.value.parameter == "alpha"
    with pytest.raises(ParameterError) as error:
        AnalysisOptions(n_resamples=0).validate()
    assert str(error.value) == "n_resamples must be a positive integer; got 0"
    assert "--" not in str(error.value)


def test_a_bad_value_through_the_command_line_names_the_flag(tmp_path):
    completed = run_cli("tf_selectivity.train", "--alpha=inf", f"--output_dir={tmp_path / 'run'}")
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [
        "python -m tf_selectivity.train: error: --alpha must be a finite number; got inf"
    ]
    completed = run_cli(
        "tf_selectivity.analyze", f"--runs={tmp_path}", f"--output_dir={tmp_path / 'out'}", "--bootstrap_resamples=0"
    )
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [
        "python -m tf_selectivity.analyze: error: --bootstrap_resamples must be a positive integer; got 0"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_quoted_parameters_become_the_commands_flags():
    message = f"use {quote('data_on_device', 'false')} or another {quote('output_dir')}; {quote('unknown')} stays"
    assert message == "use `data_on_device='false'` or another `output_dir`; `unknown` stays"
    assert message_for_flags(message, {"data_on_device", "output_dir"}) == (
        "use --data_on_device=false or another --output_dir; `unknown` stays"
    )
    renamed = message_for_flags("raise `n_resamples=100`", {"n_resamples"}, {"n_resamples": "bootstrap_resamples"})
    assert renamed == "raise --bootstrap_resamples=100"


def _flat(instance, prefix=""):
    """path -> value of every setting of a (nested) options instance."""
    values = {}
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if dataclasses.is_dataclass(value):
            values.update(_flat(value, f"{prefix}{field.name}."))
        else:
            values[prefix + field.name] = value
    return values


def test_flags_are_derived_from_the_fields():
    flag_values = flags.FlagValues()
    defined = options.define_flags(AnalysisOptions, flag_values=flag_values, module_name="test")
    paths = [path for path, _, _ in options.setting_paths(AnalysisOptions, flags_only=True)]
    renamed = options.flag_names(AnalysisOptions)
    assert defined == [renamed.get(path, path) for path in paths]
    # A group's settings keep the flags users know.
    assert renamed["ablation.layers"] == "ablation_layers" and renamed["similarity.alphas"] == "cca_alphas"
    assert renamed["robustness.perturbations"] == "robustness" and renamed["n_resamples"] == "bootstrap_resamples"
    flag_values(["prog", "--cca_alphas=-1,-10", "--bootstrap_resamples=7", "--nofigures", "--cca_spatial=positions",
                 "--ablation", "--ablation_layers=probe_stem", "--robustness_max_samples=5"])
    fields = [f.name for f in options.settings_of(AnalysisOptions, flags_only=True) + options.groups_of(AnalysisOptions)]
    values = options.values_from_flags(AnalysisOptions, flag_values, fields)
    parsed = AnalysisOptions(**values).validate()
    assert parsed.similarity.alphas == (-1.0, -10.0) and parsed.n_resamples == 7
    assert parsed.figures is False and parsed.similarity.spatial == "positions"
    assert parsed.ablation.layers == ("probe_stem",) and parsed.robustness.max_samples == 5
    # Everything else keeps the dataclass' defaults, which are the flags' defaults.
    given = {"similarity.alphas", "n_resamples", "figures", "similarity.spatial", "ablation.curves",
             "ablation.layers", "robustness.max_samples"}
    defaults = _flat(AnalysisOptions())
    for path, value in _flat(parsed).items():
        if path not in given:
            assert value == defaults[path], path
    help_text = dataclasses.fields(SimilarityOptions)[[f.name for f in dataclasses.fields(SimilarityOptions)].index(
        "spatial")].metadata["help"]
    assert flag_values["cca_spatial"].help == "<average|positions>: " + help_text


def test_training_flags_cover_every_field_and_sweeps_share_the_identity():
    from tf_selectivity.sweeps.settings import LOCAL_FIELDS, POINT_FIELDS, SETTING_FIELDS

    every = {f.name for f in dataclasses.fields(TrainConfig)}
    with_flags = {f.name for f in options.settings_of(TrainConfig, flags_only=True)}
    assert every - with_flags == {"output_dir"}  # each command defines its own
    assert set(SETTING_FIELDS) | set(POINT_FIELDS) == set(TrainConfig.IDENTITY_FIELDS)
    assert set(LOCAL_FIELDS) == {
        "data_dir", "jit_compile", "eval_batch_size", "data_on_device", "selectivity_every", "keep_checkpoints",
        "selectivity_every_steps", "selectivity_steps_until", "devices", "per_device_batch_size",
    }
    assert not set(LOCAL_FIELDS) & set(TrainConfig.IDENTITY_FIELDS)
