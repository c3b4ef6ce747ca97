"""Training: optimizer, train step metrics, regularizer effect, resume."""

import json
import os

import numpy as np
import pytest
import keras
from keras import ops

from training_callbacks import Interrupt
from tf_selectivity.models import build_model
from tf_selectivity.core.files import read_json
from tf_selectivity.training import ConfigError, TorchSGD, TrainConfig, step_schedule, train

TINY = "synthetic:train=500,test=200,size=16"


def tiny_config(tmp_path, name, **overrides):
    values = dict(
        model="resnet8", dataset=TINY, epochs=2, batch_size=64, lr_milestones=(),
        output_dir=str(tmp_path / name),
    )
    values.update(overrides)
    return TrainConfig(**values)


def torch_sgd_reference(weights, gradients, rates, momentum, weight_decay):
    """torch.optim.SGD's update, written out (no dampening, no Nesterov)."""
    w = np.array(weights, dtype=np.float64)
    buf = None
    for g, lr in zip(gradients, rates):
        d = g + weight_decay * w
        buf = d if buf is None else momentum * buf + d
        w = w - lr * buf
    return w


@pytest.mark.backends
def test_torch_sgd_matches_pytorch_update_rule_across_a_rate_drop(rng):
    w0 = rng.normal(size=(5,)).astype("float32")
    grads = [rng.normal(size=(5,)).astype("float32") for _ in range(6)]
    schedule = step_schedule(0.1, milestones=[1], decay=0.1, steps_per_epoch=3)
    variable = keras.Variable(w0)
    optimizer = TorchSGD(learning_rate=schedule, momentum=0.9, weight_decay_l2=1e-2)
    for g in grads:
        optimizer.apply_gradients([(ops.convert_to_tensor(g), variable)])
    expected = torch_sgd_reference(w0, grads, [0.1] * 3 + [0.01] * 3, 0.9, 1e-2)
    np.testing.assert_allclose(ops.convert_to_numpy(variable), expected, rtol=1e-5)
    restored = TorchSGD.from_config(optimizer.get_config())
    assert (restored.momentum, restored.weight_decay_l2) == (0.9, 1e-2)


@pytest.mark.backends
def test_step_schedule_boundaries():
    schedule = step_schedule(0.1, milestones=[100, 150], decay=0.1, steps_per_epoch=176)
    rates = [float(ops.convert_to_numpy(schedule(step))) for step in (0, 17599, 17600, 26399, 26400)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-6)


def numpy_cross_entropy(logits, labels):
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(labels)), labels].mean())


def numpy_batch_selectivity(feature_maps, labels, num_classes):
    """Eq. 1 per unit over one batch, for non-negative (ReLU) responses, in
    float64: (mu_max - mu_-max) / (mu_max + mu_-max) of the class means of
    each unit's spatially averaged response."""
    responses = np.asarray(feature_maps, dtype=np.float64).mean(axis=(1, 2))  # (N, units)
    means = np.stack([responses[labels == k].mean(axis=0) for k in range(num_classes)])
    mu_max = means.max(axis=0)
    mu_rest = (means.sum(axis=0) - mu_max) / (num_classes - 1)
    return (mu_max - mu_rest) / (mu_max + mu_rest)


@pytest.mark.backends
@pytest.mark.parametrize("alpha", [0.0, -2.0, 3.0])
def test_train_step_reports_eq2_parts(rng, alpha):
    keras.utils.set_random_seed(0)
    model = build_model("resnet8", alpha=alpha, input_shape=(16, 16, 3))
    model.compile(optimizer=TorchSGD(0.05, momentum=0.9))
    x = rng.uniform(0, 255, (40, 16, 16, 3)).astype("float32")
    y = rng.permutation(np.arange(40) % 10)  # every class present: no absent-class convention involved
    # The logged values are those of the step's forward pass, before the
    # update: recompute it independently with the same weights (training
    # mode: batch-norm batch statistics), without labels (probes are
    # identities then), and evaluate eq. 1-3 and the cross-entropy in NumPy.
    forward = keras.Model(
        model.inputs[0], {"logits": model.outputs[0], **{p.name: p.output for p in model.probes}}
    )
    outputs = {k: ops.convert_to_numpy(v) for k, v in forward(x, training=True).items()}
    per_layer = []
    for name in model.probe_names:
        assert outputs[name].min() >= 0  # ReLU: eq. 1 as printed and our index agree
        per_layer.append(float(np.mean(numpy_batch_selectivity(outputs[name], y, 10))))
    mu_si = float(np.mean(per_layer))  # eq. 3
    cross_entropy = numpy_cross_entropy(outputs["logits"], y)

    logs = model.train_on_batch(x, y, return_dict=True)
    # SI: 1e-3 leaves room for the loss's small denominator guard (epsilon
    # 1e-6 against class means of ~0.5 changes SI by ~2e-6); an error in the
    # index (e.g. mu_-max over K instead of K - 1 classes) moves it by ~10%.
    for name, value in zip(model.probe_names, per_layer):
        assert logs[f"selectivity/{name}"] == pytest.approx(value, rel=1e-3), name
    assert logs["batch_selectivity"] == pytest.approx(mu_si, rel=1e-3)
    assert logs["selectivity_term"] == pytest.approx(-alpha * mu_si, rel=1e-3, abs=1e-7)
    assert logs["cross_entropy"] == pytest.approx(cross_entropy, rel=1e-5)
    assert logs["loss"] == pytest.approx(cross_entropy - alpha * mu_si, rel=1e-4)
    # The parts add up exactly (one forward pass).
    assert logs["loss"] == pytest.approx(logs["cross_entropy"] + logs["selectivity_term"], rel=1e-6)
    assert 0.01 < mu_si < 1 and len(set(np.round(per_layer, 4))) == len(per_layer)


@pytest.mark.backends
def test_alpha_changes_the_gradient_not_only_the_logged_loss(rng):
    x = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 32)
    kernels = {}
    for alpha in (0.0, -5.0):
        keras.utils.set_random_seed(0)
        model = build_model("resnet8", alpha=alpha, input_shape=(16, 16, 3))
        model.compile(optimizer=TorchSGD(0.1, momentum=0.0))
        model.train_on_batch(x, y)
        kernels[alpha] = ops.convert_to_numpy(model.get_layer("s1b1_conv1").kernel)
    assert np.abs(kernels[0.0] - kernels[-5.0]).max() > 1e-6


@pytest.mark.backends
def test_regularizer_moves_test_selectivity_in_the_sign_of_alpha(tmp_path):
    results = {}
    for alpha in (-10.0, 0.0, 10.0):
        config = tiny_config(tmp_path, f"a{alpha}", alpha=alpha, epochs=3)
        results[alpha] = train(config, verbose=0).test_mean_selectivity
    assert results[-10.0] < 0.75 * results[0.0]
    assert results[10.0] > 1.5 * results[0.0]


@pytest.mark.backends
def test_resume_equals_uninterrupted(tmp_path):
    straight = train(tiny_config(tmp_path, "straight", epochs=3, alpha=-1.0), verbose=0)
    config = tiny_config(tmp_path, "resumed", epochs=3, alpha=-1.0)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt(2)], verbose=0)
    state = read_json(os.path.join(config.output_dir, "checkpoint", "state.json"))
    assert state["epochs_done"] == 2
    assert not os.path.exists(os.path.join(config.output_dir, "summary.json"))
    resumed = train(config, verbose=0)
    for key in ("best_epoch", "val_accuracy", "test_accuracy", "test_layer_selectivity", "test_mean_selectivity"):
        assert getattr(resumed, key) == pytest.approx(getattr(straight, key), rel=1e-5, abs=1e-6), key
    history = lambda d: [row["loss"] for row in read_json(os.path.join(d, "checkpoint", "state.json"))["history"]]
    np.testing.assert_allclose(history(config.output_dir), history(str(tmp_path / "straight")), rtol=1e-5)


# Bookkeeping around a trained run (reruns, refusals, what config.json
# records): the same Python on every backend, so these run once.
def test_completed_run_is_not_trained_again(tmp_path):
    config = tiny_config(tmp_path, "done", epochs=1)
    first = train(config, verbose=0)
    mtime = os.path.getmtime(os.path.join(config.output_dir, "summary.json"))
    assert train(config, verbose=0) == first
    assert os.path.getmtime(os.path.join(config.output_dir, "summary.json")) == mtime


def test_output_dir_of_another_configuration_is_refused(tmp_path):
    config = tiny_config(tmp_path, "run", epochs=1)
    train(config, verbose=0)
    before = read_json(os.path.join(config.output_dir, "config.json"))
    with pytest.raises(ConfigError, match="alpha: 0.0 there, -1.0 now"):
        train(tiny_config(tmp_path, "run", epochs=1, alpha=-1.0), verbose=0)
    assert read_json(os.path.join(config.output_dir, "config.json")) == before


def test_selectivity_index_is_recorded_and_runs_without_it_count_as_bounded(tmp_path):
    config = tiny_config(tmp_path, "run", epochs=1)
    summary = train(config, verbose=0)
    assert summary.selectivity_index == "eq1"
    config_path = os.path.join(config.output_dir, "config.json")
    assert read_json(config_path)["identity"]["selectivity_index"] == "eq1"
    # A run directory written before the field existed was trained with the
    # bounded index: it resumes under "bounded" and is refused under "eq1".
    recorded = read_json(config_path)
    del recorded["identity"]["selectivity_index"]
    with open(config_path, "w") as handle:
        json.dump(recorded, handle)
    legacy = tiny_config(tmp_path, "run", epochs=1, selectivity_index="bounded")
    assert legacy.differences(recorded["identity"]) == []
    with pytest.raises(ConfigError, match="selectivity_index: 'bounded' there, 'eq1' now"):
        train(tiny_config(tmp_path, "run", epochs=1), verbose=0)


def test_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="finite"):
        tiny_config(tmp_path, "x", alpha=float("nan")).validate()
    with pytest.raises(ConfigError, match="model must be one of"):
        tiny_config(tmp_path, "x", model="resnet7").validate(known_models=["resnet8"])
    with pytest.raises(ConfigError, match="leaky_slope only applies"):
        tiny_config(tmp_path, "x", leaky_slope=0.2).validate()
    with pytest.raises(ConfigError, match="selectivity_index must be one of eq1, bounded"):
        tiny_config(tmp_path, "x", selectivity_index="eq2").validate()
    assert TrainConfig(model="vgg16", output_dir="x").learning_rate == 0.01
    assert TrainConfig(model="resnet20", output_dir="x").learning_rate == 0.1


@pytest.mark.backends
def test_train_step_compiles_with_xla(rng):
    """The GPU/TPU path: the same step under jit_compile=True (XLA on the CPU here)."""
    keras.utils.set_random_seed(0)
    model = build_model("resnet8", alpha=-1.0, input_shape=(16, 16, 3))
    model.compile(optimizer=TorchSGD(0.01, momentum=0.9), jit_compile=True)
    x = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 32)
    logs = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert logs["loss"][0] == pytest.approx(logs["cross_entropy"][0] + logs["selectivity_term"][0], rel=1e-5)
    assert logs["selectivity_term"][0] == pytest.approx(logs["batch_selectivity"][0], rel=1e-5)


def test_skipped_images_are_listed_in_the_run_config(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the decoded-folder cache
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split, count in (("train", 20), ("test", 5)):
        for name in ("ant", "bee"):
            os.makedirs(root / split / name)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    (root / "train" / "bee" / "broken.png").write_bytes(b"not an image")
    config = tiny_config(tmp_path, "run", dataset=f"imagefolder:{root}", epochs=1, batch_size=16,
                         skip_bad_images=True)
    summary = train(config, verbose=0)
    assert summary.status == "completed" and summary.num_classes == 2
    recorded = read_json(os.path.join(config.output_dir, "config.json"))
    assert recorded["skipped_images"] == [str(root / "train" / "bee" / "broken.png")]
    assert recorded["identity"]["skip_bad_images"] is True
