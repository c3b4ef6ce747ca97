"""FGSM and PGD (`tf_selectivity.analysis.stages.robustness.attacks`) against hand-computed
answers and an independent PyTorch attack on the same weights (its answers
committed in `references/`, made by `references/make_torch_references.py`)."""

import numpy as np
import pytest
import keras

from tf_selectivity.analysis.stages.robustness.attacks import adversarial_accuracy, default_step_size, fgsm, perturb, pgd
from tf_selectivity.models import AKAMASTER_NORMALIZATION, build_model, load_torch_weights
from tf_selectivity.core.settings import ParameterError

from references import torch_cases

pytestmark = pytest.mark.backends

ROUNDING = 1e-4  # float32 rounding of x + epsilon near 255 (one ulp is 1.5e-5)


def linear_model(weights, bias, softmax=False):
    inputs = keras.Input((weights.shape[0],))
    outputs = keras.layers.Dense(weights.shape[1], activation="softmax" if softmax else None)(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([weights, bias])
    return model


def closed_form_fgsm(images, labels, weights, bias, epsilon):
    """x + epsilon * sign(W (softmax(x W + b) - onehot(y))), clipped to [0, 255]: NumPy, float64."""
    logits = images.astype("float64") @ weights + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert probabilities.max() < 0.999
    gradient = (probabilities - np.eye(weights.shape[1])[labels]) @ weights.T
    return np.clip(images + epsilon * np.sign(gradient), 0.0, 255.0)


@pytest.fixture(scope="module")
def resnet8():
    """A resnet8 on 16x16 images whose clean predictions are the labels, with
    the same (seeded NumPy He-normal) kernels on every backend."""
    model = build_model("resnet8", input_shape=(16, 16, 3))
    generator = np.random.default_rng(3)
    for variable in model.trainable_variables:
        if len(variable.shape) > 1:  # kernels; biases and batch norm keep their (constant) starts
            fan_in = int(np.prod(variable.shape[:-1]))
            variable.assign(generator.normal(0, np.sqrt(2 / fan_in), variable.shape).astype("float32"))
    images = np.random.default_rng(7).uniform(0, 255, (48, 16, 16, 3)).astype("float32")
    labels = np.argmax(model.predict(images, verbose=0), axis=-1)
    return model, images, labels


def test_fgsm_on_a_linear_model_is_the_closed_form(rng):
    # Logits of a few units: no probability within float32 rounding of 1,
    # where the gradient's sign would be float32 noise.
    weights = rng.normal(0, 0.004, (12, 4)).astype("float32")
    bias = rng.normal(0, 0.5, 4).astype("float32")
    images = rng.uniform(0, 255, (40, 12)).astype("float32")
    images[:5, :3] = [0.0, 255.0, 1.0]  # clipping at both ends is part of the answer
    labels = rng.integers(0, 4, 40)
    expected = closed_form_fgsm(images, labels, weights, bias, 3.0)
    for softmax in (False, True):
        got = fgsm(linear_model(weights, bias, softmax), images, labels, 3.0, from_logits=not softmax)
        np.testing.assert_allclose(got, expected, atol=ROUNDING)
    # One PGD step of size epsilon from the image is FGSM.
    got = pgd(linear_model(weights, bias), images, labels, 3.0, steps=1, step_size=3.0)
    np.testing.assert_allclose(got, expected, atol=ROUNDING)


def test_epsilon_zero_gives_the_clean_accuracy_exactly(rng):
    weights = rng.normal(0, 0.02, (12, 4)).astype("float32")
    model = linear_model(weights, np.zeros(4, "float32"))
    images = rng.uniform(0, 255, (50, 12)).astype("float32")
    labels = rng.integers(0, 4, 50)
    clean = float(np.mean(np.argmax(model.predict(images, verbose=0), axis=-1) == labels))
    assert 0.0 < clean < 1.0
    for attack in ("fgsm", "pgd"):
        assert adversarial_accuracy(model, images, labels, 0.0, attack=attack, random_start=True) == clean
        np.testing.assert_array_equal(perturb(model, images, labels, 0, attack=attack, random_start=True), images)


def test_budget_range_strength_and_seeds(resnet8):
    model, images, labels = resnet8
    epsilon = 1.0
    results = {}
    for attack, kwargs in (("fgsm", {}), ("pgd", {"steps": 7, "random_start": True, "seed": 3})):
        adversarial = perturb(model, images, labels, epsilon, attack=attack, batch_size=20, **kwargs)
        assert adversarial.shape == images.shape and adversarial.dtype == np.float32
        assert np.abs(adversarial - images).max() <= epsilon + ROUNDING
        assert adversarial.min() >= 0.0 and adversarial.max() <= 255.0
        assert np.abs(adversarial - images).max() > epsilon * 0.9  # it did move
        results[attack] = adversarial_accuracy(model, images, labels, epsilon, attack=attack, batch_size=20, **kwargs)
    assert results["fgsm"] < 1.0  # the clean accuracy is 1 by construction
    assert results["pgd"] <= results["fgsm"] + 2 / len(images)  # PGD is at least as strong, up to noise
    # Seeded: the same seed repeats, another seed starts elsewhere.
    one = pgd(model, images[:8], labels[:8], epsilon, steps=2, random_start=True, seed=5)
    np.testing.assert_array_equal(one, pgd(model, images[:8], labels[:8], epsilon, steps=2, random_start=True, seed=5))
    assert not np.array_equal(one, pgd(model, images[:8], labels[:8], epsilon, steps=2, random_start=True, seed=6))


def test_equal_to_pytorch_on_the_same_weights():
    inputs = torch_cases.attacks()
    theirs = torch_cases.expected("attacks", inputs)
    model = build_model("resnet8", input_shape=(16, 16, 3))
    load_torch_weights(model, inputs["state"], normalize_mean=tuple(inputs["mean"]), normalize_std=tuple(inputs["std"]))
    assert dict(normalize_mean=tuple(inputs["mean"]), normalize_std=tuple(inputs["std"])) == AKAMASTER_NORMALIZATION
    images = inputs["images"]
    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    np.testing.assert_array_equal(predicted, theirs["predicted"])
    labels = torch_cases.attack_labels(predicted)  # some already wrong
    epsilon, steps = float(inputs["epsilon"]), int(inputs["steps"])
    assert default_step_size(epsilon, steps) == float(inputs["step_size"])
    cases = {
        "fgsm": fgsm(model, images, labels, epsilon),
        "pgd": pgd(model, images, labels, epsilon, steps=steps, random_start=True, seed=9, batch_size=32),
    }
    for attack, ours in cases.items():
        # Signs of gradients within float error of 0 may differ: allow a few pixels.
        differ = np.abs(ours - (images + theirs[f"{attack}_offset"])) > 1e-3
        assert differ.mean() < 5e-3, (attack, differ.mean())
        kwargs = {"steps": steps, "random_start": True, "seed": 9} if attack == "pgd" else {}
        ours_accuracy = adversarial_accuracy(model, images, labels, epsilon, attack=attack, **kwargs)
        assert ours_accuracy == pytest.approx(float(theirs[f"{attack}_accuracy"]), abs=1 / len(images)), attack
        assert ours_accuracy < 0.75  # the attack changed predictions (clean accuracy is 0.75)


def test_l2_attacks(rng, resnet8):
    # On a linear model one L2 step of size epsilon is x + eps * g / ||g||.
    weights = rng.normal(0, 0.004, (12, 4)).astype("float32")
    bias = rng.normal(0, 0.5, 4).astype("float32")
    images = rng.uniform(60, 195, (30, 12)).astype("float32")  # the step stays inside [0, 255]
    labels = rng.integers(0, 4, 30)
    logits = images.astype("float64") @ weights + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    gradient = (probabilities - np.eye(4)[labels]) @ weights.T
    expected = images + 30.0 * gradient / np.linalg.norm(gradient, axis=1, keepdims=True)
    got = fgsm(linear_model(weights, bias), images, labels, 30.0, norm="l2")
    np.testing.assert_allclose(got, expected, atol=1e-3)
    # Budget, range, strength and epsilon 0 on a network.
    model, images, labels = resnet8
    epsilon = 60.0  # L2 over 16 x 16 x 3 values: about 1 pixel unit per value
    accuracies = {}
    for attack, kwargs in (("fgsm", {}), ("pgd", {"steps": 7, "random_start": True, "seed": 1})):
        adversarial = perturb(model, images, labels, epsilon, attack=attack, norm="l2", **kwargs)
        norms = np.linalg.norm((adversarial - images).reshape(len(images), -1), axis=1)
        assert norms.max() <= epsilon * (1 + 1e-5) and norms.max() > 0.9 * epsilon
        assert adversarial.min() >= 0.0 and adversarial.max() <= 255.0
        accuracies[attack] = adversarial_accuracy(model, images, labels, epsilon, attack=attack, norm="l2", **kwargs)
        np.testing.assert_array_equal(perturb(model, images, labels, 0.0, attack=attack, norm="l2", **kwargs), images)
    assert accuracies["fgsm"] < 1.0
    assert accuracies["pgd"] <= accuracies["fgsm"] + 2 / len(images)


def test_the_device_path_gives_the_host_path_s_images(resnet8):
    # JAX: the images copied to the device once and sliced there (the
    # default where they fit) are attacked exactly as batch by batch from
    # the host, random starts included (the same NumPy stream).
    model, images, labels = resnet8
    if keras.backend.backend() != "jax":
        with pytest.raises(ParameterError, match="on_device applies on the jax backend"):
            pgd(model, images, labels, 4.0, on_device=True)
        return
    for norm in ("linf", "l2"):
        epsilon = 4.0 if norm == "linf" else 200.0
        kwargs = dict(steps=3, random_start=True, seed=5, batch_size=20, norm=norm)  # 20: a short last batch
        on_device = pgd(model, images, labels, epsilon, on_device=True, **kwargs)
        on_host = pgd(model, images, labels, epsilon, on_device=False, **kwargs)
        np.testing.assert_array_equal(on_device, on_host)
        assert not np.array_equal(on_device, images)


def test_progress_over_the_images_when_verbose(resnet8, capsys):
    from conftest import log_lines

    model, images, labels = resnet8
    quiet = fgsm(model, images, labels, 4.0, batch_size=20)
    accuracy = adversarial_accuracy(model, images, labels, 4.0, attack="pgd", steps=2, batch_size=20)
    assert capsys.readouterr().out == ""
    shown = fgsm(model, images, labels, 4.0, batch_size=20, verbose=1)
    assert adversarial_accuracy(model, images, labels, 4.0, attack="pgd", steps=2, batch_size=20,
                                verbose=1) == accuracy
    # Both paths of JAX (the device's, the host's) show the same line.
    on_host = pgd(model, images, labels, 4.0, steps=2, batch_size=20, on_device=False, verbose=1)
    assert [line.split(", ")[0] for line in log_lines(capsys.readouterr().out)] == [
        "FGSM at epsilon 4: 48/48 images", "PGD at epsilon 4: 48/48 images", "PGD at epsilon 4: 48/48 images"]
    np.testing.assert_array_equal(shown, quiet)
    assert on_host.shape == images.shape


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"step_size": 0.0}, "step_size"),
        ({"attack": "cw"}, "attack"),
        ({"labels": np.zeros(3, "int64")}, "labels"),
        ({"labels": np.zeros(4, "float32")}, "labels"),
        ({"images": np.full((4, 12), 300.0, "float32")}, "images"),
        ({"bounds": (1.0, 1.0)}, "bounds"),
        ({"batch_size": 0}, "batch_size"),
        ({"norm": "l1"}, "norm"),
        ({"on_device": "yes"}, "on_device"),
    ],
)
def test_bad_arguments_are_named(kwargs, parameter):
    model = linear_model(np.zeros((12, 4), "float32"), np.zeros(4, "float32"))
    arguments = {"images": np.zeros((4, 12), "float32"), "labels": np.zeros(4, "int64"), "epsilon": 1.0}
    arguments.update(kwargs)
    with pytest.raises(ParameterError) as error:
        perturb(model, **arguments)
    assert error.value.parameter == parameter
