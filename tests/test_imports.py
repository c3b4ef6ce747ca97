"""Import hygiene: no TensorFlow under JAX, no Keras in the NumPy-only modules."""

import json
import os
import subprocess
import sys



def _imported_modules(code, backend):
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        env={"KERAS_BACKEND": backend, "PATH": "/usr/bin:/bin",
             **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})},
    ).stdout.split()
    return set(out)


def test_library_does_not_import_tensorflow_on_jax():
    code = (
        "import tf_selectivity\n"
        "from tf_selectivity import models, data, training, analysis\n"
        "from tf_selectivity.measures import selectivity, unit_statistics\n"
        "from tf_selectivity.models import probe\n"
        "from tf_selectivity.analysis import pipeline, runs\n"
        "from tf_selectivity.training import device_loop, placement\n"
        "from tf_selectivity.data import device_pipeline\n"
        "tf_selectivity.build_model('resnet8', input_shape=(16, 16, 3))\n"
        "import keras; assert keras.backend.backend() == 'jax'\n"
    )
    modules = _imported_modules(code, "jax")
    assert "jax" in modules and "tensorflow" not in modules


def test_numpy_only_modules_do_not_import_keras():
    # Figures and report too: they redraw from saved tables on any laptop.
    modules = _imported_modules(
        "import tf_selectivity.measures.similarity.cca, tf_selectivity.measures.similarity, tf_selectivity.measures.stats, tf_selectivity.plots, "
        "tf_selectivity.report, "
        "tf_selectivity.analysis.stages.selectivity.figures, tf_selectivity.analysis.stages.selectivity.section, "
        "tf_selectivity.analysis.stages.selectivity.null, tf_selectivity.analysis.from_tables, "
        "tf_selectivity.core.files, tf_selectivity.measures.fdr",
        "tensorflow",
    )
    assert "keras" not in modules and "tensorflow" not in modules


def test_redrawing_from_saved_tables_needs_no_backend():
    """Every stage's figures and report from an analysis' tables, on a laptop without Keras."""
    code = (
        "import tempfile\n"
        "import pandas as pd\n"
        "from tf_selectivity.analysis import AnalysisOptions, redraw\n"
        "runs = pd.DataFrame([dict(run_dir=f'r{a}_{s}', model='resnet8', alpha=a, seed=s, activation='relu',\n"
        "    leaky_slope=0.0, test_accuracy=0.9 - 0.01 * abs(a) + 0.001 * s,\n"
        "    test_mean_selectivity=0.2 + 0.05 * a + 0.001 * s) for a in (-1.0, 0.0) for s in (0, 1)])\n"
        "layers = runs[['run_dir', 'model', 'alpha', 'seed', 'activation', 'leaky_slope']].assign(\n"
        "    layer='conv0', layer_index=0, num_units=8, mean_selectivity=runs['test_mean_selectivity'])\n"
        "drawn = redraw({'runs': runs, 'layers': layers}, tempfile.mkdtemp(), AnalysisOptions(n_resamples=50))\n"
        "assert 'fig1_selectivity_resnet8' in drawn.figures, drawn.figures\n"
    )
    modules = _imported_modules(code, "tensorflow")
    assert "keras" not in modules and "tensorflow" not in modules


def test_command_line_checks_need_no_backend():
    """Usage errors are found before Keras loads: they answer in about a second."""
    code = (
        "import tf_selectivity.train, tf_selectivity.analyze, tf_selectivity.sweep\n"
        "from tf_selectivity import training\n"
        "from tf_selectivity.training import TrainConfig, RunPaths, ConfigError\n"
        "from tf_selectivity.training import run_dir, status, config, summary, prepare\n"
        "from tf_selectivity.data import sources\n"
        "from tf_selectivity.analysis import runs, outputs\n"
        "from tf_selectivity.sweeps import runner, plans, settings, layout, hparams, distributed\n"
    )
    modules = _imported_modules(code, "tensorflow")
    assert "keras" not in modules and "tensorflow" not in modules


def test_gpu_check_imports_nothing_from_tensorflow():
    """The GPU machine has no TensorFlow: the check's whole import graph must do without."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "gpu_check.py"), "--dry_run"],
        capture_output=True, text=True, timeout=300,
        env={"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin", "PYTHONPATH": root},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tensorflow imported: no" in out.stdout


def test_importing_the_library_changes_no_environment():
    """Only the command lines set TensorFlow's variables (cli.ENVIRONMENT):
    importing the package sets nothing, and TensorFlow, imported later, finds
    no oneDNN setting of ours (TensorFlow's own import sets variables of its
    own, which are not ours to check)."""
    code = (
        "import os, json\n"
        "before = dict(os.environ)\n"
        "import tf_selectivity, tf_selectivity.models, tf_selectivity.training, tf_selectivity.core.files\n"
        "changed = {k: v for k, v in os.environ.items() if before.get(k) != v}\n"
        "tf_selectivity.build_model('resnet8', input_shape=(16, 16, 3))\n"
        "print(json.dumps([changed, 'TF_ENABLE_ONEDNN_OPTS' in os.environ]))\n"
    )
    env = {"KERAS_BACKEND": "tensorflow", "PATH": "/usr/bin:/bin",
           **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    changed, onednn_set = json.loads(completed.stdout.strip().splitlines()[-1])
    assert changed == {} and onednn_set is False


def test_every_top_level_name_resolves():
    """What `tf_selectivity.__all__` promises, each loaded on first use."""
    code = (
        "import tf_selectivity as t\n"
        "missing = [name for name in t.__all__ if getattr(t, name, None) is None]\n"
        "assert not missing, missing\n"
        "print(len(t.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert out.returncode == 0, out.stderr[-2000:]
