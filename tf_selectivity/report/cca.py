"""The CCA distance ratio (Figure 3): headline sentence and table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity import stats
from tf_selectivity.plots.cca import DEFAULT_CCA_EXAMPLE_ALPHA
from tf_selectivity.plots.style import display_model_name, format_alpha
from tf_selectivity.report.conditions import row_at_alpha
from tf_selectivity.report.formatting import format_p_cell, format_with_ci, markdown_table


def _cca_sentence(title: str, summary: pd.DataFrame) -> str | None:
    """Layer-averaged CCA distance ratio, as in Figure 3."""
    summary = summary.loc[summary["n_layers"] > 0]
    if summary.empty:
        return None
    candidates = summary["alpha"].to_numpy(dtype=float)
    if np.isclose(candidates, DEFAULT_CCA_EXAMPLE_ALPHA).any():
        example = DEFAULT_CCA_EXAMPLE_ALPHA
    else:
        example = float(candidates[np.argmin(np.abs(candidates - DEFAULT_CCA_EXAMPLE_ALPHA))])
    row = row_at_alpha(summary, example)
    ratio = format_with_ci(row["mean_ratio"], row["ci_low"], row["ci_high"],
                           lambda v: f"{v:.2f}", int(row["n_layers"]))
    tested = int(summary["p_value"].notna().sum())
    exceeded = int((summary["significant"] & (summary["mean_difference"] > 0)).sum())
    lowest = summary.loc[summary["mean_ratio"].idxmin()]
    highest = summary.loc[summary["mean_ratio"].idxmax()]
    ratio_range = (
        f"across α the ratio ranged from {lowest['mean_ratio']:.2f} "
        f"(α = {format_alpha(lowest['alpha'])}) to {highest['mean_ratio']:.2f} "
        f"(α = {format_alpha(highest['alpha'])}), and "
        if len(summary) > 1 else ""
    )
    return (
        f"{title}: at α = {format_alpha(example)} the CCA distance to α = 0 networks was "
        f"{ratio} times the distance between replicates (layer-averaged ratio "
        f"ρ(α, α₀) : ρ(α, α), [95% CI over layers]); {ratio_range}the distance "
        f"to baseline significantly exceeded the within-α distance at {exceeded} of "
        f"{tested} α values (paired t-test over layers, Bonferroni-corrected). A ratio "
        f"above 1 means selectivity was suppressed rather than rotated off the unit axes."
    )


def _cca_table(summary: pd.DataFrame) -> str:
    rows = [
        [
            format_alpha(row["alpha"]),
            int(row["n_layers"]),
            format_with_ci(row["mean_ratio"], row["ci_low"], row["ci_high"],
                           lambda v: f"{v:.3f}", int(row["n_layers"])),
            format_p_cell(row["p_bonferroni"]),
        ]
        for _, row in summary.iterrows()
    ]
    return markdown_table(
        ["α", "Layers", "Distance ratio ρ(α, α₀) : ρ(α, α) [95% CI]",
         "p (paired t over layers, Bonferroni)"],
        rows,
    )


def cca_section(
    cca: pd.DataFrame | None, cca_ratio: pd.DataFrame | None, n_resamples: int
) -> tuple[dict[str, str], list[str]]:
    """({model: headline sentence}, table block) for the CCA analysis."""
    if cca_ratio is None and cca is not None and not cca.empty:
        rows = cca
        if "method" in cca.columns and (cca["method"] == "pwcca").any():
            rows = cca.loc[cca["method"] == "pwcca"]
        cca_ratio = stats.cca_distance_ratio(rows)
    if cca_ratio is None or cca_ratio.empty:
        return {}, []
    summary = stats.cca_ratio_summary(cca_ratio, n_resamples=n_resamples)
    headlines, tables = {}, []
    for model, model_summary in summary.groupby("model", sort=True):
        title = display_model_name(model)
        sentence = _cca_sentence(title, model_summary)
        if sentence:
            headlines[str(model)] = sentence
        tables += [f"### {title}: CCA distance ratio", "", _cca_table(model_summary), ""]
    return headlines, tables
