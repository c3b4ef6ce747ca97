"""`instrument` on keras.applications networks (weights=None: no downloads).

Built at 32x32 with 5 classes and checked with one forward pass of two
images. MobileNetV2 (the example of docs/guides/own-model.md) also runs on JAX (`backends`);
ResNet50 and EfficientNetB0 only on TensorFlow: building them on the JAX
backend is slow on a CPU (JAX compiles every weight initializer), and
MobileNetV2 takes the same path through `instrument`.
"""

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity import instrument


@pytest.mark.parametrize(
    "application,kwargs,probes,first,last",
    [
        ("ResNet50", {}, 49, "probe_conv1_relu", "probe_conv5_block3_out"),
        pytest.param(
            "MobileNetV2", {"alpha": 0.35}, 35, "probe_Conv1_relu", "probe_out_relu",
            marks=pytest.mark.backends,
        ),
        # 33 swish activations + 16 squeeze-excitation reductions (conv with
        # a fused swish); the sigmoid gates are not probed.
        ("EfficientNetB0", {}, 49, "probe_stem_activation", "probe_top_activation"),
    ],
)
def test_keras_applications(rng, application, kwargs, probes, first, last):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, application)(
        weights=None, input_shape=(32, 32, 3), classes=5, **kwargs
    )
    selective = instrument(model, alpha=-1.0)
    assert len(selective.probes) == probes
    assert (selective.probe_names[0], selective.probe_names[-1]) == (first, last)
    assert all(p.num_classes == 5 for p in selective.probes)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # keras.applications end in Dense(softmax): the instrumented model
    # returns its logits.
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.softmax(selective(x))), ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6
    )
