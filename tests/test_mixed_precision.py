"""mixed_bfloat16: bf16 activations, float32 selectivity statistics and loss."""

import keras
import numpy as np
import pytest
from keras import ops

from tf_selectivity.measures.selectivity import batch_class_selectivity, class_selectivity

pytestmark = pytest.mark.backends


@pytest.fixture
def mixed_bfloat16():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def test_batch_selectivity_of_bf16_activations_is_float32(rng):
    activations = rng.gamma(1.0, 1.0, (128, 4, 4, 12)).astype("float32")
    labels = rng.integers(0, 5, 128)
    bf16 = ops.cast(ops.convert_to_tensor(activations), "bfloat16")
    si = batch_class_selectivity(bf16, labels, 5, epsilon=0.0)
    assert ops.dtype(si) == "float32"
    # The reference sees the same bf16 values, in float64: only the
    # accumulation may differ, and it is float32, not bf16.
    reference = class_selectivity(ops.convert_to_numpy(ops.cast(bf16, "float32")), labels, 5)
    np.testing.assert_allclose(ops.convert_to_numpy(si), reference, rtol=1e-5, atol=1e-6)


def _small_model(num_classes=5):
    from tf_selectivity.models import build_model
    from tf_selectivity.training import TorchSGD

    keras.utils.set_random_seed(0)
    model = build_model("resnet8", num_classes=num_classes, alpha=-1.0, input_shape=(16, 16, 3))
    model.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    return model


def test_probe_statistics_and_loss_stay_float32(mixed_bfloat16, rng):
    model = _small_model()
    x = rng.uniform(0, 255, (64, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 5, 64)
    model.train_on_batch(x, y)
    probe_outputs = model.activation_model()(x)
    assert all(ops.dtype(a) == "bfloat16" for a in probe_outputs.values())  # the compute is bf16
    logs = model.test_on_batch(x, y, return_dict=True)
    for probe in model.probes:
        assert probe.batch_selectivity.dtype == "float32"
        assert ops.dtype(probe.batch_selectivity.value) == "float32"
    for tracker in model.metrics:
        assert all(v.dtype == "float32" for v in tracker.variables), tracker.name

    # The logged SI against a float64 recomputation from the probes' bf16
    # activations (inference mode, like test_on_batch). The two forward
    # passes may round bf16 intermediates differently (one fused program
    # against layer by layer), hence the tolerance; an SI accumulated in bf16
    # itself would be off by several percent.
    probe_outputs = model.activation_model()(x)
    per_layer = [
        class_selectivity(ops.convert_to_numpy(ops.cast(probe_outputs[p.name], "float32")), y, 5).mean()
        for p in model.probes
    ]
    recorded = [float(ops.convert_to_numpy(p.batch_selectivity.value)) for p in model.probes]
    np.testing.assert_allclose(recorded, per_layer, rtol=2e-2, atol=2e-3)
    assert logs["batch_selectivity"] == pytest.approx(np.mean(recorded), rel=1e-5)

    # The cross-entropy is computed in float32 from the (bf16) logits.
    logits = ops.convert_to_numpy(ops.cast(model(x, training=False), "float32")).astype(np.float64)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    reference_ce = -log_softmax[np.arange(64), y].mean()
    assert logs["cross_entropy"] == pytest.approx(reference_ce, rel=2e-2)
    assert logs["loss"] == pytest.approx(logs["cross_entropy"] + logs["selectivity_term"], rel=1e-5)


@pytest.mark.jax_only  # the on-device data path is JAX-only
def test_device_path_trains_in_bf16_with_float32_logs(mixed_bfloat16, rng):
    import jax

    from tf_selectivity.data import ImageBatches
    from tf_selectivity.training.device_loop import DeviceTrainer, model_state

    model = _small_model()
    images = rng.integers(0, 256, (80, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, 80)
    trainer = DeviceTrainer(
        model, images, labels, images[:30], labels[:30], batch_size=32, eval_batch_size=16, seed=0
    )
    state, logs = trainer.train_epoch(model_state(model), 0)
    assert all(value.dtype == jax.numpy.float32 for value in jax.tree.leaves(logs))
    assert all(np.isfinite(float(value)) for value in jax.tree.leaves(logs))
    history = trainer.fit(epochs=1, verbose=0).history
    host = model.evaluate(ImageBatches(images[:30], labels[:30], 16), return_dict=True, verbose=0)
    # Same batches, same math; bf16 intermediates may round differently in
    # the loop program than in Keras' one-batch program (float32: 1e-5, in
    # test_device_loop.py).
    for name in ("loss", "accuracy", "batch_selectivity"):
        assert history[f"val_{name}"][-1] == pytest.approx(host[name], rel=1e-2, abs=1e-2), name
