"""The figures section: captions and relative links to the files of `plots.draw_all`."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Sequence


# Captions of the figures written by `plots.draw_all`, keyed by the name
# prefix (the model name is appended to the file name).
FIGURE_CAPTIONS = {
    "fig1_selectivity": (
        "Figure 1. Mean class selectivity index per layer (a) and averaged "
        "over layers (b) when regularizing against selectivity (α ≤ 0)."
    ),
    "figA1_selectivity_promote": (
        "Figure A1. Mean class selectivity index per layer (a) and averaged "
        "over layers (b) when regularizing for selectivity (α ≥ 0)."
    ),
    "fig2_accuracy_suppress": (
        "Figure 2. Test accuracy vs α (a), its distribution for a subset of "
        "α (b) and vs mean class selectivity (c), α ≤ 0. ▲ / ▼: accuracy "
        "significantly higher / lower than at α = 0."
    ),
    "fig3_cca": (
        "Figure 3. CCA distance per layer between replicates and to α = 0 "
        "networks (a), and the layer-averaged distance ratio vs α (b; ▲ / ▼: "
        "distance to α = 0 networks significantly larger / smaller than between "
        "replicates); one series per activation where runs of several were analysed."
    ),
    "fig4_accuracy_promote": (
        "Figure 4. Test accuracy vs α (a), its distribution (b) and vs mean "
        "class selectivity (c), α ≥ 0. ▲ / ▼: accuracy significantly higher / "
        "lower than at α = 0."
    ),
    "fig5_promote_vs_suppress": (
        "Figure 5. Test accuracy vs |α| when promoting vs suppressing "
        "selectivity (a; ▲ / ▼: promoting significantly better / worse than "
        "suppressing at the same |α|, rank-sum test) and vs mean "
        "class selectivity (b)."
    ),
    "figA7_precision_suppress": (
        "Figure A7. Precision (alternative selectivity metric, Appendix A.5) "
        "per layer (a) and averaged over layers (b), α ≤ 0."
    ),
    "figA8_precision_promote": (
        "Figure A8. Precision per layer (a) and averaged over layers (b), α ≥ 0."
    ),
    "figA9_dead_units": (
        "Figure A9. Dead units per layer (a), selectivity of live units vs α "
        "(b), and test accuracy vs that selectivity (c; ▲ / ▼: accuracy "
        "significantly higher / lower than at α = 0)."
    ),
    "figA10_leaky_relu": (
        "Figure A10. Leaky-ReLU networks: test accuracy vs α per negative "
        "slope (a) and mean class selectivity vs α for one slope (b; ▲ / ▼: "
        "significantly higher / lower than at α = 0)."
    ),
    "figA12_model_comparison": (
        "Figure A12. Test accuracy (a) and mean class selectivity (b) vs α "
        "for each model."
    ),
}


def _relative_link(path: str | Path, output_dir: Path) -> str:
    """Path of `path` relative to the report, URL-quoted for Markdown."""
    relative = os.path.relpath(Path(path).resolve(), output_dir.resolve())
    return urllib.parse.quote(Path(relative).as_posix())


def _caption(name: str) -> str:
    matches = [prefix for prefix in FIGURE_CAPTIONS if name.startswith(prefix)]
    return FIGURE_CAPTIONS[max(matches, key=len)] if matches else ""


def figures_section(figures: dict[str, Sequence[str]] | None, output_dir: Path) -> list[str]:
    lines = ["## Figures", ""]
    if not figures:
        lines += ["No figures were drawn (pass the result of `tf_selectivity.plots.draw_all`).", ""]
        return lines
    for name, paths in figures.items():
        existing = [Path(p) for p in paths if Path(p).exists()]
        lines += [f"### {name}", ""]
        caption = _caption(name)
        if caption:
            lines += [caption, ""]
        if not existing:
            lines += ["_The figure files are missing._", ""]
            continue
        images = [p for p in existing if p.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg")]
        if images:
            lines += [f"![{name}]({_relative_link(images[0], output_dir)})", ""]
        links = ", ".join(
            f"[{p.suffix.lstrip('.').upper()}]({_relative_link(p, output_dir)})" for p in existing
        )
        lines += [f"Files: {links}", ""]
    return lines
