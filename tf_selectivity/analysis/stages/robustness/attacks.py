"""White-box L-infinity attacks: FGSM and PGD, in pixel space.

The models of this toolkit take raw pixels in [0, 255] and normalize inside
(`models.blocks.input_normalization`), so an attack here works on the images
as the model takes them: `epsilon` is in pixel units (`epsilon=8` is the
"8/255" of the literature), the gradient flows through the model's own
normalization, and every perturbed image is clipped to `bounds`.

Both attacks are untargeted and ascend the cross-entropy of the true label
(Goodfellow et al. 2015; Madry et al. 2018). FGSM is one step of size
`epsilon` from the clean image; PGD takes `steps` steps of `step_size` from
the clean image or, with `random_start`, from a seeded uniform point of the
epsilon ball, projecting onto the ball and `bounds` after each step.

The gradient is the backend's own (`tf.GradientTape` in a `tf.function` on
TensorFlow, `jax.grad` under `jax.jit` on JAX); the step loop is
`keras.ops.fori_loop` inside the compiled function, so one call attacks a
whole batch.

`norm="l2"` gives the L2 versions (the fast gradient method and L2 PGD):
steps along the gradient over its per-image L2 norm, projection onto the L2
ball of radius `epsilon` (pixel units over all of an image's values).
"""

from __future__ import annotations

import math
import weakref

import keras
import numpy as np
from keras import ops

from tf_selectivity.core.progress import Progress
from tf_selectivity.core.settings import ParameterError

__all__ = ["ATTACKS", "NORMS", "perturb", "fgsm", "pgd", "adversarial_accuracy", "default_step_size"]

ATTACKS = ("fgsm", "pgd")
NORMS = ("linf", "l2")


def default_step_size(epsilon: float, steps: int) -> float:
    """PGD's usual step, 2.5 * epsilon / steps (Madry et al. 2018): enough to
    cross the ball from a random start and back within `steps` steps."""
    return 2.5 * float(epsilon) / int(steps)


def perturb(
    model,
    images,
    labels,
    epsilon: float,
    *,
    attack: str = "pgd",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = False,
    seed: int = 0,
    batch_size: int = 256,
    bounds=(0.0, 255.0),
    from_logits: bool = True,
    norm: str = "linf",
    on_device: bool | None = None,
    verbose: int = 0,
) -> np.ndarray:
    """Adversarial versions of `images` under an L-infinity (or L2) budget.

    Args:
        model: a Keras model from images to class scores (logits, or
            probabilities with `from_logits=False`), in inference mode.
        images: (N, ...) array of pixels within `bounds`, as the model takes them.
        labels: (N,) integer class labels (the attack raises their loss).
        epsilon: the L-infinity budget in pixel units (>= 0).
        attack: "fgsm" (one step of size `epsilon`, no random start; `steps`,
            `step_size` and `random_start` are ignored) or "pgd".
        steps: PGD's number of gradient steps (>= 1).
        step_size: PGD's step in pixel units; `default_step_size(epsilon,
            steps)` when None.
        random_start: PGD starts from a uniform point of the epsilon ball
            (clipped to `bounds`) drawn from `seed`, not from the image.
        seed: seed of the random start (NumPy's `default_rng`), so a run is
            repeatable and the same on every backend.
        batch_size: images per compiled call.
        bounds: (low, high) valid pixel range; perturbed images stay inside.
        from_logits: whether the model's outputs are logits.
        norm: "linf" (steps along the gradient's sign, projection by
            clipping) or "l2" (steps along the gradient divided by its L2
            norm per image, projection by rescaling; `epsilon` is then the L2
            radius in pixel units over all of an image's values, and the
            random start is uniform in the L2 ball).
        on_device: JAX: None copies the images to the device once where
            they fit and slices the batches there, True always, False
            copies batch by batch from the host (the same results).
        verbose: 1 shows the progress over the images (a bar on a terminal,
            a line elsewhere), 0 nothing.

    Returns:
        float32 array of `images`' shape: the perturbed images, with
        |perturbed - images| <= epsilon (L-infinity; up to float32 rounding
        of `images + epsilon`) or ||perturbed - images||_2 <= epsilon per
        image (L2; up to float32 rounding), and low <= perturbed <= high.

    Raises:
        ParameterError: naming the bad parameter.
    """
    images, labels, epsilon, steps, step_size, bounds = _validate(
        images, labels, epsilon, attack, steps, step_size, batch_size, bounds
    )
    if norm not in NORMS:
        raise ParameterError("norm", f"must be one of {', '.join(NORMS)}; got {norm!r}")
    if attack == "fgsm":
        steps, step_size, random_start = 1, epsilon, False
    run = _attack_function(model, bool(from_logits), bounds, norm)
    rng = np.random.default_rng(seed)
    randomized = bool(random_start and epsilon > 0)

    def start_of(shape):  # drawn batch by batch, in order: the same stream on every path
        if randomized and norm == "l2":
            return _l2_ball(rng, shape, epsilon)
        if randomized:
            return rng.uniform(-epsilon, epsilon, size=shape).astype("float32")
        return np.zeros(shape, "float32")

    batches = range(0, len(images), batch_size)
    if on_device not in (None, True, False):
        raise ParameterError("on_device", f"must be None (where the images fit), True or False; got {on_device!r}")
    if on_device and keras.backend.backend() != "jax":
        raise ParameterError("on_device", f"applies on the jax backend; this is {keras.backend.backend()!r}")
    device = None if on_device is False else _device_arrays(images, labels, randomized, required=bool(on_device))
    if device is not None:
        # JAX, the images fit: one copy to the device, batches sliced there,
        # one copy of the result back.
        import jax.numpy as jnp

        x_all, y_all = device
        starts = (jnp.asarray(np.concatenate([start_of(images[b : b + batch_size].shape) for b in batches]))
                  if randomized else None)
        outputs = []
        with Progress(f"{attack.upper()} at epsilon {epsilon:g}", len(images), unit="image",
                      enabled=verbose > 0) as bar:
            for begin in batches:
                x = x_all[begin : begin + batch_size]
                start = starts[begin : begin + batch_size] if randomized else jnp.zeros_like(x)
                outputs.append(run(x, start, y_all[begin : begin + batch_size], epsilon, step_size, steps))
                if verbose > 0:  # waits for the batch only when its progress is shown
                    outputs[-1].block_until_ready()
                bar.update(len(x))
        return np.asarray(jnp.concatenate(outputs))
    out = np.empty_like(images)
    with Progress(f"{attack.upper()} at epsilon {epsilon:g}", len(images), unit="image", enabled=verbose > 0) as bar:
        for begin in batches:
            x = images[begin : begin + batch_size]
            y = labels[begin : begin + batch_size]
            out[begin : begin + len(x)] = ops.convert_to_numpy(run(x, start_of(x.shape), y, epsilon, step_size, steps))
            bar.update(len(x))
    return out


def _device_arrays(images, labels, randomized, required=False):
    """(images, labels) on the JAX device when they (and the starts) fit or are `required`, else None.

    `training.device_loop.fits_on_device` (a CPU device's memory is the
    host's), counting the images, the random starts and the perturbed copy.
    """
    if keras.backend.backend() != "jax":
        return None
    import jax

    from tf_selectivity.training.device_loop import fits_on_device

    needed = images.nbytes * (3 if randomized else 2) + labels.nbytes
    if not required and not fits_on_device(needed):
        return None
    return jax.device_put(images), jax.device_put(labels.astype(np.int32))


def fgsm(model, images, labels, epsilon: float, **kwargs) -> np.ndarray:
    """`perturb(..., attack="fgsm")`: x + epsilon * sign(grad), clipped to bounds."""
    return perturb(model, images, labels, epsilon, attack="fgsm", **kwargs)


def pgd(model, images, labels, epsilon: float, **kwargs) -> np.ndarray:
    """`perturb(..., attack="pgd")`."""
    return perturb(model, images, labels, epsilon, attack="pgd", **kwargs)


def adversarial_accuracy(model, images, labels, epsilon: float, *, batch_size: int = 256, **kwargs) -> float:
    """Fraction of `images` the model still classifies as `labels` after the attack.

    Args:
        model: as for `perturb`.
        images: as for `perturb`.
        labels: as for `perturb`.
        epsilon: as for `perturb`.
        batch_size: as for `perturb`.
        **kwargs: the other arguments of `perturb` (attack, steps, step_size,
            random_start, seed, bounds, from_logits, norm, on_device, verbose).

    Returns:
        accuracy in [0, 1] on the perturbed images; at `epsilon=0` the clean
        accuracy exactly (the images come back unchanged).
    """
    adversarial = perturb(model, images, labels, epsilon, batch_size=batch_size, **kwargs)
    scores = model.predict(adversarial, batch_size=batch_size, verbose=0)
    predicted = np.argmax(np.asarray(scores), axis=-1)
    return float(np.mean(predicted == np.asarray(labels).reshape(-1)))


def _validate(images, labels, epsilon, attack, steps, step_size, batch_size, bounds):
    if attack not in ATTACKS:
        raise ParameterError("attack", f"must be one of {', '.join(ATTACKS)}; got {attack!r}")
    try:
        epsilon = float(epsilon)
    except (TypeError, ValueError):
        raise ParameterError("epsilon", f"must be a number of pixel units; got {epsilon!r}") from None
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ParameterError("epsilon", f"must be a finite number >= 0 (pixel units); got {epsilon}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParameterError("steps", f"must be an integer >= 1; got {steps!r}")
    steps = int(steps)
    if step_size is None:
        step_size = default_step_size(epsilon, steps)
    else:
        step_size = float(step_size)
        if not math.isfinite(step_size) or step_size <= 0:
            raise ParameterError("step_size", f"must be a finite number > 0 (pixel units); got {step_size}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParameterError("batch_size", f"must be an integer >= 1; got {batch_size!r}")
    low, high = (float(b) for b in bounds)
    if not low < high:
        raise ParameterError("bounds", f"must be (low, high) with low < high; got {tuple(bounds)}")
    images = np.asarray(images, dtype="float32")
    labels = np.asarray(labels)
    if images.ndim < 2 or labels.shape != (len(images),):
        raise ParameterError(
            "labels", f"must hold one integer label per image, shape ({len(images)},); got {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ParameterError("labels", f"must be integer class indices; got dtype {labels.dtype}")
    if images.size and (not np.all(np.isfinite(images)) or images.min() < low or images.max() > high):
        raise ParameterError("images", f"must be finite pixels within bounds [{low:g}, {high:g}]")
    return images, labels.astype("int32"), epsilon, steps, step_size, (low, high)


def _l2_ball(rng, shape, epsilon):
    """Points uniform in the L2 ball of radius `epsilon`, one per image."""
    dimension = int(np.prod(shape[1:]))
    direction = rng.normal(size=(shape[0], dimension))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    radius = epsilon * rng.uniform(size=(shape[0], 1)) ** (1.0 / dimension)
    return (direction * radius).reshape(shape).astype("float32")


def _image_norm(x):
    return ops.sqrt(ops.sum(ops.square(x), axis=tuple(range(1, len(x.shape))), keepdims=True))


def _direction(gradient, norm):
    if norm == "l2":
        return gradient / ops.maximum(_image_norm(gradient), 1e-12)
    return ops.sign(gradient)


def _project(candidate, clean, epsilon, bounds, norm="linf"):
    """Nearest point of the epsilon ball around `clean`, inside `bounds`
    (L2: the ball's projection, then the clip, which only shortens)."""
    if norm == "l2":
        delta = candidate - clean
        candidate = clean + delta * ops.minimum(1.0, epsilon / ops.maximum(_image_norm(delta), 1e-12))
    else:
        candidate = ops.clip(candidate, clean - epsilon, clean + epsilon)
    return ops.clip(candidate, bounds[0], bounds[1])


def _loss(scores, labels, from_logits):
    # Summed, not averaged: each image's gradient is its own loss's.
    return ops.sum(keras.losses.sparse_categorical_crossentropy(labels, scores, from_logits=from_logits))


# model -> {(from_logits, bounds, norm): compiled attack}; one trace per model and
# batch shape, however often `perturb` is called.
_COMPILED = weakref.WeakKeyDictionary()


def _attack_function(model, from_logits, bounds, norm):
    """run(x, start, y, epsilon, step_size, steps) -> perturbed x, compiled for this backend."""
    backend = keras.backend.backend()
    builders = {"tensorflow": _tensorflow_attack, "jax": _jax_attack}
    if backend not in builders:
        raise ParameterError("model", f"attacks run on the tensorflow and jax backends; this is {backend!r}")
    compiled = _COMPILED.setdefault(model, {})
    key = (from_logits, bounds, norm)
    if key not in compiled:
        compiled[key] = builders[backend](model, from_logits, bounds, norm)
    return compiled[key]


def _tensorflow_attack(model, from_logits, bounds, norm):
    import tensorflow as tf

    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _loss(model(x, training=False), y, from_logits)
        return tape.gradient(loss, x)

    @tf.function(reduce_retracing=True)
    def run(x, start, y, epsilon, step_size, steps):
        def step(_, adversarial):
            direction = _direction(gradient(adversarial, y), norm)
            return _project(adversarial + step_size * direction, x, epsilon, bounds, norm)

        return ops.fori_loop(0, steps, step, _project(x + start, x, epsilon, bounds, norm))

    def call(x, start, y, epsilon, step_size, steps):
        return run(
            tf.convert_to_tensor(x), tf.convert_to_tensor(start), tf.convert_to_tensor(y),
            tf.constant(epsilon, "float32"), tf.constant(step_size, "float32"), tf.constant(steps, "int32"),
        )

    return call


def _jax_attack(model, from_logits, bounds, norm):
    import jax

    def loss(x, y, trainable, non_trainable):
        scores, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return _loss(scores, y, from_logits)

    gradient = jax.grad(loss)

    @jax.jit
    def run(x, start, y, epsilon, step_size, steps, trainable, non_trainable):
        def step(_, adversarial):
            direction = _direction(gradient(adversarial, y, trainable, non_trainable), norm)
            return _project(adversarial + step_size * direction, x, epsilon, bounds, norm)

        return ops.fori_loop(0, steps, step, _project(x + start, x, epsilon, bounds, norm))

    def call(x, start, y, epsilon, step_size, steps):
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return run(x, start, y, np.float32(epsilon), np.float32(step_size), np.int32(steps), trainable, non_trainable)

    return call
