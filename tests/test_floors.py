"""The architecture's floors (BUILD_NOTES, *Architecture*): no module of the
library imports, at its top or lazily inside a function, from a floor above
its own. Read from the source with `ast`, so it sees imports that a run of
the code might not reach."""

import ast
import pathlib


PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tf_selectivity"

# Floor of each folder (or module) of tf_selectivity, lowest first. A module
# may import from its own floor and the floors below it.
FLOORS = [
    {"core"},  # plumbing: files, settings, compat, command-line helpers
    {"measures"},  # numerics: selectivity index, statistics, null, similarity
    {"models"},  # the probe, builders, SelectivityModel, per-backend steps
    {"data"},
    {"training"},
    {"plots"},  # drawing primitives: style, axes, labels, tables (each figure lives with its stage)
    {"report"},  # report.md: assembly and formatting
    # The analyze command: its engine, the stage protocol and every stage
    # (analysis/stages/<name>/: compute, figures, report section).
    {"analysis"},
    {"sweeps"},
    {"train", "analyze", "sweep", "__init__", "__main__"},  # command lines
]
FLOOR_OF = {name: level for level, names in enumerate(FLOORS) for name in names}


def floor_of(module: str):
    """Floor of a dotted module of tf_selectivity: its longest listed prefix's."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in FLOOR_OF:
            return FLOOR_OF[".".join(parts[:end])]
    return None


def _imports(path: pathlib.Path, root: pathlib.Path = PACKAGE):
    """(line, imported module of tf_selectivity, dotted below the package) of every import in `path`."""
    package = path.relative_to(root.parent).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tf_selectivity."):
                    yield node.lineno, alias.name[len("tf_selectivity."):]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package[: len(package) - node.level]
                parts = list(base[1:]) + (node.module.split(".") if node.module else [])
                prefix = ".".join(parts)
                names = [f"{prefix}.{alias.name}" if prefix else alias.name for alias in node.names]
            elif node.module == "tf_selectivity":
                names = [alias.name for alias in node.names]
            elif node.module and node.module.startswith("tf_selectivity."):
                module = node.module[len("tf_selectivity."):]
                names = [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                yield node.lineno, name


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def test_every_module_has_a_floor():
    unknown = {own for _, own in _modules() if floor_of(own) is None}
    assert not unknown, f"give these a floor in FLOORS and BUILD_NOTES' Architecture: {sorted(unknown)}"


def test_no_module_imports_from_a_higher_floor():
    violations = []
    for path, own in _modules():
        for line, imported in _imports(path):
            if floor_of(imported) is not None and floor_of(imported) > floor_of(own):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {imported}")
    assert not violations, "imports from a higher floor:\n" + "\n".join(violations)


def test_the_check_sees_a_violation(tmp_path):
    # The import reader finds absolute, `from tf_selectivity import x`, relative
    # and function-level imports alike (a check that cannot fail is no check).
    package = tmp_path / "tf_selectivity" / "models"
    package.mkdir(parents=True)
    source = package / "bad.py"
    source.write_text(
        "import tf_selectivity.sweep\n"
        "from tf_selectivity import analysis\n"
        "def f():\n    from ..training import loop\n    from . import blocks\n"
    )
    found = sorted(name for _, name in _imports(source, root=tmp_path / "tf_selectivity"))
    assert found == ["analysis", "models.blocks", "sweep", "training.loop"]
    assert [floor_of(name) > floor_of("models.bad") for name in found] == [True, False, True, True]
