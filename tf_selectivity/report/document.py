"""`report.md`: `assemble_report` puts its parts in order; `write_report` makes the paper's report from its tables."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Sequence

import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.report.conditions import condition_key, condition_title, has_baseline
from tf_selectivity.report.effects import (
    baseline_sentence,
    promotion_sentences,
    summarize_condition,
    summary_table,
    suppression_sentences,
)
from tf_selectivity.report.figures import figures_section
from tf_selectivity.report.promote_vs_suppress import ranksum_sentence, ranksum_table
from tf_selectivity.report.runs import DEAD_UNITS_NOTE, diverged_section, errors_section, runs_table


REPORT_FILENAME = "report.md"


def _condition_section(condition: dict, runs: pd.DataFrame, n_resamples: int) -> tuple[list[str], list[str]]:
    """(headline bullet points, summary-table block) of one condition."""
    title = condition_title(condition)
    runs = runs.copy()
    runs["alpha"] = runs["alpha"].astype(float)
    summary = summarize_condition(runs, n_resamples)
    headlines = []
    if has_baseline(runs):
        headlines.append(baseline_sentence(title, summary))
        headlines += suppression_sentences(title, summary)
        headlines += promotion_sentences(title, summary)
    else:
        headlines.append(
            f"{title}: there are no α = 0 (unregularized) runs, so effects relative to the "
            "baseline are not reported; see the per-α table for absolute values."
        )
    tables = [f"### {title}", "", summary_table(summary), ""]
    if "test_accuracy" in runs.columns:
        ranksums = stats.ranksum_promote_vs_suppress(runs)
        sentence = ranksum_sentence(title, ranksums)
        if sentence:
            headlines.append(sentence)
        if not ranksums.empty:
            tables += [f"Promoting vs suppressing at equal |α| ({title}):", "",
                       ranksum_table(ranksums), ""]
    return headlines, tables


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
        "- CCA: per layer, mean distance to α = 0 networks of the same condition divided by "
        "mean distance between replicates at the same α; paired t-test over layers of the two "
        "means, Bonferroni-corrected over the α of each condition (model, activation, slope). "
        "These are the numbers of the `cca_tests` table and of Figure 3b.",
        "- Dead units (no response to any test image): SI 0 in the mean SI (eq. 3), left "
        "out of the live-unit SI and of precision, which is undefined for them.",
        "- Marks in figures: ▲ above a value significantly higher than its reference "
        "(α = 0; for Figure 5 the α < 0 networks at the same |α|; for Figure 3b the "
        "distance between replicates), ▼ below one significantly lower; the asterisks "
        f"give the corrected p-value: {stats.stars_legend()}.",
        "",
    ]


SUMMARY_INTRO = (
    "Accuracy in percent; SI = class selectivity index (eq. 1, test set, mean over "
    "units then layers), with dead units counted as 0 as in eq. 3 and, in the next "
    "column, left out; precision (appendix A.5) is over live units only: a dead unit "
    "has no most-activating images. p-values are Bonferroni-corrected."
)


def condition_sections(runs: pd.DataFrame, n_resamples: int) -> list:
    """Per condition of `runs` (model, activation, leaky slope): its headline
    sentences and its per-alpha summary block.

    Returns:
        ``[(condition, headline sentences, summary-table lines), ...]``.
    """
    if "alpha" in runs.columns:
        runs = runs.assign(alpha=runs["alpha"].astype(float))
    return [(condition, *_condition_section(condition, condition_runs, n_resamples))
            for condition, condition_runs in stats.split_by_condition(runs)]


def _without_last_blank(lines: Sequence[str]) -> list:
    """`lines` less one trailing blank line: `assemble_report` puts one after every section."""
    lines = list(lines)
    return lines[:-1] if lines and lines[-1] == "" else lines


def summary_section(tables: Sequence[str]) -> list:
    """The "Summary per α" section: the summary blocks of `condition_sections`, joined."""
    return _without_last_blank(["## Summary per α", "", SUMMARY_INTRO, "", *tables])


def assemble_report(
    output_dir: str | Path,
    runs: pd.DataFrame,
    layers: pd.DataFrame | None = None,
    *,
    headlines: Sequence[tuple] = (),
    sections: Sequence[Sequence[str]] = (),
    figures: dict[str, Sequence[str]] | None = None,
    errors: Sequence[tuple[str, str]] | None = None,
    diverged: pd.DataFrame | None = None,
) -> Path:
    """Writes `report.md` into `output_dir` from its parts, in order.

    The report's own parts: the overview (from `runs` and `layers`), the
    headline results (each condition's sentences of every part, under the
    condition's title), then `sections` in the order given, the figures
    (relative links), the runs that diverged, the runs that could not be
    analysed, the statistics used and the table of all runs.

    Args:
        output_dir: Folder of the report (created if needed); figure links
            are relative to it.
        runs: The `runs` table.
        layers: The `layers` table (for the overview).
        headlines: ``(condition, [sentence, ...])`` pairs; a condition is a
            dict with ``model``, ``activation`` and ``leaky_slope``. The
            sentences of one condition are joined in the order given.
        sections: Sections (each a list of Markdown lines, its ``## ``
            heading first), each followed by a blank line.
        figures: `{name: [paths]}` of the figures drawn.
        errors: `(path, message)` for each run that could not be analysed.
        diverged: The runs whose training diverged, listed in a section of
            their own.

    Returns:
        Path of the written report.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    runs = runs if runs is not None else pd.DataFrame()
    if "alpha" in runs.columns:
        runs = runs.assign(alpha=runs["alpha"].astype(float))
    conditions = stats.split_by_condition(runs)
    blocks = {}
    for condition, sentences in headlines:
        block = blocks.setdefault(condition_key(condition), (condition_title(condition), []))
        block[1].extend(sentences)

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
        + (f"; {n_errors} run(s) could not be analysed (listed below)" if n_errors else "")
        + (f"; {len(diverged)} run(s) diverged and are listed apart" if diverged is not None
           and not diverged.empty else "")
        + ".",
        "",
        "## Headline results",
        "",
    ]
    for title, sentences in blocks.values():
        lines += [f"### {title}", ""] + [f"- {sentence}" for sentence in sentences] + [""]
    if not blocks:
        lines += ["No runs to summarise.", ""]
    for section in sections:
        lines += [*section, ""]
    lines += figures_section(figures, output_dir)
    lines += diverged_section(diverged)
    lines += errors_section(errors)
    lines += _methods_section()
    lines += ["## All runs", ""]
    lines += [runs_table(runs), "", DEAD_UNITS_NOTE, ""] if not runs.empty else ["No runs.", ""]

    path = output_dir / REPORT_FILENAME
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_report(
    output_dir: str | Path,
    runs: pd.DataFrame,
    layers: pd.DataFrame | None = None,
    figures: dict[str, Sequence[str]] | None = None,
    errors: Sequence[tuple[str, str]] | None = None,
    n_resamples: int = stats.DEFAULT_N_RESAMPLES,
    diverged: pd.DataFrame | None = None,
    sections: Sequence[Sequence[str]] | None = None,
    headlines: Sequence[tuple] = (),
) -> Path:
    """Writes the paper's `report.md` from its tables into `output_dir`.

    The report the analysis command writes for the same tables (its
    selectivity stage gives these parts to `assemble_report`; the
    similarity stage's CCA sentences and section come as `headlines` and
    `sections`, `analysis.stages.similarity.section.report_parts`):
    overview; headline results in sentences (per model and activation:
    baseline, suppression, promotion, promote-vs-suppress, then
    `headlines`); per-alpha summary tables; `sections`; figures (relative
    links to the files from `plots.draw_all`); runs that could not be
    analysed; statistics used; the table of all runs (sorted by model,
    activation, slope, alpha, seed).

    Args:
        output_dir: Folder of the report (created if needed); figure links
            are relative to it.
        runs: The `runs` table.
        layers: The `layers` table (per-layer results are in the figures;
            used here only for the overview).
        figures: `{name: [paths]}` as returned by `plots.draw_all`.
        errors: `(path, message)` for each run that could not be analysed.
        n_resamples: Bootstrap resamples per confidence interval.
        diverged: The runs whose training diverged (the analysis'
            `diverged` table), listed in a section of their own.
        sections: Further sections (each a list of Markdown lines, its
            ``## `` heading first), placed after the summary, in the order
            given.
        headlines: Further ``(condition, [sentence, ...])`` pairs, each
            joined after that condition's own sentences.

    Returns:
        Path of the written report.
    """
    runs = runs if runs is not None else pd.DataFrame()
    parts = condition_sections(runs, n_resamples)
    return assemble_report(
        output_dir, runs, layers,
        headlines=[*((condition, sentences) for condition, sentences, _ in parts), *headlines],
        sections=[summary_section([line for _, _, table in parts for line in table]), *(sections or ())],
        figures=figures, errors=errors, diverged=diverged,
    )
