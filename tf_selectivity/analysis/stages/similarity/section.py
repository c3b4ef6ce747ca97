"""The similarity stage's part of the report: the CCA sentence of each condition and the CCA section.

The numbers are those of `stats.cca_ratio_summary`, as in the analysis
command's `cca_tests` table and in Figure 3b: one row per condition (model,
activation, leaky slope) and alpha, never pooled across conditions.
`report_parts` gives both parts in the form `report.assemble_report` takes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tf_selectivity.analysis.stages.similarity.figure3 import DEFAULT_CCA_EXAMPLE_ALPHA, MEASURE_NAMES
from tf_selectivity.measures import stats
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.conditions import condition_from_key, condition_key, condition_title, row_at_alpha
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
    if tested:
        test_text = (
            f"the distance to baseline significantly exceeded the within-α distance at "
            f"{exceeded} of {tested} α values (paired t-test over layers, "
            f"Bonferroni-corrected over the {tested} α of this condition)"
        )
    else:
        test_text = (
            "no α could be tested (the paired t-test over layers needs two or more "
            "layers whose distance differences vary)"
        )
    return (
        f"{title}: at α = {format_alpha(example)} the CCA distance to α = 0 networks was "
        f"{ratio} times the distance between replicates (layer-averaged ratio "
        f"ρ(α, α₀) : ρ(α, α), [95% CI over layers]); {ratio_range}{test_text}. A ratio "
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


def _one_method(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of one CCA method: PWCCA (the paper's) when present, and of
    PWCCA's variants the paper's ("svcca") when present."""
    if "method" not in table.columns or table.empty:
        return table
    methods = sorted(table["method"].dropna().astype(str).unique())
    method = "pwcca" if "pwcca" in methods else methods[0]
    table = table.loc[table["method"].astype(str) == method]
    if "pwcca_variant" in table.columns:
        variants = sorted(table["pwcca_variant"].fillna("").astype(str).unique())
        variant = "svcca" if "svcca" in variants else variants[0]
        table = table.loc[table["pwcca_variant"].fillna("").astype(str) == variant]
    return table


def _cca_method_sentence(table: pd.DataFrame) -> str:
    """Which CCA distance (and PWCCA variant) the CCA section reports."""
    method = str(table["method"].iloc[0]) if "method" in table.columns else "pwcca"
    variant = str(table["pwcca_variant"].iloc[0]) if "pwcca_variant" in table.columns else ""
    if method == "svcca":
        return ("Distances are SVCCA distances: 1 - the mean canonical correlation of the "
                "directions that explain 99% of each layer's variance.")
    if method == "mean_cca":
        return "Distances are 1 - the mean canonical correlation."
    if variant == "svcca":
        return ("Distances are PWCCA distances as google/svcca's `compute_pwcca` computes them, the "
                "code the paper used (`--cca_pwcca_variant=svcca`): its weights project the uncentred "
                "activations onto unwhitened canonical directions with the unit means added back, and "
                "differ from the textbook definition of Morcos et al. (`--cca_pwcca_variant=textbook`) "
                "by up to about 0.1 in distance (more when unit means are large).")
    if variant == "textbook":
        return ("Distances are PWCCA distances as Morcos et al. (2018) define them "
                "(`--cca_pwcca_variant=textbook`): canonical correlations weighted by the summed "
                "absolute projections of the centred units onto the canonical variates. The paper used "
                "google/svcca's `compute_pwcca` (`--cca_pwcca_variant=svcca`), which differs by up to "
                "about 0.1 in distance (more when unit means are large).")
    return ("Distances are PWCCA distances; the table does not record the variant (tables written "
            "before the `pwcca_variant` column used the textbook definition).")


def _measure_label(method: str, variant: str) -> str:
    name = MEASURE_NAMES.get(method, method)
    return f"{name} ({variant})" if method == "pwcca" and variant else name


def _verdict(row) -> str:
    """Whether the paper's conclusion (suppressed, not rotated) holds at this alpha."""
    if not np.isfinite(row["p_bonferroni"]):
        return "not tested"
    if row["significant"] and row["mean_difference"] > 0:
        return "holds"
    return "not shown"


def measures_section(cca_ratio: pd.DataFrame | None, n_resamples: int) -> list[str]:
    """Per condition, the layer-averaged distance ratio under each measure, side by side.

    One row per alpha and one column per measure (and PWCCA variant), each
    cell the ratio with its 95% CI and whether the paper's conclusion holds
    at that alpha under that measure: "holds" when the distance to baseline
    significantly exceeds the within-alpha distance (paired t-test over
    layers, Bonferroni over the condition's alphas, as in the CCA table),
    "not shown" otherwise. Empty with fewer than two measures.

    Args:
        cca_ratio: The `cca_ratios` table of every measure, or None.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        Markdown lines.
    """
    if cca_ratio is None or cca_ratio.empty or "method" not in cca_ratio.columns:
        return []
    table = cca_ratio.copy()
    if "pwcca_variant" not in table.columns:
        table["pwcca_variant"] = ""
    table["pwcca_variant"] = table["pwcca_variant"].fillna("").astype(str)
    measures = list(dict.fromkeys(zip(table["method"].astype(str), table["pwcca_variant"])))
    if len(measures) < 2:
        return []
    summary = stats.cca_ratio_summary(table, n_resamples=n_resamples)
    lines = [
        "### The distance ratio under each measure",
        "",
        "Figure 3's test repeated with every measure of the analysis (`--similarity`), from the same "
        "responses and pairs: the layer-averaged ratio ρ(α, α₀) : ρ(α, α) [95% CI over layers], and "
        "whether the paper's conclusion holds at that α (the distance to baseline significantly "
        "exceeds the within-α distance, paired t-test over layers, Bonferroni over the condition's "
        "α). CCA is invariant to every invertible linear map, CKA and Procrustes only to rotations "
        "and isotropic scaling, so a conclusion that holds under all of them does not depend on that "
        "choice. Distances: 1 - similarity for CCA and CKA, the angular Procrustes distance "
        "(rotations only) in radians.",
        "",
    ]
    for condition, condition_summary in stats.split_by_condition(summary):
        rows = []
        for alpha in sorted(condition_summary["alpha"].unique()):
            cells = [format_alpha(alpha)]
            at_alpha = condition_summary.loc[np.isclose(condition_summary["alpha"], alpha)]
            for method, variant in measures:
                match = at_alpha.loc[(at_alpha["method"].astype(str) == method)
                                     & (at_alpha["pwcca_variant"].fillna("").astype(str) == variant)]
                if match.empty:
                    cells.append("–")
                    continue
                row = match.iloc[0]
                ratio = format_with_ci(row["mean_ratio"], row["ci_low"], row["ci_high"],
                                       lambda v: f"{v:.3f}", int(row["n_layers"]))
                cells.append(f"{ratio}: {_verdict(row)}")
            rows.append(cells)
        lines += [f"#### {condition_title(condition)}", "",
                  markdown_table(["α", *(_measure_label(m, v) for m, v in measures)], rows), ""]
    return lines


def cca_section(
    cca: pd.DataFrame | None, cca_ratio: pd.DataFrame | None, n_resamples: int
) -> tuple[dict[tuple, str], list[str]]:
    """Headline sentences and table block of the CCA analysis.

    Args:
        cca: The pairwise `cca` table, or None.
        cca_ratio: The `cca_ratio` table; derived from `cca` when None.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        `({condition_key: sentence}, table lines)`, one sentence and one
        table per condition (`report.conditions.condition_key`).
    """
    if cca_ratio is None and cca is not None and not cca.empty:
        cca_ratio = stats.cca_distance_ratio(_one_method(cca))
    if cca_ratio is None or cca_ratio.empty:
        return {}, []
    all_measures = cca_ratio
    cca_ratio = _one_method(cca_ratio)
    summary = stats.cca_ratio_summary(cca_ratio, n_resamples=n_resamples)
    headlines, tables = {}, []
    tables += [_cca_method_sentence(cca_ratio), ""]
    for condition, condition_summary in stats.split_by_condition(summary):
        title = condition_title(condition)
        sentence = _cca_sentence(title, condition_summary)
        if sentence:
            headlines[condition_key(condition)] = sentence
        tables += [f"### {title}: CCA distance ratio", "", _cca_table(condition_summary), ""]
    tables += measures_section(all_measures, n_resamples)
    return headlines, tables


def similarity_section(cca_tables: Sequence[str]) -> list | None:
    """The CCA section around the table block of `cca_section` (None without one)."""
    if not cca_tables:
        return None
    lines = ["## Representational similarity (CCA)", "", *cca_tables]
    # `report.assemble_report` puts one blank line after every section.
    return lines[:-1] if lines[-1] == "" else lines


def report_parts(
    cca: pd.DataFrame | None, cca_ratio: pd.DataFrame | None, n_resamples: int
) -> tuple[list, list | None]:
    """The stage's headline sentences and report section, in the form `report.assemble_report` takes.

    Args:
        cca: The pairwise table of the measure the report states (one
            method and PWCCA variant), or None.
        cca_ratio: The `cca_ratios` table of every measure (derived from
            `cca` when None).
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        ``([(condition, [sentence]), ...], section lines or None)``.
    """
    sentences, tables = cca_section(cca, cca_ratio, n_resamples)
    headlines = [(condition_from_key(key), [sentence]) for key, sentence in sentences.items()]
    return headlines, similarity_section(tables)
