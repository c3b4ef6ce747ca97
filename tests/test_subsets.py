"""The class-balanced subset that partial analyses take of a test set."""

import numpy as np

from tf_selectivity.data.subsets import balanced_subset


def test_a_test_set_sorted_by_class_gives_every_class_equally():
    labels = np.repeat(np.arange(10), 1000)  # an image folder's test/<class>/ order
    chosen = balanced_subset(labels, 1000)
    assert np.array_equal(np.bincount(labels[chosen]), np.full(10, 100))
    # The first 100 images of each class, in increasing positions.
    assert np.array_equal(chosen, np.concatenate([np.arange(c * 1000, c * 1000 + 100) for c in range(10)]))


def test_classes_in_turn_ranked_first_image_first():
    labels = np.array([2, 2, 0, 1, 1, 1])
    # Rank 0: positions 2 (class 0), 3 (class 1), 0 (class 2); rank 1: 4 (class 1), 1 (class 2).
    assert balanced_subset(labels, 3).tolist() == [0, 2, 3]
    assert balanced_subset(labels, 4).tolist() == [0, 2, 3, 4]
    assert balanced_subset(labels, 5).tolist() == [0, 1, 2, 3, 4]
    assert balanced_subset(labels, 6).tolist() == list(range(6))
    assert balanced_subset(labels, 100).tolist() == list(range(6))


def test_uneven_classes_and_a_shuffled_set():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 5000)
    chosen = balanced_subset(labels, 703)
    counts = np.bincount(labels[chosen], minlength=7)
    assert len(chosen) == 703 and counts.max() - counts.min() <= 1 and len(set(chosen)) == 703
    assert np.all(np.diff(chosen) > 0)
    # A class with fewer images than its share gives all it has; the others fill up.
    labels = np.array([0] * 50 + [1] * 2 + [2] * 50)
    chosen = balanced_subset(labels, 30)
    assert np.bincount(labels[chosen]).tolist() == [14, 2, 14]


def test_the_analysis_takes_every_class_of_an_image_folder_stored_by_class(tmp_path):
    """--max_test_samples on a test set read class by class: all classes, not the first one only."""
    import os

    from PIL import Image

    from tf_selectivity.analysis.context import TestDataLoader
    from tf_selectivity.analysis.options import AnalysisOptions
    from tf_selectivity.analysis.runs import RunRecord
    from tf_selectivity.training.summary import RunSummary

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("ant", "bee", "cat"):
            os.makedirs(tmp_path / "images" / split / name)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
                    tmp_path / "images" / split / name / f"{i}.png")
    spec = f"imagefolder:{tmp_path / 'images'}"
    summary = RunSummary(model="resnet8", alpha=0.0, seed=0, activation="relu", leaky_slope=0.0,
                         dataset=spec, image_shape=[6, 6, 3], num_classes=3)
    record = RunRecord("run", summary, {})
    data = TestDataLoader(AnalysisOptions(max_test_samples=6)).for_run(record)
    images, labels = data.images, data.labels
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2] and images.shape == (6, 6, 6, 3)
