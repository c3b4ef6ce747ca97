"""Publishes the window experiment (experiments/reduced/run.sh ... windows) into results/reduced/windows/.

    python experiments/reduced/windows.py ANALYSIS_DIR WINDOWS_SWEEP_DIR OUTPUT_DIR

Reads the analysis of the window runs beside the reduced sweep's alpha = 0 and whole-run alpha = -10 runs
(`runs.csv`, the over-training and training-curves tables, report and figures) and writes into OUTPUT_DIR:

* `window_accuracy.csv`: per group (alpha = 0; alpha = -10 over the whole run; alpha = -10 in each window),
  the networks' final test accuracy and mean SI: n, mean, standard deviation, a t-based 95% CI;
* `window_comparisons.csv`: paired by seed (the same initialization and batches), each window against the
  other window, against alpha = 0 and against the whole run: mean difference in test accuracy, its 95% CI
  and the two-sided paired t-test's p (descriptive at n = 3);
* `selectivity_steps.csv`: the window runs' step-resolution SI (validation split) with their window and seed;
* `windows.md`: those numbers in a table;
* `figures/windows_selectivity_and_accuracy.{png,pdf}`: (a) eq. 3's mean SI on the validation split over training
  per group (mean over seeds and its 95% t interval; step resolution where recorded, epoch 0 = initialization,
  a symmetric-log epoch axis, linear below 1), the windows shaded; (b) each network's final test accuracy;
* the analysis' `report.md`, its over-training and training-curve tables, and its figures.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
from scipy import stats

from tf_selectivity.plots.style import add_footnote, new_figure, save_figure, styled
from tf_selectivity.report.condition_names import SHARED_FROM, own_rows

COPIED_TABLES = ("runs", "claims", "over_training", "over_training_network", "over_training_runs",
                 "training_curves", "training_curves_summary", "half_rise_epochs", "warnings")
COPIED_FIGURES = ("over_training_", "figS_training_curves_resnet20_mean")


def run_window(run_dir: str) -> str:
    """The run's window of training as recorded (the whole run where none was set)."""
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    config = config.get("config", config)
    return config.get("alpha_window") or "0:end"


def group_name(alpha: float, window: str) -> str:
    if alpha == 0:
        return "alpha=0"
    return f"alpha={alpha:g} " + ("whole run" if window == "0:end" else f"epochs {window.replace('end', '12')}")


def t_interval(values: np.ndarray):
    if len(values) < 2:
        return np.nan, np.nan
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return float(np.mean(values) - half), float(np.mean(values) + half)


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for group, frame in runs.groupby("group", sort=False):
        accuracy = frame["test_accuracy"].to_numpy(float)
        low, high = t_interval(accuracy)
        rows.append({
            "group": group, "alpha": frame["alpha"].iloc[0], "alpha_window": frame["alpha_window"].iloc[0],
            "n": len(frame), "seeds": ",".join(str(s) for s in sorted(frame["seed"])),
            "test_accuracy_mean": accuracy.mean(), "test_accuracy_sd": accuracy.std(ddof=1) if len(frame) > 1 else np.nan,
            "test_accuracy_ci_low": low, "test_accuracy_ci_high": high,
            "test_mean_selectivity_mean": frame["test_mean_selectivity"].mean(),
        })
    return pd.DataFrame(rows)


def comparisons(runs: pd.DataFrame, pairs) -> pd.DataFrame:
    rows = []
    for first, second in pairs:
        a = runs[runs["group"] == first].set_index("seed")["test_accuracy"]
        b = runs[runs["group"] == second].set_index("seed")["test_accuracy"]
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            continue
        difference = (a.loc[seeds] - b.loc[seeds]).to_numpy(float)
        low, high = t_interval(difference)
        p = float(stats.ttest_rel(a.loc[seeds], b.loc[seeds]).pvalue) if len(seeds) > 1 else np.nan
        rows.append({"first": first, "second": second, "n_pairs": len(seeds),
                     "accuracy_difference_mean": difference.mean(), "ci_low": low, "ci_high": high,
                     "paired_t_p": p})
    return pd.DataFrame(rows)


GROUP_COLORS = {"alpha=0": "0.35", "whole run": "#08306b", "epochs 0:2": "#6baed6", "epochs 4:6": "#e6550d"}


def group_color(group: str):
    return next((color for key, color in GROUP_COLORS.items() if group.endswith(key)), None)


@styled
def windows_figure(runs: pd.DataFrame, curves: pd.DataFrame):
    """(a) mean SI over training per group, (b) final test accuracy per network."""
    figure, (si_ax, accuracy_ax) = new_figure(2, panel_width=4.2)
    groups = list(runs["group"].unique())
    group_of = dict(zip(runs["run_dir"], runs["group"]))
    mean = curves[curves["layer"] == "mean"].assign(group=lambda f: f["run_dir"].map(group_of)).dropna(
        subset=["group", "selectivity"])
    for group in groups:
        rows = mean[mean["group"] == group].groupby("epoch")["selectivity"]
        summary = pd.DataFrame({"mean": rows.mean(), "low": rows.apply(lambda v: t_interval(v.to_numpy())[0]),
                                "high": rows.apply(lambda v: t_interval(v.to_numpy())[1])})
        color = group_color(group)
        si_ax.plot(summary.index, summary["mean"], color=color, label=group, lw=1.2)
        si_ax.fill_between(summary.index, summary["low"], summary["high"], color=color, alpha=0.15, lw=0)
    for start, end, group in ((0, 2, "epochs 0:2"), (4, 6, "epochs 4:6")):
        si_ax.axvspan(start, end, color=group_color(group), alpha=0.08, lw=0)
    si_ax.set_xscale("symlog", linthresh=1.0, linscale=1.0)
    si_ax.set_xlim(0, max(mean["epoch"].max(), 1))
    si_ax.set_xticks([0, 0.5, 1, 2, 4, 6, 12])
    si_ax.set_xticklabels(["0", "0.5", "1", "2", "4", "6", "12"])
    si_ax.set_xlabel("Epoch (linear below 1, logarithmic above)")
    si_ax.set_ylabel("Mean class selectivity (validation split)")
    si_ax.set_ylim(bottom=0)
    si_ax.legend(fontsize=7, frameon=False)
    for position, group in enumerate(groups):
        values = runs.loc[runs["group"] == group, "test_accuracy"].to_numpy(float)
        accuracy_ax.scatter(np.full(len(values), position), values, color=group_color(group), s=14, zorder=3)
        accuracy_ax.hlines(values.mean(), position - 0.25, position + 0.25, color=group_color(group), lw=1.5)
    accuracy_ax.set_xticks(range(len(groups)))
    accuracy_ax.set_xticklabels([g.replace("alpha=-10 ", "α=−10\n").replace("alpha=0", "α=0") for g in groups],
                                fontsize=7)
    accuracy_ax.set_ylabel("Final test accuracy")
    counts = runs.groupby("group").size()
    add_footnote(figure, f"ResNet20, reduced protocol (10,000 training images, 12 epochs); n = "
                         f"{counts.min()}–{counts.max()} networks per group; bands: 95% t intervals over seeds; "
                         "shaded: the windows in which α = −10 was applied; bars: means.")
    return figure


def main(analysis_dir: str, sweep_dir: str, out_dir: str) -> None:
    # Each run once: the analysis repeats the alpha = 0 runs' rows in each window's condition.
    runs = own_rows(pd.read_csv(os.path.join(analysis_dir, "runs.csv"))).drop(columns=SHARED_FROM, errors="ignore")
    runs["alpha_window"] = [run_window(path) for path in runs["run_dir"]]
    runs["group"] = [group_name(a, w) for a, w in zip(runs["alpha"], runs["alpha_window"])]
    order = {"alpha=0": 0}
    runs["order"] = [order.get(g, 1 if "whole" in g else 2) for g in runs["group"]]
    runs = runs.sort_values(["order", "alpha_window", "seed"]).drop(columns="order")
    windows = [g for g in runs["group"].unique() if g.startswith("alpha=-") and "whole" not in g]
    whole = [g for g in runs["group"].unique() if "whole" in g]

    os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
    accuracy = accuracy_table(runs)
    accuracy.to_csv(os.path.join(out_dir, "window_accuracy.csv"), index=False)
    pairs = [(windows[0], windows[-1])] if len(windows) > 1 else []
    pairs += [(w, "alpha=0") for w in windows + whole] + [(w, whole[0]) for w in windows if whole]
    compared = comparisons(runs, pairs)
    compared.to_csv(os.path.join(out_dir, "window_comparisons.csv"), index=False)

    steps = []
    for run_dir in sorted(glob.glob(os.path.join(sweep_dir, "runs", "*"))):
        path = os.path.join(run_dir, "selectivity_steps.csv")
        if os.path.exists(path):
            frame = pd.read_csv(path)
            frame.insert(0, "run", os.path.basename(run_dir))
            frame.insert(1, "alpha_window", run_window(run_dir))
            steps.append(frame)
    if steps:
        pd.concat(steps, ignore_index=True).to_csv(os.path.join(out_dir, "selectivity_steps.csv"), index=False)

    curves_path = os.path.join(analysis_dir, "training_curves.csv")
    if os.path.exists(curves_path):
        figure = windows_figure(runs, own_rows(pd.read_csv(curves_path)).drop(columns=SHARED_FROM, errors="ignore"))
        save_figure(figure, os.path.join(out_dir, "figures", "windows_selectivity_and_accuracy"))

    for name in COPIED_TABLES:
        path = os.path.join(analysis_dir, f"{name}.csv")
        if os.path.exists(path):
            shutil.copy(path, out_dir)
    shutil.copy(os.path.join(analysis_dir, "report.md"), out_dir)
    for path in sorted(glob.glob(os.path.join(analysis_dir, "figures", "*"))):
        if os.path.basename(path).startswith(COPIED_FIGURES):
            shutil.copy(path, os.path.join(out_dir, "figures"))

    lines = ["# The window experiment at the reduced scale", "",
             "Final test accuracy (10,000 test images) and mean SI per group; paired by seed below.", "",
             "| group | n | test accuracy | 95% CI | mean SI |", "|---|---|---|---|---|"]
    for row in accuracy.itertuples():
        lines.append(f"| {row.group} | {row.n} | {row.test_accuracy_mean:.3f} | "
                     f"[{row.test_accuracy_ci_low:.3f}, {row.test_accuracy_ci_high:.3f}] | "
                     f"{row.test_mean_selectivity_mean:.3f} |")
    lines += ["", "| comparison (paired by seed) | pairs | accuracy difference | 95% CI | paired t p |",
              "|---|---|---|---|---|"]
    for row in compared.itertuples():
        lines.append(f"| {row.first} - {row.second} | {row.n_pairs} | {row.accuracy_difference_mean:+.3f} | "
                     f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}] | {row.paired_t_p:.3g} |")
    with open(os.path.join(out_dir, "windows.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"Wrote {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(*sys.argv[1:])
