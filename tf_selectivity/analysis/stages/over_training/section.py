"""The over-training stage's report section: what was measured, and the paper's four claims with their verdicts."""

from __future__ import annotations

import numpy as np

from tf_selectivity.measures.stats import format_p_value
from tf_selectivity.report.condition_names import run_count
from tf_selectivity.report.formatting import format_number, markdown_table

__all__ = ["PAPER", "over_training_section"]

PAPER = ('Ranadive, Thakurdesai, Morcos, Leavitt & Deny, "On the special role of class-selective neurons in early '
         'training" (TMLR 2023)')


def _verdicts(claims) -> dict:
    """(condition, claim) -> the verdict its premises allow, from the gated ``claims`` table (empty without one)."""
    if claims is None or claims.empty:
        return {}
    own = claims[claims["stage"] == "over_training"]
    return {(row.condition, row.claim): (row.verdict, row.reason) for row in own.itertuples()}


def over_training_section(tables, options, claims=None) -> list:
    """Markdown lines of the section.

    Args:
        tables: the stage's restored tables (``over_training_network``,
            ``over_training_runs``, ``_tests``).
        options: the `AnalysisOptions` (its ``over_training`` group).
        claims: the gated ``claims`` table (`analysis.claims.gate`), whose
            verdicts the section shows; None: the verdicts of the numbers.
    """
    from tf_selectivity.analysis.stages.over_training.claims import as_claims

    settings = options.over_training
    network, runs = tables["over_training_network"], tables["over_training_runs"]
    measured = network["run_dir"].nunique()
    epochs = ", ".join(f"{e:g}" for e in sorted(network["epoch"].unique()))
    null = (f"{settings.null_permutations} label permutations per checkpoint, q-values over the measured units "
            f"(--fdr, --fdr_method)" if settings.null_permutations else "no null (--over_training_null=0)")
    lines = [
        "## Selectivity, ablation and linearity over training", "",
        f"{measured} of {run_count(runs)} run(s) kept checkpoints (`train --keep_checkpoints`), at epochs {epochs or 'none'}; "
        f"each was measured as the network was then, on {settings.max_samples:,} class-balanced test images: SI "
        f"({options.selectivity_index}), the fraction of units selective above chance ({null}), single-unit "
        "ablation importance (zero ablation"
        + ("" if settings.unit_ablation else ": off, --over_training_ablation") + ") and Spearman's correlation "
        f"of SI with it, and the midpoint nonlinearity of the logits and of each layer on "
        f"{settings.linearity_pairs} random pairs of those images (0 for a linear network; the paper's own "
        "measure of linearity is not reproduced, see the docs). Tables: `over_training.csv` (run, epoch, "
        "layer), `over_training_network.csv` (run, epoch), `over_training_runs.csv`.", "",
        f"### The claims of {PAPER}", "",
        f"Early: the kept checkpoints after epoch 0 up to epoch {settings.early_epochs:g} "
        "(`--over_training_early_epochs`); late: a run's last checkpoint after them. Claims 1-3 on each "
        "condition's α = 0 networks, claim 4 on runs that differ only in their window of α.", "",
    ]
    verdicts = _verdicts(claims)
    rows = []
    for claim in as_claims(tables["_tests"]):
        verdict, reason = verdicts.get((claim.condition, claim.claim), (claim.verdict, claim.reason))
        p = "n/a" if not np.isfinite(claim.p) else format_p_value(claim.p)
        rows.append([claim.condition, claim.claim, claim.test, format_number(claim.statistic), p, claim.n,
                     verdict + (f" ({reason})" if reason and verdict == "not testable" else "")])
    lines += [markdown_table(["condition", "claim", "test", "mean difference", "p", "n", "verdict"], rows), ""]
    return lines
