"""The initialization stage's report: per condition, the SI the training made beside the SI that needs no learning."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.conditions import condition_title
from tf_selectivity.report.formatting import format_selectivity, markdown_table

__all__ = ["initialization_headlines", "initialization_section", "per_alpha"]

ABOVE = "above_initial_q95_fraction"


def per_alpha(table: pd.DataFrame) -> pd.DataFrame:
    """Per alpha of one condition's rows: networks, eq. 3 means (over layers, then networks) of the
    trained and untrained SI, and the share of units beyond initialization (units of all layers)."""
    weighted = table.assign(above_units=table[ABOVE] * table["num_units"])
    per_run = weighted.groupby(["alpha", "run_dir"]).agg(
        trained=("trained_mean_selectivity", "mean"), initial=("initial_mean_selectivity", "mean"),
        above_units=("above_units", "sum"), units=("num_units", "sum"), images=("num_test_samples", "min"),
    ).reset_index()
    per_run["above"] = per_run["above_units"] / per_run["units"]
    return per_run.groupby("alpha").agg(networks=("run_dir", "nunique"), trained=("trained", "mean"),
                                         initial=("initial", "mean"), above=("above", "mean"),
                                         images=("images", "min")).reset_index()


def _conditions(table: pd.DataFrame):
    return stats.split_by_condition(table.assign(alpha=table["alpha"].astype(float)))


def initialization_headlines(table: pd.DataFrame) -> list:
    """Per condition, one sentence on its alpha = 0 networks (all of them, per alpha, without any)."""
    headlines = []
    for condition, rows in _conditions(table):
        summary = per_alpha(rows)
        chosen = summary.loc[np.isclose(summary["alpha"], 0.0)]
        sentences = []
        for _, row in (chosen if len(chosen) else summary).iterrows():
            sentences.append(
                f"{condition_title(condition)} at α = {format_alpha(row['alpha'])} ({int(row['networks'])} "
                f"network(s)): mean class selectivity {format_selectivity(row['trained'])} after training vs "
                f"{format_selectivity(row['initial'])} for the same networks at initialization, on the same "
                f"{int(row['images']):,} test images: training made {format_selectivity(row['trained'] - row['initial'])}"
                f" of it; {100 * row['above']:.0f}% of units are more selective than 95% of the untrained units of "
                "their layer.")
        headlines.append((condition, sentences))
    return headlines


def initialization_section(table: pd.DataFrame, runs: pd.DataFrame | None, options) -> list:
    """The "Selectivity that training made" section (Markdown lines)."""
    null = runs is not None and "selective_fraction" in runs.columns
    lines = [
        "## Selectivity that training made",
        "",
        "A network at initialization already has selective units: classes differ in their images, so even random "
        "weights respond differently to them. Each run's network was rebuilt as its training started (its "
        "architecture, classes and seed, untrained) and measured with the trained one on the same class-balanced "
        "test images (`initialization.csv`, per run and layer): mean SI (eq. 3) trained and untrained, and the "
        "share of units more selective than 95% of the untrained units of their layer"
        + (", beside the share the label-permutation null calls selective above chance (trained networks, whole "
           "test set)" if null else "") + ".",
        "",
    ]
    headers = ["α", "networks", "mean SI trained", "mean SI at initialization", "made by training",
               "units beyond initialization"] + (["units above chance (null)"] if null else [])
    for condition, rows in _conditions(table):
        summary = per_alpha(rows)
        body = []
        for _, row in summary.iterrows():
            cells = [format_alpha(row["alpha"]), int(row["networks"]), format_selectivity(row["trained"]),
                     format_selectivity(row["initial"]), format_selectivity(row["trained"] - row["initial"]),
                     f"{100 * row['above']:.1f}%"]
            if null:
                chosen = runs.loc[runs["run_dir"].isin(rows["run_dir"])
                                  & np.isclose(runs["alpha"].astype(float), row["alpha"]), "selective_fraction"]
                cells.append(f"{100 * chosen.mean():.1f}%" if len(chosen) else "n/a")
            body.append(cells)
        lines += [f"### {condition_title(condition)}", "", markdown_table(headers, body), ""]
    return lines[:-1]
