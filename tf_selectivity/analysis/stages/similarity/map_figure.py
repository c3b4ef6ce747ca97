"""Layer-by-layer similarity maps (`analyze --similarity_maps`).

Kornblith et al.'s Figure 2: for a pair of runs, the CKA of every layer of
one with every layer of the other, as a heatmap. One row of panels per
condition and treated alpha, one column per comparison (a within-alpha pair,
a to-baseline pair), on a shared colour scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.analysis.stages.similarity.figure3 import MEASURE_NAMES
from tf_selectivity.plots.style import condition_label, display_model_name, format_alpha

_COMPARISON_TITLES = {"within": "two replicates at α", "to_baseline": "α vs. α = 0"}


def plot_similarity_maps(maps: pd.DataFrame | None, model: str) -> Figure | None:
    """The maps of one model.

    Args:
        maps: The `similarity_maps` table (`maps.MAP_COLUMNS`
            plus model, activation, leaky_slope, alpha).
        model: The model to draw.

    Returns:
        The figure, or None when the table has no map of `model`.
    """
    if maps is None or maps.empty:
        return None
    rows = maps.loc[maps["model"].astype(str) == str(model)]
    if rows.empty:
        return None
    names = rows["condition"] if "condition" in rows.columns else pd.Series("", index=rows.index)
    panels = list(dict.fromkeys(zip(rows["activation"], rows["leaky_slope"], names, rows["alpha"].astype(float))))
    comparisons = [c for c in _COMPARISON_TITLES if (rows["comparison"] == c).any()]
    measure = str(rows["measure"].iloc[0])
    layers = rows.drop_duplicates("layer_index_a").sort_values("layer_index_a")["layer_a"].tolist()
    size = 2.6 + 0.08 * len(layers)
    figure = Figure(figsize=(size * len(comparisons) + 1.0, size * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), len(comparisons), squeeze=False)
    image = None
    for r, (activation, slope, name, alpha) in enumerate(panels):
        condition = {"model": model, "activation": activation, "leaky_slope": slope, "condition": name}
        for c, comparison in enumerate(comparisons):
            ax = axes[r, c]
            part = rows.loc[(rows["activation"] == activation) & (rows["leaky_slope"] == slope) & (names == name)
                            & np.isclose(rows["alpha"].astype(float), alpha)
                            & (rows["comparison"] == comparison)]
            if part.empty:
                ax.set_axis_off()
                continue
            grid = part.pivot_table(index="layer_index_a", columns="layer_index_b", values="similarity")
            image = ax.imshow(grid.to_numpy(), vmin=0.0, vmax=1.0, cmap="magma", origin="lower")
            ax.set_title(f"{condition_label(condition, with_model=False)}, α = {format_alpha(alpha)}: "
                         f"{_COMPARISON_TITLES[comparison]}", fontsize=8)
            ax.set_xlabel(f"layer of {part['run_b'].iloc[0].rstrip('/').split('/')[-1]}", fontsize=7)
            ax.set_ylabel(f"layer of {part['run_a'].iloc[0].rstrip('/').split('/')[-1]}", fontsize=7)
            ax.tick_params(labelsize=6)
            if len(layers) <= 20:
                names = [str(n)[len("probe_"):] if str(n).startswith("probe_") else str(n) for n in layers]
                ax.set_xticks(range(len(names)), names, rotation=90)
                ax.set_yticks(range(len(names)), names)
    if image is not None:
        figure.colorbar(image, ax=axes, shrink=0.8, label=MEASURE_NAMES.get(measure, measure))
    figure.suptitle(f"{display_model_name(model)}: {MEASURE_NAMES.get(measure, measure)} of every layer "
                    "against every layer", fontsize=9)
    return figure
