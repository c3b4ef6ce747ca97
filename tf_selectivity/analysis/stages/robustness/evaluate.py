"""Accuracy and per-layer dimensionality of one model under perturbations.

Issue 18 point 4 (Leavitt & Morcos, "Linking average- and worst-case
perturbation robustness via class selectivity and dimensionality", arXiv
2010.07693). One pass of the model's unit-response model over each input
kind -- the clean test images, every corruption at every severity, FGSM and
PGD at every epsilon -- gives both the accuracy (from the logits) and the
dimensionality of every probed layer (`tf_selectivity.measures.dimensionality` of
the spatially averaged unit responses, one column per channel), so each
input kind's dimensionality is measured at no extra forward pass.

`claims_table` tests the follow-up paper's three claims across runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.measures.dimensionality import layer_dimensionality

__all__ = [
    "ROBUSTNESS_COLUMNS",
    "DIMENSIONALITY_COLUMNS",
    "evaluate_robustness",
    "spearman_with_ci",
    "claims_table",
    "early_layers",
    "per_run_summary",
]

ROBUSTNESS_COLUMNS = ("kind", "name", "severity", "epsilon", "accuracy", "num_samples")
DIMENSIONALITY_COLUMNS = (
    "layer", "layer_index", "kind", "name", "severity", "epsilon", "participation_ratio",
    "participation_ratio_change", "components_90", "components_95", "units", "samples",
)


def _measure(respond, images, labels, batch_size):
    """Accuracy and {layer: responses} of one input kind."""
    correct, responses = 0, {}
    for start in range(0, len(labels), batch_size):
        outputs = respond(np.asarray(images[start : start + batch_size], dtype=np.float32))
        predicted = np.argmax(np.asarray(outputs["logits"]), axis=-1)
        correct += int(np.sum(predicted == labels[start : start + batch_size]))
        for name, values in outputs.items():
            if name != "logits":
                responses.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return correct / len(labels), {name: np.concatenate(parts) for name, parts in responses.items()}


def evaluate_robustness(
    model,
    images,
    labels,
    *,
    corruption_source: str | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    attacks: Sequence[str] = (),
    epsilons: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0),
    pgd_steps: int = 10,
    pgd_step_size: float | None = None,
    pgd_random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    data_dir: str | None = None,
    class_names: Sequence[str] | None = None,
    load_set=None,
) -> tuple:
    """Robustness of one model: accuracy and dimensionality per input kind.

    Args:
        model: a `SelectivityModel` (logits out, probes; takes [0, 255] pixels).
        images, labels: the clean test images (N, H, W, C) uint8 and labels.
        corruption_source: `data.corruptions` source spec (None: no corruptions).
        corruptions: their names (default: all the source has).
        severities: 1-5.
        attacks: any of "fgsm", "pgd" (L-infinity, `analysis.attacks`).
        epsilons: attack budgets in pixel units.
        pgd_steps, pgd_step_size, pgd_random_start: PGD's settings
            (step size None: `attacks.default_step_size`).
        seed: of the generated corruptions and PGD's random starts.
        batch_size: images per forward pass / attack call.
        data_dir: tensorflow-datasets directory (``tfds:`` sources).
        class_names: the model's classes (Tiny ImageNet-C wnids).
        load_set: ``(corruption, severity) -> (images, labels)`` in place of
            `data.corruptions.load_corrupted` with the arguments above (the
            stage passes one that generates each set once for all runs).

    Returns:
        (robustness, dimensionality) DataFrames with `ROBUSTNESS_COLUMNS` and
        `DIMENSIONALITY_COLUMNS`. Robustness has one row per input kind
        (kind "clean", "corruption", "fgsm" or "pgd"; severity / epsilon NaN
        where they do not apply), plus kind "corruption", name "mean": the
        mean over corruptions at each severity and, severity NaN, over all
        (the mean corruption accuracy). A published set's accuracy is on its
        own images and labels (its first len(labels) images, aligned with
        the clean test set). Dimensionality has one row per layer and input
        kind, with the change of the participation ratio from the clean
        images' in the same layer.

    Raises:
        CorruptedSetError: a corrupted set that is missing or does not match.
        ParameterError: bad attack settings.
    """
    from tf_selectivity.analysis import attacks as attack_functions
    from tf_selectivity.data.corruptions import check_source, load_corrupted

    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    respond = model.unit_response_model().predict_on_batch
    probes = list(model.probe_names)
    rows, dims = [], []

    def record(kind, name, severity, epsilon, kind_images, kind_labels):
        accuracy, responses = _measure(respond, kind_images, kind_labels, batch_size)
        rows.append({"kind": kind, "name": name, "severity": severity, "epsilon": epsilon,
                     "accuracy": accuracy, "num_samples": len(kind_labels)})
        for layer, values in layer_dimensionality(responses).items():
            dims.append({"layer": layer, "layer_index": probes.index(layer) if layer in probes else -1,
                         "kind": kind, "name": name, "severity": severity, "epsilon": epsilon,
                         **{k: values[k] for k in ("participation_ratio", "components_90", "components_95",
                                                    "units", "samples")}})

    nan = math.nan
    record("clean", "clean", nan, nan, images, labels)
    if corruption_source is not None:
        for corruption in check_source(corruption_source, corruptions, images.shape[1:]):
            for severity in severities:
                if load_set is not None:
                    corrupted, corrupted_labels = load_set(corruption, int(severity))
                else:
                    corrupted, corrupted_labels = load_corrupted(
                        corruption_source, corruption, int(severity), clean_images=images, clean_labels=labels,
                        seed=seed, data_dir=data_dir, class_names=class_names, max_samples=len(labels),
                    )
                record("corruption", corruption, float(severity), nan, corrupted, corrupted_labels)
    for attack in attacks:
        for epsilon in epsilons:
            kwargs = {"batch_size": batch_size, "seed": seed}
            if attack == "pgd":
                kwargs.update(steps=pgd_steps, random_start=pgd_random_start,
                              step_size=pgd_step_size)
            if epsilon == 0:  # the clean images, bit for bit (attacks' own contract); no step of size 0
                adversarial = images.astype(np.float32)
            else:
                adversarial = attack_functions.perturb(model, images, labels, float(epsilon), attack=attack, **kwargs)
            record(attack, attack, nan, float(epsilon), adversarial, labels)

    robustness = pd.DataFrame(rows, columns=list(ROBUSTNESS_COLUMNS))
    corrupted = robustness[robustness["kind"] == "corruption"]
    if len(corrupted):
        means = [{"kind": "corruption", "name": "mean", "severity": s, "epsilon": nan, "accuracy": group.mean(),
                  "num_samples": int(corrupted.loc[corrupted["severity"] == s, "num_samples"].sum())}
                 for s, group in corrupted.groupby("severity")["accuracy"]]
        means.append({"kind": "corruption", "name": "mean", "severity": nan, "epsilon": nan,
                      "accuracy": corrupted["accuracy"].mean(), "num_samples": int(corrupted["num_samples"].sum())})
        robustness = pd.concat([robustness, pd.DataFrame(means)], ignore_index=True)
    dimensionality = pd.DataFrame(dims)
    clean = dimensionality[dimensionality["kind"] == "clean"].set_index("layer")["participation_ratio"]
    dimensionality["participation_ratio_change"] = (
        dimensionality["participation_ratio"] - dimensionality["layer"].map(clean))
    return robustness, dimensionality[list(DIMENSIONALITY_COLUMNS)]


# ------------------------------------------------------------------ claims
def spearman_with_ci(x, y, n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Spearman's rank correlation of paired samples with a bootstrap CI.

    Args:
        x, y: 1-D paired observations (pairs with a NaN are dropped).
        n_resamples: bootstrap resamples of the pairs (percentile interval).
        seed: of the resampling.
        confidence: of the interval.

    Returns:
        {"rho", "low", "high", "p", "n"}: p is the two-sided permutation
        p-value of rho (exact over all n! orders for n <= 8, else
        (1 + #{|rho*| >= |rho|}) / (1 + n_resamples) over random orders):
        with few runs the t approximation of `scipy.stats.spearmanr` (and a
        bootstrap CI) claim far more than the runs show (n = 4 and a perfect
        rank order give p ~ 0 there, 1/12 here). NaN where fewer than 3
        pairs or a constant variable leave rho undefined.
    """
    from scipy import stats as scipy_stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(len(x))
    result = {"rho": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "n": n}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    rho = float(scipy_stats.spearmanr(x, y)[0])
    rng = np.random.default_rng(seed)
    p = _permutation_p(scipy_stats.rankdata(x), scipy_stats.rankdata(y), rho, n_resamples, rng)
    picks = rng.integers(0, n, size=(n_resamples, n))
    rx = scipy_stats.rankdata(x[picks], axis=1)
    ry = scipy_stats.rankdata(y[picks], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    boot = boot[np.isfinite(boot)]
    tail = (1 - confidence) / 2
    low, high = (np.quantile(boot, [tail, 1 - tail]) if len(boot) else (math.nan, math.nan))
    result.update(rho=float(rho), p=float(p), low=float(low), high=float(high))
    return result


def _rank_correlations(rx, ry_rows):
    rx = rx - rx.mean()
    ry = ry_rows - ry_rows.mean(axis=1, keepdims=True)
    return (ry @ rx) / np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))


def _permutation_p(rx, ry, rho, n_resamples, rng):
    import itertools

    n = len(rx)
    if n <= 8:
        orders = np.array(list(itertools.permutations(range(n))))
        null = _rank_correlations(rx, ry[orders])
        return float(np.mean(np.abs(null) >= abs(rho) - 1e-12))
    orders = np.argsort(rng.random((n_resamples, n)), axis=1)
    null = _rank_correlations(rx, ry[orders])
    return float((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + n_resamples))


def early_layers(dimensionality: pd.DataFrame) -> list:
    """The early layers: the first third of the probed layers (at least one)."""
    indices = sorted(set(int(i) for i in dimensionality["layer_index"] if i >= 0))
    return indices[: max(1, len(indices) // 3)]


def per_run_summary(robustness: pd.DataFrame, dimensionality: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: mean SI, clean accuracy, mean corruption accuracy,
    mean adversarial accuracy over epsilon > 0 per attack, the early layers'
    participation ratio (clean) and its mean change under corruptions and
    under each attack at its largest epsilon."""
    rows = []
    for run_dir, group in robustness.groupby("run_dir", sort=False):
        run = runs.loc[runs["run_dir"] == run_dir].iloc[0]
        row = {"run_dir": run_dir, "model": run["model"], "alpha": float(run["alpha"]), "seed": run["seed"],
               "mean_selectivity": float(run["test_mean_selectivity"])}
        row["clean_accuracy"] = float(group.loc[group["kind"] == "clean", "accuracy"].iloc[0])
        mean = group[(group["name"] == "mean") & group["severity"].isna()]
        row["mean_corruption_accuracy"] = float(mean["accuracy"].iloc[0]) if len(mean) else math.nan
        for attack in ("fgsm", "pgd"):
            adv = group[(group["kind"] == attack) & (group["epsilon"] > 0)]
            row[f"{attack}_accuracy"] = float(adv["accuracy"].mean()) if len(adv) else math.nan
        dims = dimensionality[dimensionality["run_dir"] == run_dir]
        early = dims[dims["layer_index"].isin(early_layers(dims))] if len(dims) else dims
        row["early_participation_ratio"] = float(early.loc[early["kind"] == "clean", "participation_ratio"].mean())
        row["early_pr_change_corruption"] = float(
            early.loc[early["kind"] == "corruption", "participation_ratio_change"].mean())
        adversarial = []
        for attack in ("fgsm", "pgd"):
            adv = early[early["kind"] == attack]
            if len(adv):
                adversarial.append(adv.loc[adv["epsilon"] == adv["epsilon"].max(), "participation_ratio_change"].mean())
        row["early_pr_change_adversarial"] = float(np.mean(adversarial)) if adversarial else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def claims_table(summary: pd.DataFrame, n_resamples: int = 10_000) -> pd.DataFrame:
    """The follow-up paper's three claims (four tests) across runs.

    Args:
        summary: `per_run_summary`'s table (one model).
        n_resamples: bootstrap resamples of each CI.

    Returns:
        One row per test: claim, test, expected direction, statistic (a
        Spearman rho over runs, or the mean paired difference), its 95% CI,
        p, n and a verdict computed from them: "supported" (CI excludes 0
        on the claimed side and p < 0.05), "contradicted" (both on the
        other side), "not shown" (otherwise) or "not testable" (n < 3 or
        an undefined statistic).
    """
    si = summary["mean_selectivity"]
    tests = [
        ("Lower class selectivity -> more robust to corruptions",
         "Spearman(mean SI, mean corruption accuracy) over runs", "negative", si, summary["mean_corruption_accuracy"]),
        ("Higher class selectivity -> more robust to white-box attacks (FGSM)",
         "Spearman(mean SI, FGSM accuracy averaged over epsilon > 0)", "positive", si, summary["fgsm_accuracy"]),
        ("Higher class selectivity -> more robust to white-box attacks (PGD)",
         "Spearman(mean SI, PGD accuracy averaged over epsilon > 0)", "positive", si, summary["pgd_accuracy"]),
        ("Early-layer dimensionality falls as selectivity rises",
         "Spearman(mean SI, early layers' participation ratio on clean images)", "negative", si,
         summary["early_participation_ratio"]),
    ]
    rows = []
    for claim, test, direction, x, y in tests:
        r = spearman_with_ci(x, y, n_resamples=n_resamples)
        rows.append({"claim": claim, "test": test, "expected": direction, "statistic": r["rho"],
                     "low": r["low"], "high": r["high"], "p": r["p"], "n": r["n"]})
    a = summary["early_pr_change_adversarial"].to_numpy(float)
    b = summary["early_pr_change_corruption"].to_numpy(float)
    paired = stats.paired_ttest(a, b)
    keep = np.isfinite(a) & np.isfinite(b)
    low, high = stats.bootstrap_ci(a[keep] - b[keep], n_resamples=n_resamples) if keep.sum() else (math.nan, math.nan)
    rows.append({"claim": "Adversarial inputs raise early-layer dimensionality more than corruptions",
                 "test": "paired t-test over runs: early PR change under attack (largest epsilon) minus under "
                         "corruptions",
                 "expected": "positive", "statistic": paired.mean_difference, "low": low, "high": high,
                 "p": paired.p_value, "n": paired.n})
    table = pd.DataFrame(rows)
    table["verdict"] = [_verdict(r) for r in table.itertuples()]
    return table


def _verdict(row) -> str:
    if not (np.isfinite(row.low) and np.isfinite(row.high) and np.isfinite(row.p)) or row.n < 3:
        return "not testable"
    if row.p >= 0.05:
        return "not shown"
    if row.low > 0:
        return "supported" if row.expected == "positive" else "contradicted"
    if row.high < 0:
        return "supported" if row.expected == "negative" else "contradicted"
    return "not shown"
