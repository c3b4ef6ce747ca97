"""Streaming test-set statistics: precision (top-N), dead units, response files."""

import os

import numpy as np
import pytest

from tf_selectivity.measures.unit_statistics import TopResponses, evaluate_responses


def reference_precision(responses, labels, n, num_classes):
    """Sort all samples per unit (value descending, index ascending), take n."""
    out = []
    for u in range(responses.shape[1]):
        order = sorted(range(len(labels)), key=lambda i: (-responses[i, u], i))[:n]
        counts = np.bincount(labels[order], minlength=num_classes)
        out.append(counts.max() / n)
    return np.array(out)


@pytest.mark.parametrize("batch", [7, 50, 300])
def test_top_responses_precision_matches_full_sort(rng, batch):
    responses = rng.normal(size=(300, 9))
    responses[:, 3] = np.round(responses[:, 3])  # many ties
    responses[:, 4] = 0.0  # all tied
    labels = rng.integers(0, 4, size=300)
    top = TopResponses(40)
    for start in range(0, 300, batch):
        top.update(responses[start : start + batch], labels[start : start + batch])
    np.testing.assert_allclose(top.precision(4), reference_precision(responses, labels, 40, 4))


def test_precision_known_values():
    labels = np.repeat(np.arange(4), 25)
    cat_unit = (labels == 2).astype(float) + 0.01 * np.arange(100)  # top 25 all class 2
    sparse_unit = np.where(np.arange(100) == 60, 1.0, 0.0)  # one response, then ties by order
    top = TopResponses(25)
    top.update(np.stack([cat_unit, sparse_unit], axis=1), labels)
    precision = top.precision(4)
    assert precision[0] == 1.0
    # Sample 60 (class 2) then samples 0..23 (class 0): 24/25 class 0.
    assert precision[1] == pytest.approx(24 / 25)


def test_evaluate_responses_end_to_end(tmp_path, rng):
    labels = np.repeat(np.arange(5), 20)
    rng.shuffle(labels)
    images = rng.normal(size=(100, 2, 2, 1)).astype("float32")
    onehot = np.eye(5)[labels]

    def respond(batch_images):
        index = respond.offset
        respond.offset += len(batch_images)
        batch_labels = labels[index : index + len(batch_images)]
        unit_a = np.eye(5)[batch_labels] * 3.0  # class detectors: SI 1, precision 1
        unit_b = np.zeros((len(batch_images), 2))  # dead
        return {"logits": np.eye(5)[batch_labels], "a": unit_a, "b": unit_b}

    respond.offset = 0
    batches = [(images[i : i + 30], labels[i : i + 30]) for i in range(0, 100, 30)]
    result = evaluate_responses(
        respond, batches, num_classes=5, layer_names=["a", "b"], num_samples=100,
        precision_top_n=20, response_dir=str(tmp_path),
    )
    assert result.accuracy == 1.0
    table_a, table_b = result.layers["a"].unit_table(), result.layers["b"].unit_table()
    np.testing.assert_allclose(table_a["selectivity"], 1.0)
    np.testing.assert_allclose(table_a["precision"], 1.0)
    assert table_b["dead"].all() and np.isnan(table_b["precision"]).all()
    assert (table_b["selectivity"] == 0).all()
    assert result.layer_selectivity() == [1.0, 0.0] and result.mean_selectivity() == 0.5
    saved = np.load(tmp_path / "a.npy")
    assert saved.shape == (5, 100)
    np.testing.assert_allclose(saved, (onehot * 3.0).T)
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "b.npy"]  # no temporary left
