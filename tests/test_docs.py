"""The documentation: the site builds strictly, the tutorial's and the README's code runs, and the
examples import what the package's top level exports."""

import ast
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

DOCS = pathlib.Path(REPO) / "docs"
README = pathlib.Path(REPO) / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)

# Before each bash block: the console script, or the same entry point where it
# is not installed (the package imported from this checkout).
_BASH_PRELUDE = """set -euo pipefail
command -v tf-selectivity >/dev/null || tf-selectivity() {{ "{python}" -m tf_selectivity "$@"; }}
"""


def code_blocks(path: pathlib.Path, languages=("python", "bash")) -> list:
    """(language, code) of the page's fenced code blocks in `languages`, in order."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(path.read_text()) if m.group(1) in languages]


def run_blocks(blocks, cwd):
    """Runs the blocks in order: Python in one namespace, in this process; bash in a subprocess."""
    namespace = {"__name__": "__docs__"}
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    for number, (language, code) in enumerate(blocks, start=1):
        if language == "python":
            exec(compile(code, f"<block {number}>", "exec"), namespace)  # noqa: S102 - the docs' own code
            continue
        script = _BASH_PRELUDE.format(python=sys.executable) + code
        result = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"block {number} failed:\n{code}\n{result.stderr[-3000:]}"
    return namespace


@pytest.mark.jax_pass
def test_the_tutorial_runs_as_written(tmp_path, monkeypatch, capsys):
    """Every code block of docs/tutorial.md, in order, in an empty directory
    (on JAX: its commands and calls run on TensorFlow in their own tests)."""
    blocks = code_blocks(DOCS / "tutorial.md")
    assert [language for language, _ in blocks].count("bash") == 2 and len(blocks) >= 7
    monkeypatch.chdir(tmp_path)
    namespace = run_blocks(blocks, tmp_path)
    printed = capsys.readouterr().out
    assert (tmp_path / "tutorial" / "analysis" / "report.md").exists()
    assert (tmp_path / "tutorial" / "analysis" / "units" / "index.html").exists()
    assert printed.count("debiased CKA") == len(namespace["baseline"].model.probe_names)
    assert namespace["baseline"].summary.test_accuracy > 0.5  # the baseline learned: above chance (0.25)


def test_the_readme_python_quick_start_runs(tiny_runs, tmp_path, monkeypatch):
    """The README's Python quick start, on a tiny run standing in for runs/quickstart."""
    (python,) = [code for language, code in code_blocks(README, ("python",))]
    (tmp_path / "runs").mkdir()
    shutil.copytree(tiny_runs / "runs" / "a0_s0", tmp_path / "runs" / "quickstart")
    monkeypatch.chdir(tmp_path)
    namespace = run_blocks([("python", python)], tmp_path)
    assert "load_run" in python.split("\n", 1)[0]
    assert sorted(os.listdir(tmp_path / "galleries"))
    assert namespace["run"].path == str(tmp_path / "runs" / "quickstart")


def _imported_names(code: str):
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tf_selectivity":
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tf_selectivity."):
                    yield node.lineno, alias.name, []


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_python_examples_compile_and_import_from_the_top_level(page):
    import tf_selectivity

    for _, code in code_blocks(page, ("python",)):
        for line, module, names in _imported_names(code):
            assert module == "tf_selectivity", f"{page.name}: `{module}` (line {line}): import from the top level"
            missing = [name for name in names if name not in tf_selectivity.__all__]
            assert not missing, f"{page.name}: {missing} are not in tf_selectivity.__all__"


# A path of one machine: a home, a scratch or data mount, Windows; placeholders such as
# /path/to/ and $HOME/ are not.
_MACHINE_PATH = re.compile(r"(?<![\w$}.~-])/(work|root|home|tmp|data|shared|mnt|scratch|Users)/|C:\\\\")


def test_the_docs_name_no_machine_specific_paths():
    experiments = sorted(p for p in (pathlib.Path(REPO) / "experiments").rglob("*")
                         if p.is_file() and p.suffix in (".md", ".sh", ""))
    found = [f"{path.relative_to(pathlib.Path(REPO))}:{number}: {line.strip()}"
             for path in [README, *PAGES, *experiments]
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
             if _MACHINE_PATH.search(line)]
    assert not found, "\n".join(found)


# Flags the docs name that no command defines: absl's own, the sweep's preset
# (read by its parser), and other programs' (tensorboard, mkdocs).
_OTHER_FLAGS = {"help", "helpfull", "helpshort", "flagfile", "preset", "logdir", "strict", "config_file",
                "xla_force_host_platform_device_count"}  # XLA's (simulated devices)


def test_every_flag_the_docs_name_is_a_flag_of_a_command():
    """A flag renamed or removed in the code is found in the prose that names it."""

    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    defined = set().union(*({row["name"] for row in reference.read_flags(command)["rows"]}
                            for command in reference.COMMANDS))
    from tf_selectivity.analyze import RETIRED_FLAGS

    defined |= set(RETIRED_FLAGS)  # named on purpose: the errors page says what became of them
    unknown = set()
    for page in [README, *PAGES]:
        for match in re.finditer(r"(?<![\w-])--([a-z][a-z0-9_]*)(?![\w-])", page.read_text()):
            name = match.group(1)
            if name in defined or name in _OTHER_FLAGS or (name.startswith("no") and name[2:] in defined):
                continue
            unknown.add(f"{page.relative_to(REPO)}: --{name}")
    assert not unknown, sorted(unknown)


@pytest.mark.backend_free  # mkdocs in a process of its own
def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: every page, link, generated reference and docstring without a warning."""
    missing = [name for name in ("mkdocs", "mkdocstrings", "material") if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"the docs toolchain is not installed ({', '.join(missing)}; pip install -e \".[docs]\")"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true, where the site must build")
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", os.path.join(REPO, "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1",
             "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    assert result.returncode == 0, result.stderr[-5000:]
    site = tmp_path / "site"
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for flag in ("--alpha", "--preset", "--runs", "--units_page", "--ablation_max_samples", "--alphas"):
        assert flag in cli, flag
    assert "load_run" in (site / "reference" / "api" / "index.html").read_text()
    # Included documents (build notes, benchmarks, experiments) name no machine's paths either.
    for page in site.rglob("*.html"):
        assert "/work/" not in page.read_text(), page.relative_to(site)
