"""Accuracy and per-layer dimensionality of one model under perturbations.

Leavitt & Morcos, "Linking average- and worst-case perturbation robustness
via class selectivity and dimensionality" (arXiv 2010.07693). One pass of the model's unit-response model over each input
kind -- the clean test images, every corruption at every severity, FGSM and
PGD at every epsilon -- gives both the accuracy (from the logits) and the
dimensionality of every probed layer (`tf_selectivity.measures.dimensionality` of
the spatially averaged unit responses, one column per channel), so each
input kind's dimensionality is measured at no extra forward pass.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from tf_selectivity.core.progress import Progress
from tf_selectivity.measures.dimensionality import layer_dimensionality

__all__ = ["ROBUSTNESS_COLUMNS", "DIMENSIONALITY_COLUMNS", "evaluate_robustness"]

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
    verbose: int = 0,
) -> tuple:
    """Robustness of one model: accuracy and dimensionality per input kind.

    Args:
        model: a `SelectivityModel` (logits out, probes; takes [0, 255] pixels).
        images, labels: the clean test images (N, H, W, C) uint8 and labels.
        corruption_source: `data.corruptions` source spec (None: no corruptions).
        corruptions: their names (default: all the source has).
        severities: 1-5.
        attacks: any of "fgsm", "pgd" (L-infinity, `stages.robustness.attacks`).
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
        verbose: 1 shows the progress over the input kinds (the clean
            images, each corrupted set, each attack and epsilon; a bar on a
            terminal, a line elsewhere), 0 nothing.

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
    from tf_selectivity.analysis.stages.robustness import attacks as attack_functions
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
    corrupted_kinds = [] if corruption_source is None else check_source(corruption_source, corruptions,
                                                                         images.shape[1:])
    total = 1 + len(corrupted_kinds) * len(severities) + len(attacks) * len(epsilons)
    with Progress(f"Robustness on {len(labels):,} images", total, unit="input set", enabled=verbose > 0) as bar:
        record("clean", "clean", nan, nan, images, labels)
        bar.update()
        if corruption_source is not None:
            for corruption in corrupted_kinds:
                for severity in severities:
                    if load_set is not None:
                        corrupted, corrupted_labels = load_set(corruption, int(severity))
                    else:
                        corrupted, corrupted_labels = load_corrupted(
                            corruption_source, corruption, int(severity), clean_images=images, clean_labels=labels,
                            seed=seed, data_dir=data_dir, class_names=class_names, max_samples=len(labels),
                        )
                    record("corruption", corruption, float(severity), nan, corrupted, corrupted_labels)
                    bar.update()
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
                bar.update()

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
