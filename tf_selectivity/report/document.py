"""`report.md`: `assemble_report` puts its parts in order (the analysis stages give their sentences, sections and captions)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.report.claims import claims_section, conditions_lines
from tf_selectivity.report.condition_names import run_count
from tf_selectivity.report.conditions import condition_key, condition_title
from tf_selectivity.report.figures import figures_section
from tf_selectivity.report.runs import DEAD_UNITS_NOTE, diverged_section, errors_section, runs_table


REPORT_FILENAME = "report.md"


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
    captions: Mapping[str, str] | None = None,
    warnings: Sequence[str] = (),
    conditions: pd.DataFrame | None = None,
    claims: pd.DataFrame | None = None,
    condition_notes: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Writes `report.md` into `output_dir` from its parts, in order.

    The report's own parts: the overview (from `runs` and `layers`), the
    conditions and what separates them, the warnings, the headline results
    (each condition's sentences of every part, under the condition's title),
    then `sections` in the order given, the claims and their premises, the
    figures (relative links), the runs that diverged, the runs that could
    not be analysed, the statistics used and the table of all runs.

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
        captions: ``{start of a figure name: caption}`` (the stages'
            `captions`): each figure gets the caption of the longest start
            of its name.
        errors: `(path, message)` for each run that could not be analysed.
        diverged: The runs whose training diverged, listed in a section of
            their own.
        warnings: What a reader must know before trusting the results; the
            report opens with them, right after its overview and conditions.
        conditions: The ``conditions`` table (`report.condition_names`):
            the report's first lines list them and what separates them.
        claims: The ``claims`` table (every stage's claims, gated).
        condition_notes: ``{condition title: [sentence]}`` put first in
            that condition's headline results (e.g. its networks are at
            chance).

    Returns:
        Path of the written report.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    runs = runs if runs is not None else pd.DataFrame()
    if "alpha" in runs.columns:
        runs = runs.assign(alpha=runs["alpha"].astype(float))
    split = stats.split_by_condition(runs)
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
        f"{run_count(runs)} runs analysed in {len(split)} condition(s)"
        + (f" ({layers['layer'].nunique()} distinct layers)" if layers is not None
           and not layers.empty and "layer" in layers else "")
        + (f"; {n_errors} run(s) could not be analysed (listed below)" if n_errors else "")
        + (f"; {len(diverged)} run(s) diverged and are listed apart" if diverged is not None
           and not diverged.empty else "")
        + ".",
        "",
    ]
    lines += conditions_lines(conditions)
    if warnings:
        lines += ["## Warnings", "", "Read these before the results:", ""]
        lines += [f"- **{message}**" for message in warnings] + [""]
    lines += ["## Headline results", ""]
    notes = dict(condition_notes or {})
    for title, sentences in blocks.values():
        lines += [f"### {title}", ""] + [f"- **{note}**" for note in notes.get(title, [])]
        lines += [f"- {sentence}" for sentence in sentences] + [""]
    if not blocks:
        lines += ["No runs to summarise.", ""]
    for section in sections:
        lines += [*section, ""]
    lines += claims_section(claims)
    lines += figures_section(figures, output_dir, captions)
    lines += diverged_section(diverged)
    lines += errors_section(errors)
    lines += _methods_section()
    lines += ["## All runs", ""]
    lines += [runs_table(runs), "", DEAD_UNITS_NOTE, ""] if not runs.empty else ["No runs.", ""]

    path = output_dir / REPORT_FILENAME
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
