"""The Markdown report a researcher opens first after a sweep.

`write_report` turns the analysis tables (`runs`, `layers`, `cca`,
`cca_ratio`) into one `report.md`: the headline numbers in sentences (as the
paper states them: "mean class selectivity fell from 0.22 at alpha = 0 to
0.07 at alpha = -1 (3.1x lower); test accuracy changed by -0.30 points
(p = 0.03, ...)"), per-alpha summary tables with bootstrapped 95% CIs and
Bonferroni-corrected tests, the CCA distance ratios, the figures drawn by
`tf_selectivity.plots.draw_all` linked with relative paths, the runs that
could not be analysed, and finally the table of every run.

All numbers come from `tf_selectivity.stats`, so the report and the figures
agree. Runs are analysed per condition: one model with one activation (and
one leaky-ReLU slope); the headline comparison is always against the
`alpha = 0` runs of the same condition, and is omitted (with a sentence
saying why) when there are none.
"""

from __future__ import annotations

import datetime
import math
import os
import urllib.parse
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from tf_selectivity import plots, stats

REPORT_FILENAME = "report.md"

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
        "α (b) and vs mean class selectivity (c), α ≤ 0. Asterisks: "
        "difference from α = 0."
    ),
    "fig3_cca": (
        "Figure 3. CCA distance per layer between replicates and to α = 0 "
        "networks (a), and the layer-averaged distance ratio vs α (b)."
    ),
    "fig4_accuracy_promote": (
        "Figure 4. Test accuracy vs α (a), its distribution (b) and vs mean "
        "class selectivity (c), α ≥ 0. Asterisks: difference from α = 0."
    ),
    "fig5_promote_vs_suppress": (
        "Figure 5. Test accuracy vs |α| when promoting vs suppressing "
        "selectivity (a; asterisks: rank-sum test between signs) and vs mean "
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
        "(b), and test accuracy vs that selectivity (c)."
    ),
    "figA10_leaky_relu": (
        "Figure A10. Leaky-ReLU networks: test accuracy vs α per negative "
        "slope (a) and mean class selectivity vs α for one slope (b)."
    ),
    "figA12_model_comparison": (
        "Figure A12. Test accuracy (a) and mean class selectivity (b) vs α "
        "for each model."
    ),
}

# Column order of the table of runs (any other columns follow).
RUN_COLUMNS = (
    "run_dir",
    "model",
    "activation",
    "leaky_slope",
    "alpha",
    "seed",
    "epochs",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "test_mean_selectivity",
    "test_mean_selectivity_alive",
    "mean_precision",
    "dead_unit_fraction",
    "num_units",
)

TTEST_NAME = "Bonferroni-corrected Welch t-test"
RANKSUM_NAME = "Bonferroni-corrected Wilcoxon rank-sum test"


# --------------------------------------------------------------------------
# Formatting helpers.
# --------------------------------------------------------------------------


def _alpha(alpha: float) -> str:
    return plots.format_alpha(alpha)


def _selectivity(value: float) -> str:
    """Selectivity-like values (0..1): 0.216, 0.070, 0.0079, 0.00014.

    Three decimals keep a table column aligned; values that would round to
    0.00x keep two significant digits instead, because the paper's
    strongest suppression reaches selectivity of order 0.003.
    """
    if not np.isfinite(value):
        return "n/a"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.3f}"
    return f"{value:.2g}"


def _percent(fraction: float, digits: int = 2) -> str:
    """0.9123 -> "91.23" (a fraction shown in percent, without the sign)."""
    return "n/a" if not np.isfinite(fraction) else f"{100 * fraction:.{digits}f}"


def _with_ci(mean: float, low: float, high: float, formatter, n: int) -> str:
    """"mean [low, high]", or just the mean when no interval exists (n < 2)."""
    if not np.isfinite(mean):
        return "n/a"
    if n < 2 or not (np.isfinite(low) and np.isfinite(high)):
        return formatter(mean)
    return f"{formatter(mean)} [{formatter(low)}, {formatter(high)}]"


def _p_cell(p: float) -> str:
    """A p-value in a table cell: "0.03", "< 1e-6", "n/a"."""
    text = stats.format_p_value(p)
    return text[len("p = "):] if text.startswith("p = ") else text[len("p "):]


def _escape_cell(text: str) -> str:
    """Keeps a table cell on one line and its pipes literal."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub-flavoured Markdown table.

    (`pandas.DataFrame.to_markdown` needs the optional `tabulate` package,
    which is not a dependency.)

    Args:
        headers: Column titles.
        rows: Cells per row, already formatted (converted with `str`).

    Returns:
        The table text, without a trailing newline.
    """
    lines = [
        "| " + " | ".join(_escape_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_escape_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


def _format_run_cell(column: str, value) -> str:
    """A cell of the table of runs."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == "run_dir":
        return f"`{value}`"
    if isinstance(value, (float, np.floating)):
        if column in ("alpha", "leaky_slope"):
            return _alpha(value)
        return f"{float(value):.4g}"
    return str(value)


# --------------------------------------------------------------------------
# Conditions: one model with one activation / slope.
# --------------------------------------------------------------------------


def _condition_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in ("model", "activation", "leaky_slope") if c in runs.columns]


def _conditions(runs: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """Runs split by (model, activation, leaky slope); ReLU before leaky."""
    if runs is None or runs.empty:
        return []
    data = runs.copy()
    data["alpha"] = data["alpha"].astype(float)
    columns = _condition_columns(data)
    fill = {"activation": "relu", "leaky_slope": 0.0}
    data = data.fillna({c: fill[c] for c in columns if c in fill})
    conditions = [
        (dict(zip(columns, key if isinstance(key, tuple) else (key,))), rows)
        for key, rows in data.groupby(columns, sort=True)
    ]
    return sorted(conditions, key=lambda item: (
        str(item[0].get("model", "")),
        _is_leaky_condition(item[0]),
        float(item[0].get("leaky_slope", 0.0)),
    ))


def _is_leaky_condition(condition: dict) -> bool:
    return "leaky" in str(condition.get("activation", "")).lower()


def condition_title(condition: dict) -> str:
    """ "ResNet20" or "ResNet20, leaky ReLU (negative slope 0.5)"."""
    title = plots.display_model_name(condition.get("model", "model"))
    activation = str(condition.get("activation", "relu"))
    if "leaky" in activation.lower():
        return f"{title}, leaky ReLU (negative slope {float(condition.get('leaky_slope', 0)):g})"
    if activation.lower() != "relu":
        return f"{title}, {activation}"
    return title


def _has_baseline(runs: pd.DataFrame) -> bool:
    return bool(np.isclose(runs["alpha"].astype(float), 0.0).any())


# --------------------------------------------------------------------------
# Per-condition summary (one row per alpha).
# --------------------------------------------------------------------------


def summarize_condition(runs: pd.DataFrame, n_resamples: int) -> pd.DataFrame:
    """Per-alpha summary of one condition, with tests against alpha = 0.

    Args:
        runs: Runs of one model / activation.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        DataFrame indexed by position with columns `alpha, n` and, for each
        of `test_accuracy`, `test_mean_selectivity`,
        `test_mean_selectivity_alive`, `mean_precision`,
        `dead_unit_fraction` present, `<column>_mean`, `_ci_low`, `_ci_high`,
        `_n`; plus the t-test columns of accuracy (`difference`, `p_value`,
        `p_bonferroni`, `significant`) and of selectivity (`si_p_bonferroni`).
    """
    summary = runs.groupby("alpha", sort=True).size().rename("n").reset_index()
    for column in (
        "test_accuracy",
        "test_mean_selectivity",
        "test_mean_selectivity_alive",
        "mean_precision",
        "dead_unit_fraction",
    ):
        if column not in runs.columns:
            continue
        per_alpha = stats.summarize_by_group(runs, column, "alpha", n_resamples=n_resamples)
        per_alpha = per_alpha.rename(columns={
            "n": f"{column}_n", "mean": f"{column}_mean",
            "ci_low": f"{column}_ci_low", "ci_high": f"{column}_ci_high",
        }).drop(columns="std")
        summary = summary.merge(per_alpha, on="alpha", how="left")
    if "test_accuracy" in runs.columns:
        tests = stats.ttests_vs_baseline(runs, value="test_accuracy")
        summary = summary.merge(
            tests[["alpha", "baseline_n", "difference", "p_value", "p_bonferroni", "significant"]],
            on="alpha", how="left",
        )
    if "test_mean_selectivity" in runs.columns:
        si_tests = stats.ttests_vs_baseline(runs, value="test_mean_selectivity")
        summary = summary.merge(
            si_tests[["alpha", "p_bonferroni"]].rename(columns={"p_bonferroni": "si_p_bonferroni"}),
            on="alpha", how="left",
        )
    return summary


def _row(summary: pd.DataFrame, alpha: float) -> pd.Series:
    return summary.loc[np.isclose(summary["alpha"], alpha)].iloc[0]


def _get(row: pd.Series, column: str) -> float:
    value = row.get(column, math.nan)
    return float(value) if value is not None and pd.notna(value) else math.nan


def _summary_table(summary: pd.DataFrame) -> str:
    headers = [
        "α", "n", "Test accuracy, % [95% CI]", "Δ accuracy vs α = 0 (points)",
        "p (Welch t, Bonferroni)", "Mean SI [95% CI]", "Mean SI, live units",
        "Mean precision", "Dead units, %",
    ]
    rows = []
    for _, row in summary.iterrows():
        def ci(column, formatter):
            return _with_ci(
                _get(row, f"{column}_mean"), _get(row, f"{column}_ci_low"),
                _get(row, f"{column}_ci_high"), formatter,
                int(_get(row, f"{column}_n")) if np.isfinite(_get(row, f"{column}_n")) else 0,
            )

        is_baseline = np.isclose(row["alpha"], 0.0)
        difference = _get(row, "difference")
        rows.append([
            _alpha(row["alpha"]),
            int(row["n"]),
            ci("test_accuracy", _percent),
            "baseline" if is_baseline else (
                f"{100 * difference:+.2f}" if np.isfinite(difference) else "n/a"),
            "" if is_baseline else _p_cell(_get(row, "p_bonferroni")),
            ci("test_mean_selectivity", _selectivity),
            ci("test_mean_selectivity_alive", _selectivity),
            ci("mean_precision", _selectivity),
            _percent(_get(row, "dead_unit_fraction_mean"), digits=1),
        ])
    return markdown_table(headers, rows)


# --------------------------------------------------------------------------
# Headline sentences.
# --------------------------------------------------------------------------


def _test_clause(row: pd.Series) -> str:
    """ "(p = 0.03, Bonferroni-corrected Welch t-test, n = 20 vs 20)"."""
    n_baseline = _get(row, "baseline_n")
    n_baseline_text = str(int(n_baseline)) if np.isfinite(n_baseline) else "0"
    return (
        f"({stats.format_p_value(_get(row, 'p_bonferroni'))}, {TTEST_NAME}, "
        f"n = {int(row['n'])} vs {n_baseline_text})"
    )


def effect_sentence(title: str, summary: pd.DataFrame, alpha: float) -> str:
    """Selectivity and accuracy change from alpha = 0 to `alpha`.

    Example: "ResNet20: mean class selectivity fell from 0.22 at α = 0 to
    0.07 at α = -1 (3.1x lower); test accuracy changed by -0.30 points
    (p = 0.03, Bonferroni-corrected Welch t-test, n = 20 vs 20)."

    Args:
        title: Condition title (e.g. "ResNet20").
        summary: Output of `summarize_condition` (must contain alpha = 0).
        alpha: The treated alpha.

    Returns:
        The sentence.
    """
    baseline, treated = _row(summary, 0.0), _row(summary, alpha)
    parts = []
    base_si = _get(baseline, "test_mean_selectivity_mean")
    treated_si = _get(treated, "test_mean_selectivity_mean")
    if np.isfinite(base_si) and np.isfinite(treated_si):
        verb = "fell" if treated_si < base_si else "rose"
        change = (
            f"mean class selectivity {verb} from {_selectivity(base_si)} at α = 0 to "
            f"{_selectivity(treated_si)} at α = {_alpha(alpha)}"
        )
        if base_si > 0 and treated_si > 0:
            factor = max(base_si, treated_si) / min(base_si, treated_si)
            change += f" ({factor:.1f}x {'lower' if treated_si < base_si else 'higher'})"
        parts.append(change)
    difference = _get(treated, "difference")
    if np.isfinite(difference):
        parts.append(
            f"test accuracy changed by {100 * difference:+.2f} points "
            f"({_percent(_get(baseline, 'test_accuracy_mean'))}% → "
            f"{_percent(_get(treated, 'test_accuracy_mean'))}%; {_test_clause(treated)[1:-1]})"
        )
    if not parts:
        return f"{title}: no selectivity or accuracy data at α = {_alpha(alpha)}."
    return f"{title}: " + "; ".join(parts) + "."


def _baseline_sentence(title: str, summary: pd.DataFrame) -> str:
    row = _row(summary, 0.0)
    n = int(row["n"])
    si = _with_ci(_get(row, "test_mean_selectivity_mean"), _get(row, "test_mean_selectivity_ci_low"),
                  _get(row, "test_mean_selectivity_ci_high"), _selectivity, n)
    accuracy = _with_ci(_get(row, "test_accuracy_mean"), _get(row, "test_accuracy_ci_low"),
                        _get(row, "test_accuracy_ci_high"), _percent, n)
    return (
        f"{title} without regularization (α = 0, n = {n}): mean class selectivity "
        f"{si}, test accuracy {accuracy}% (mean [bootstrapped 95% CI])."
    )


def _suppression_sentences(title: str, summary: pd.DataFrame) -> list[str]:
    """First significant, largest harmless, and strongest suppression."""
    negative = summary.loc[summary["alpha"] < 0].sort_values("alpha", ascending=False)
    if negative.empty:
        return []
    sentences = []
    tested = negative.loc[negative["p_bonferroni"].notna()] if "p_bonferroni" in negative else negative.iloc[0:0]
    significant = tested.loc[tested["significant"].astype(bool)] if not tested.empty else tested
    chosen = set()
    if not significant.empty:
        alpha = float(significant.iloc[0]["alpha"])
        chosen.add(alpha)
        sentences.append(
            f"Suppressing selectivity first changed test accuracy significantly at "
            f"α = {_alpha(alpha)}. " + effect_sentence(title, summary, alpha)
        )
    elif not tested.empty:
        sentences.append(
            f"No negative α changed {title} test accuracy significantly "
            f"({len(tested)} α tested, {TTEST_NAME}s)."
        )
    harmless = tested.loc[~tested["significant"].astype(bool)] if not tested.empty else tested
    if not harmless.empty and "test_mean_selectivity_mean" in harmless:
        harmless = harmless.loc[harmless["test_mean_selectivity_mean"].notna()]
        if not harmless.empty:
            alpha = float(harmless.sort_values("test_mean_selectivity_mean").iloc[0]["alpha"])
            if alpha not in chosen:
                chosen.add(alpha)
                sentences.append(
                    "Largest reduction in selectivity without a significant change in "
                    "test accuracy: " + effect_sentence(title, summary, alpha)
                )
    strongest = float(negative["alpha"].min())
    if strongest not in chosen:
        sentences.append(
            f"Strongest suppression tested (α = {_alpha(strongest)}): "
            + effect_sentence(title, summary, strongest)
        )
    return sentences


def _dead_units_clause(summary: pd.DataFrame, alpha: float) -> str:
    if "dead_unit_fraction_mean" not in summary:
        return ""
    base = _get(_row(summary, 0.0), "dead_unit_fraction_mean")
    treated = _get(_row(summary, alpha), "dead_unit_fraction_mean")
    if not (np.isfinite(base) and np.isfinite(treated)):
        return ""
    return (
        f" Dead units: {_percent(treated, 1)}% of units at α = {_alpha(alpha)} vs "
        f"{_percent(base, 1)}% at α = 0."
    )


def _promotion_sentences(title: str, summary: pd.DataFrame) -> list[str]:
    """Strongest promoting alpha, and where the effect becomes significant."""
    positive = summary.loc[summary["alpha"] > 0].sort_values("alpha")
    if positive.empty:
        return []
    strongest = float(positive["alpha"].max())
    sentences = [
        f"Strongest promotion tested (α = {_alpha(strongest)}): "
        + effect_sentence(title, summary, strongest)
        + _dead_units_clause(summary, strongest)
    ]
    if "significant" in positive:
        significant = positive.loc[positive["significant"].fillna(False).astype(bool)]
        if not significant.empty and float(significant.iloc[0]["alpha"]) != strongest:
            row = significant.iloc[0]
            sentences.append(
                f"Promoting selectivity first changed test accuracy significantly at "
                f"α = {_alpha(row['alpha'])}: {100 * _get(row, 'difference'):+.2f} points "
                f"{_test_clause(row)}."
            )
        elif significant.empty and positive["p_bonferroni"].notna().any():
            sentences.append(
                f"No positive α changed {title} test accuracy significantly ({TTEST_NAME}s)."
            )
    return sentences


def _ranksum_sentence(title: str, tests: pd.DataFrame) -> str | None:
    """Smallest |alpha| at which promoting and suppressing differ."""
    if tests.empty or not tests["p_value"].notna().any():
        return None
    significant = tests.loc[tests["significant"]]
    tested = int(tests["p_value"].notna().sum())
    if significant.empty:
        return (
            f"{title}: promoting and suppressing selectivity did not differ significantly "
            f"in test accuracy at any of {tested} |α| values ({RANKSUM_NAME})."
        )
    row = significant.iloc[0]
    direction = "lower" if row["mean_positive"] < row["mean_negative"] else "higher"
    return (
        f"{title}: promoting selectivity gave {direction} test accuracy than suppressing it "
        f"from |α| = {_alpha(row['abs_alpha'])} ({_percent(row['mean_positive'])}% vs "
        f"{_percent(row['mean_negative'])}%; {stats.format_p_value(row['p_bonferroni'])}, "
        f"{RANKSUM_NAME}, n = {int(row['n_positive'])} vs {int(row['n_negative'])}); "
        f"significant at {len(significant)} of {tested} |α| values."
    )


def _cca_sentence(title: str, summary: pd.DataFrame) -> str | None:
    """Layer-averaged CCA distance ratio, as in Figure 3."""
    summary = summary.loc[summary["n_layers"] > 0]
    if summary.empty:
        return None
    candidates = summary["alpha"].to_numpy(dtype=float)
    if np.isclose(candidates, plots.DEFAULT_CCA_EXAMPLE_ALPHA).any():
        example = plots.DEFAULT_CCA_EXAMPLE_ALPHA
    else:
        example = float(candidates[np.argmin(np.abs(candidates - plots.DEFAULT_CCA_EXAMPLE_ALPHA))])
    row = _row(summary, example)
    ratio = _with_ci(row["mean_ratio"], row["ci_low"], row["ci_high"],
                     lambda v: f"{v:.2f}", int(row["n_layers"]))
    tested = int(summary["p_value"].notna().sum())
    exceeded = int((summary["significant"] & (summary["mean_difference"] > 0)).sum())
    lowest = summary.loc[summary["mean_ratio"].idxmin()]
    highest = summary.loc[summary["mean_ratio"].idxmax()]
    ratio_range = (
        f"across α the ratio ranged from {lowest['mean_ratio']:.2f} "
        f"(α = {_alpha(lowest['alpha'])}) to {highest['mean_ratio']:.2f} "
        f"(α = {_alpha(highest['alpha'])}), and "
        if len(summary) > 1 else ""
    )
    return (
        f"{title}: at α = {_alpha(example)} the CCA distance to α = 0 networks was "
        f"{ratio} times the distance between replicates (layer-averaged ratio "
        f"ρ(α, α₀) : ρ(α, α), [95% CI over layers]); {ratio_range}the distance "
        f"to baseline significantly exceeded the within-α distance at {exceeded} of "
        f"{tested} α values (paired t-test over layers, Bonferroni-corrected). A ratio "
        f"above 1 means selectivity was suppressed rather than rotated off the unit axes."
    )


def _cca_table(summary: pd.DataFrame) -> str:
    rows = [
        [
            _alpha(row["alpha"]),
            int(row["n_layers"]),
            _with_ci(row["mean_ratio"], row["ci_low"], row["ci_high"],
                     lambda v: f"{v:.3f}", int(row["n_layers"])),
            _p_cell(row["p_bonferroni"]),
        ]
        for _, row in summary.iterrows()
    ]
    return markdown_table(
        ["α", "Layers", "Distance ratio ρ(α, α₀) : ρ(α, α) [95% CI]",
         "p (paired t over layers, Bonferroni)"],
        rows,
    )


def _ranksum_table(tests: pd.DataFrame) -> str:
    rows = [
        [
            _alpha(row["abs_alpha"]),
            f"{int(row['n_negative'])} / {int(row['n_positive'])}",
            _percent(row["mean_negative"]),
            _percent(row["mean_positive"]),
            "" if not np.isfinite(row["u_statistic"]) else f"{row['u_statistic']:g}",
            _p_cell(row["p_bonferroni"]),
        ]
        for _, row in tests.iterrows()
    ]
    return markdown_table(
        ["|α|", "n (α<0 / α>0)", "Accuracy α<0, %", "Accuracy α>0, %",
         "U (α<0)", "p (rank-sum, Bonferroni)"],
        rows,
    )


# --------------------------------------------------------------------------
# Sections.
# --------------------------------------------------------------------------


def _condition_section(condition: dict, runs: pd.DataFrame, n_resamples: int) -> tuple[list[str], list[str]]:
    """(headline bullet points, summary-table block) of one condition."""
    title = condition_title(condition)
    runs = runs.copy()
    runs["alpha"] = runs["alpha"].astype(float)
    summary = summarize_condition(runs, n_resamples)
    headlines = []
    if _has_baseline(runs):
        headlines.append(_baseline_sentence(title, summary))
        headlines += _suppression_sentences(title, summary)
        headlines += _promotion_sentences(title, summary)
    else:
        headlines.append(
            f"{title}: there are no α = 0 (unregularized) runs, so effects relative to the "
            "baseline are not reported; see the per-α table for absolute values."
        )
    tables = [f"### {title}", "", _summary_table(summary), ""]
    if "test_accuracy" in runs.columns:
        ranksums = stats.ranksum_promote_vs_suppress(runs)
        sentence = _ranksum_sentence(title, ranksums)
        if sentence:
            headlines.append(sentence)
        if not ranksums.empty:
            tables += [f"Promoting vs suppressing at equal |α| ({title}):", "",
                       _ranksum_table(ranksums), ""]
    return headlines, tables


def _cca_section(
    cca: pd.DataFrame | None, cca_ratio: pd.DataFrame | None, n_resamples: int
) -> tuple[dict[str, str], list[str]]:
    """({model: headline sentence}, table block) for the CCA analysis."""
    described = cca_ratio  # The table that names the method and PWCCA variant.
    if cca_ratio is None and cca is not None and not cca.empty:
        rows = cca
        if "method" in cca.columns and (cca["method"] == "pwcca").any():
            rows = cca.loc[cca["method"] == "pwcca"]
            if "pwcca_variant" in rows.columns and (rows["pwcca_variant"] == "svcca").any():
                rows = rows.loc[rows["pwcca_variant"] == "svcca"]  # The paper's.
        cca_ratio, described = stats.cca_distance_ratio(rows), rows
    if cca_ratio is None or cca_ratio.empty:
        return {}, []
    summary = stats.cca_ratio_summary(cca_ratio, n_resamples=n_resamples)
    headlines, tables = {}, [_cca_method_sentence(described), ""]
    for model, model_summary in summary.groupby("model", sort=True):
        title = plots.display_model_name(model)
        sentence = _cca_sentence(title, model_summary)
        if sentence:
            headlines[str(model)] = sentence
        tables += [f"### {title}: CCA distance ratio", "", _cca_table(model_summary), ""]
    return headlines, tables


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


def _relative_link(path: str | Path, output_dir: Path) -> str:
    """Path of `path` relative to the report, URL-quoted for Markdown."""
    relative = os.path.relpath(Path(path).resolve(), output_dir.resolve())
    return urllib.parse.quote(Path(relative).as_posix())


def _caption(name: str) -> str:
    matches = [prefix for prefix in FIGURE_CAPTIONS if name.startswith(prefix)]
    return FIGURE_CAPTIONS[max(matches, key=len)] if matches else ""


def _figures_section(figures: dict[str, Sequence[str]] | None, output_dir: Path) -> list[str]:
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


def _errors_section(errors: Sequence[tuple[str, str]] | None) -> list[str]:
    lines = ["## Runs that could not be analysed", ""]
    if not errors:
        return lines + ["None: every run found was analysed.", ""]
    for path, message in errors:
        message = " ".join(str(message).split())
        lines.append(f"- `{path}`: {message}")
    return lines + [""]


def _is_leaky_column(runs: pd.DataFrame) -> pd.Series:
    if "activation" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["activation"].astype(str).str.lower().str.contains("leaky")


def _runs_table(runs: pd.DataFrame) -> str:
    # ReLU runs (the main experiment) before leaky-ReLU runs of each model.
    keyed = runs.assign(_leaky=_is_leaky_column(runs))
    sort_columns = [c for c in ("model", "_leaky", "leaky_slope", "alpha", "seed") if c in keyed.columns]
    ordered = keyed.sort_values(sort_columns, kind="stable").drop(columns="_leaky")
    columns = [c for c in RUN_COLUMNS if c in runs.columns]
    columns += [c for c in runs.columns if c not in columns]
    rows = [[_format_run_cell(c, row[c]) for c in columns] for _, row in ordered.iterrows()]
    return markdown_table(columns, rows)


def _methods_section() -> list[str]:
    return [
        "## Statistics used",
        "",
        "- Means are over replicate networks (seeds); intervals are percentile-bootstrapped "
        "95% confidence intervals (10,000 resamples by default).",
        "- Differences from α = 0: Welch's two-sample t-test per α, Bonferroni-corrected over "
        "all α of the same model and activation.",
        "- Promoting vs suppressing: two-sided Wilcoxon rank-sum (Mann-Whitney U; exact "
        "p-value without ties) of α < 0 vs α > 0 at each |α|, Bonferroni-corrected over |α|.",
        "- CCA: per layer, mean distance to α = 0 networks divided by mean distance between "
        "replicates at the same α; paired t-test over layers, Bonferroni-corrected over α.",
        f"- Asterisks in figures: {stats.stars_legend()} (corrected p-values).",
        "",
    ]


def write_report(
    output_dir: str | Path,
    runs: pd.DataFrame,
    layers: pd.DataFrame | None = None,
    cca: pd.DataFrame | None = None,
    cca_ratio: pd.DataFrame | None = None,
    figures: dict[str, Sequence[str]] | None = None,
    errors: Sequence[tuple[str, str]] | None = None,
    n_resamples: int = stats.DEFAULT_N_RESAMPLES,
) -> Path:
    """Writes `report.md` into `output_dir`.

    Sections: overview; headline results in sentences (per model and
    activation: baseline, suppression, promotion, promote-vs-suppress, CCA);
    per-alpha summary tables; figures (relative links to the files from
    `plots.draw_all`); runs that could not be analysed; statistics used;
    the table of all runs (sorted by model, activation, slope, alpha, seed).

    Args:
        output_dir: Folder of the report (created if needed); figure links
            are relative to it.
        runs: The `runs` table.
        layers: The `layers` table (per-layer results are in the figures;
            used here only for the overview).
        cca: The pairwise `cca` table, if computed.
        cca_ratio: The `cca_ratio` table, if computed (derived from `cca`
            otherwise).
        figures: `{name: [paths]}` as returned by `plots.draw_all`.
        errors: `(path, message)` for each run that could not be analysed.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        Path of the written report.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    runs = runs if runs is not None else pd.DataFrame()
    conditions = _conditions(runs)

    cca_headlines, cca_tables = _cca_section(cca, cca_ratio, n_resamples)
    headline_blocks, tables = [], []
    for condition, condition_runs in conditions:
        condition_headlines, condition_tables = _condition_section(
            condition, condition_runs, n_resamples
        )
        # The CCA comparison is part of the main (ReLU) experiment of a model.
        model = str(condition.get("model", ""))
        if model in cca_headlines and not _is_leaky_condition(condition):
            condition_headlines.append(cca_headlines.pop(model))
        headline_blocks.append((condition_title(condition), condition_headlines))
        tables += condition_tables
    for model, sentence in cca_headlines.items():
        headline_blocks.append((f"{plots.display_model_name(model)}: CCA", [sentence]))

    n_errors = len(errors) if errors else 0
    lines = [
        "# Class selectivity analysis report",
        "",
        f"_Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `tf_selectivity` "
        "(Leavitt & Morcos, \"Selectivity considered harmful\")._",
        "",
        f"{len(runs)} runs analysed in {len(conditions)} condition(s)"
        + (f" ({layers['layer'].nunique()} distinct layers)" if layers is not None
           and not layers.empty and "layer" in layers else "")
        + (f"; {n_errors} run(s) could not be analysed (listed below)." if n_errors else "."),
        "",
        "## Headline results",
        "",
    ]
    for title, sentences in headline_blocks:
        lines += [f"### {title}", ""] + [f"- {sentence}" for sentence in sentences] + [""]
    if not headline_blocks:
        lines += ["No runs to summarise.", ""]
    lines += ["## Summary per α", "",
              "Accuracy in percent; SI = class selectivity index (eq. 1, test set, mean over "
              "units then layers); p-values are Bonferroni-corrected.", ""]
    lines += tables
    if cca_tables:
        lines += ["## Representational similarity (CCA)", ""] + cca_tables
    lines += _figures_section(figures, output_dir)
    lines += _errors_section(errors)
    lines += _methods_section()
    lines += ["## All runs", ""]
    lines += [_runs_table(runs) if not runs.empty else "No runs.", ""]

    path = output_dir / REPORT_FILENAME
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
