"""Corrupted test sets: CIFAR-10-C's corruptions, generated or loaded.

Two ways to get the test images of Hendrycks & Dietterich (2019), "Benchmarking
Neural Network Robustness to Common Corruptions and Perturbations":

* **Generated** (`corrupt`): a seeded NumPy / SciPy / PIL re-implementation of
  the corruptions that need no external image files or ImageMagick, with
  CIFAR-10-C's per-severity parameters. Every constant below is copied from
  ``ImageNet-C/create_c/make_cifar_c.py`` of github.com/hendrycks/robustness,
  commit ca360085d57889288c4143fddd8a707bbcae01bd (the script that made
  CIFAR-10-C); the operations follow it, with scikit-image / OpenCV calls
  replaced by their NumPy / SciPy equivalents (see each function).
* **Loaded** from the published files (`load_corrupted`): CIFAR-10-C's
  directory of ``<corruption>.npy`` (N x H x W x 3 uint8, severities 1-5
  stacked, N / 5 images each) and ``labels.npy``, memory-mapped;
  tensorflow-datasets' ``cifar10_corrupted/<corruption>_<severity>``
  configs; Tiny ImageNet-C's ``<corruption>/<severity>/<wnid>/<image>``.

A source is named by a spec string (`parse_source`): ``generated``,
``cifar10c:PATH``, ``tfds:cifar10_corrupted`` (its `data_dir` as for
``--dataset=cifar10``) or ``tinyimagenetc:PATH``. Corruption names are
CIFAR-10-C's file stems (``glass_blur``, ``elastic_transform``;
tensorflow-datasets calls them ``frosted_glass_blur`` and ``elastic``).

Not generated: ``frost`` (needs Hendrycks' frost photographs),
``motion_blur`` and ``snow`` (ImageMagick's motion blur through Wand),
``spatter`` (OpenCV's Canny and distance transform), ``glass_blur`` (a
per-pixel Python loop of swaps, slow). They load from the published files.

Randomness: image ``i`` of a call (``i`` counted from `index_offset`) draws
from ``numpy.random.default_rng((seed, corruption number, i))``, the same
stream at every severity (common random numbers: a stronger severity scales
the same noise), so a corrupted image does not depend on the batch it is
corrupted in. CIFAR-10-C itself drew from NumPy's global generator; the
generated images are the same distribution, not the same pixels.

Needs NumPy, SciPy and Pillow only (all install requirements).
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from tf_selectivity.data.sources import DatasetUnavailableError

__all__ = [
    "CORRUPTIONS",
    "GENERATED_CORRUPTIONS",
    "SEVERITIES",
    "SOURCE_HELP",
    "CorruptedSetError",
    "corrupt",
    "parse_source",
    "source_corruptions",
    "tfds_config_name",
    "load_corrupted",
    "check_source",
]

SEVERITIES = (1, 2, 3, 4, 5)

# The 19 corruptions of CIFAR-10-C, by the stems of its files.
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
# tensorflow-datasets' names where they differ (tfds image_classification/cifar10_corrupted.py).
_TFDS_NAMES = {"glass_blur": "frosted_glass_blur", "elastic_transform": "elastic"}

SOURCE_HELP = "generated, cifar10c:PATH, tfds:cifar10_corrupted or tinyimagenetc:PATH"


class CorruptedSetError(DatasetUnavailableError):
    """A corrupted test set that is missing, misnamed or inconsistent."""


# ------------------------------------------------------------------ helpers
def _hsv(rgb):
    """RGB in [0, 1] -> HSV, as scikit-image's rgb2hsv (last axis: channels)."""
    value = rgb.max(-1)
    delta = rgb.max(-1) - rgb.min(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        saturation = np.where(delta == 0, 0.0, delta / np.where(value == 0, 1, value))
        safe = np.where(delta == 0, 1, delta)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        hue = np.where(r == value, (g - b) / safe, 0.0)
        hue = np.where(g == value, 2.0 + (b - r) / safe, hue)
        hue = np.where(b == value, 4.0 + (r - g) / safe, hue)
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    return np.stack([hue, saturation, value], axis=-1)


def _rgb(hsv):
    """HSV -> RGB in [0, 1], as scikit-image's hsv2rgb."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.astype(np.int64) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(hsv.shape, dtype=np.float64)
    for k, channels in enumerate(choices):
        mask = sector == k
        for c in range(3):
            out[..., c] = np.where(mask, channels[c], out[..., c])
    return out


def _gaussian_kernel3(sigma):
    """OpenCV's getGaussianKernel(3, sigma)."""
    weights = np.exp(-(np.arange(-1, 2) ** 2) / (2.0 * sigma**2))
    return weights / weights.sum()


def _disk(radius, alias_blur):
    """make_cifar_c.py's disk(): a normalized aliased disk on a 17 x 17 grid
    (radius <= 8), blurred by a 3 x 3 Gaussian (cv2.GaussianBlur, border
    reflect-101 = SciPy's "mirror")."""
    from scipy import ndimage

    grid = np.arange(-8, 9)
    x, y = np.meshgrid(grid, grid)
    disk = np.asarray(x**2 + y**2 <= radius**2, dtype=np.float32)
    disk /= disk.sum()
    kernel = _gaussian_kernel3(alias_blur)
    disk = ndimage.correlate1d(disk, kernel, axis=0, mode="mirror")
    return ndimage.correlate1d(disk, kernel, axis=1, mode="mirror")


def _plasma_fractal(rng, mapsize, wibbledecay):
    """Diamond-square height map in [0, 1] (make_cifar_c.py's plasma_fractal,
    after FLHerne/mapgen), `mapsize` a power of two, drawn from `rng`."""
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize, wibble = mapsize, 100.0

    def wibbled_mean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squares = corners + np.roll(corners, shift=-1, axis=0)
        squares += np.roll(squares, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(squares)
        centres = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbled_mean(top)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def _clipped_zoom(image, factor):
    """make_cifar_c.py's clipped_zoom: zoom the centre crop back to full size
    (scipy.ndimage.zoom, order 1)."""
    from scipy import ndimage

    h = image.shape[0]
    crop = int(np.ceil(h / factor))
    top = (h - crop) // 2
    zoomed = ndimage.zoom(image[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim : trim + h, trim : trim + h]


def _pil(image):
    from PIL import Image

    return Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)


def _from_pil(picture, channels):
    array = np.asarray(picture, dtype=np.float64)
    return array[..., None] if channels == 1 and array.ndim == 2 else array


# ---------------------------------------------- the corruptions (one image)
# Each takes x: (H, W, C) float64 in [0, 1] (or the uint8 image for the PIL
# ones), the severity's constant c and an rng; returns [0, 1] floats.
def _gaussian_noise(x, c, rng):
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1)


def _shot_noise(x, c, rng):
    return np.clip(rng.poisson(x * c) / c, 0, 1)


def _impulse_noise(x, c, rng):
    # skimage.util.random_noise(mode="s&p", amount=c, salt_vs_pepper=0.5).
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    return np.where(flipped, np.where(salted, 1.0, 0.0), x)


def _speckle_noise(x, c, rng):
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1)


def _gaussian_blur(x, c, rng):
    # skimage.filters.gaussian(sigma=c, multichannel=True): mode "nearest", truncate 4.
    from scipy import ndimage

    return np.clip(ndimage.gaussian_filter(x, sigma=(c, c, 0), mode="nearest", truncate=4.0), 0, 1)


def _defocus_blur(x, c, rng):
    # cv2.filter2D per channel (border reflect-101 = "mirror").
    from scipy import ndimage

    kernel = _disk(c[0], c[1])
    channels = [ndimage.correlate(x[..., d], kernel, mode="mirror") for d in range(x.shape[-1])]
    return np.clip(np.stack(channels, axis=-1), 0, 1)


def _zoom_blur(x, c, rng):
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for factor in c:
        out += _clipped_zoom(x, factor)
    return np.clip((x + out) / (len(c) + 1), 0, 1)


def _fog(x, c, rng):
    h, w = x.shape[:2]
    mapsize = 1 << int(np.ceil(np.log2(max(h, w, 2))))
    max_val = x.max()
    x = x + c[0] * _plasma_fractal(rng, mapsize, c[1])[:h, :w][..., None]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1)


def _contrast(x, c, rng):
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def _brightness(x, c, rng):
    hsv = _hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(_rgb(hsv), 0, 1)


def _saturate(x, c, rng):
    hsv = _hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return np.clip(_rgb(hsv), 0, 1)


def _jpeg_compression(image, c, rng):
    buffer = io.BytesIO()
    _pil(image).save(buffer, "JPEG", quality=c)
    from PIL import Image

    return _from_pil(Image.open(buffer), image.shape[-1]) / 255.0


def _pixelate(image, c, rng):
    from PIL import Image

    h, w = image.shape[:2]
    picture = _pil(image).resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return _from_pil(picture, image.shape[-1]) / 255.0


def _elastic_transform(x, c, rng):
    # A random affine map of three points (cv2.getAffineTransform +
    # cv2.warpAffine, bilinear, border reflect-101; here an exact bilinear
    # map_coordinates, OpenCV quantizes positions to 1/32 pixel), then a
    # smooth random displacement field (skimage gaussian, mode "reflect",
    # truncate 3) sampled bilinearly with mode "reflect".
    from scipy import ndimage

    size = x.shape[0]  # CIFAR-10-C: IMSIZE = 32, the constants scale with it
    alpha, sigma, affine = (size * k for k in c)
    shape = x.shape
    centre = np.float32(shape[:2]) // 2
    square = min(shape[:2]) // 3
    source = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    target = source + rng.uniform(-affine, affine, size=source.shape).astype(np.float32)
    # M maps source points (x, y) to target points: [x', y'] = A [x, y] + b.
    design = np.concatenate([source, np.ones((3, 1), np.float32)], axis=1).astype(np.float64)
    forward = np.linalg.solve(design, target.astype(np.float64)).T  # (2, 3)
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    src_x = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    src_y = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    x = np.stack(
        [ndimage.map_coordinates(x[..., d], [src_y, src_x], order=1, mode="mirror") for d in range(shape[2])],
        axis=-1,
    )
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha
    out = np.stack(
        [ndimage.map_coordinates(x[..., d], [rows + dy, cols + dx], order=1, mode="reflect")
         for d in range(shape[2])],
        axis=-1,
    )
    return np.clip(out, 0, 1)


# Per-severity constants (severity 1..5), verbatim from make_cifar_c.py at
# the commit above; elastic_transform's are its multiples of IMSIZE = 32.
_GENERATORS = {
    "gaussian_noise": (_gaussian_noise, [0.04, 0.06, 0.08, 0.09, 0.10]),
    "shot_noise": (_shot_noise, [500, 250, 100, 75, 50]),
    "impulse_noise": (_impulse_noise, [0.01, 0.02, 0.03, 0.05, 0.07]),
    "speckle_noise": (_speckle_noise, [0.06, 0.1, 0.12, 0.16, 0.2]),
    "gaussian_blur": (_gaussian_blur, [0.4, 0.6, 0.7, 0.8, 1]),
    "defocus_blur": (_defocus_blur, [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]),
    "zoom_blur": (_zoom_blur, [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                               np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)]),
    "fog": (_fog, [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)]),
    "brightness": (_brightness, [0.05, 0.1, 0.15, 0.2, 0.3]),
    "contrast": (_contrast, [0.75, 0.5, 0.4, 0.3, 0.15]),
    "elastic_transform": (_elastic_transform, [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                               (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]),
    "pixelate": (_pixelate, [0.95, 0.9, 0.85, 0.75, 0.65]),
    "jpeg_compression": (_jpeg_compression, [80, 65, 58, 50, 40]),
    "saturate": (_saturate, [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]),
}
_ON_UINT8 = ("jpeg_compression", "pixelate")  # PIL operations, on the uint8 image
_NEEDS_RGB = ("brightness", "saturate")
GENERATED_CORRUPTIONS = tuple(name for name in CORRUPTIONS if name in _GENERATORS)


def _check_corruption(corruption, available=CORRUPTIONS, source="generated"):
    if corruption not in available:
        known = " (a CIFAR-10-C corruption that it does not have)" if corruption in CORRUPTIONS else ""
        raise CorruptedSetError(
            f"unknown corruption {corruption!r} for {source}{known}; choose from {', '.join(available)}"
        )


def _check_severity(severity):
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise CorruptedSetError(f"severity must be an integer from 1 to 5; got {severity!r}")


def corrupt(images, corruption: str, severity: int, seed: int = 0, *, index_offset: int = 0) -> np.ndarray:
    """CIFAR-10-C's `corruption` at `severity`, generated.

    Args:
        images: (N, H, W, C) uint8 pixels (C = 3 for brightness and
            saturate; the constants are CIFAR-10's, for 32 x 32 images).
        corruption: one of `GENERATED_CORRUPTIONS`.
        severity: 1 (mildest) to 5.
        seed: the images' noise is a function of (seed, corruption, index).
        index_offset: the index of ``images[0]`` (corrupting a test set in
            chunks gives the images of one call).

    Returns:
        (N, H, W, C) uint8, truncated as CIFAR-10-C's ``np.uint8(...)``.

    Raises:
        CorruptedSetError: unknown corruption, bad severity or images.
    """
    _check_corruption(corruption, GENERATED_CORRUPTIONS)
    _check_severity(severity)
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise CorruptedSetError(f"images must be (N, H, W, C) uint8; got {images.dtype} of shape {images.shape}")
    if corruption in _NEEDS_RGB and images.shape[-1] != 3:
        raise CorruptedSetError(f"{corruption} needs RGB images (3 channels); got {images.shape[-1]}")
    function, constants = _GENERATORS[corruption]
    c = constants[severity - 1]
    number = CORRUPTIONS.index(corruption)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        rng = np.random.default_rng((int(seed), number, int(index_offset) + i))
        x = image if corruption in _ON_UINT8 else image / 255.0
        out[i] = (function(x, c, rng) * 255).astype(np.uint8)
    return out


# ------------------------------------------------------------------ sources
def parse_source(spec: str) -> tuple:
    """``(kind, path)`` of a source spec: ("generated", None), ("cifar10c",
    PATH), ("tfds", "cifar10_corrupted") or ("tinyimagenetc", PATH).

    Raises:
        CorruptedSetError: an unknown kind or a missing path.
    """
    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    if kind == "generated" and not rest:
        return "generated", None
    if kind in ("cifar10c", "tinyimagenetc"):
        if not rest:
            raise CorruptedSetError(f"corruption source {kind}: needs a PATH ({kind}:PATH)")
        return kind, os.path.expanduser(rest)
    if kind == "tfds" and rest == "cifar10_corrupted":
        return "tfds", rest
    raise CorruptedSetError(f"unknown corruption source {text!r}; use {SOURCE_HELP}")


def tfds_config_name(corruption: str, severity: int) -> str:
    """tensorflow-datasets' config of CIFAR-10-C's `corruption` at `severity`,
    e.g. ``glass_blur``, 3 -> ``frosted_glass_blur_3``."""
    _check_corruption(corruption)
    _check_severity(severity)
    return f"{_TFDS_NAMES.get(corruption, corruption)}_{severity}"


def _npy_header(path):
    """A .npy file memory-mapped (its header read, not its data)."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise CorruptedSetError(f"{path} is not a readable .npy file ({error})") from None
    return array


def source_corruptions(spec: str) -> tuple:
    """The corruptions `spec` provides, in CIFAR-10-C's order (a published
    source: those present on disk; tfds: all 19, prepared or not)."""
    kind, path = parse_source(spec)
    if kind == "generated":
        return GENERATED_CORRUPTIONS
    if kind == "tfds":
        return CORRUPTIONS
    if not os.path.isdir(path):
        raise CorruptedSetError(f"{kind} directory {path} does not exist or is not a directory")
    names = set(os.listdir(path))
    if kind == "cifar10c":
        found = tuple(c for c in CORRUPTIONS if f"{c}.npy" in names)
    else:
        found = tuple(sorted(n for n in names if os.path.isdir(os.path.join(path, n))))
    if not found:
        layout = "<corruption>.npy and labels.npy" if kind == "cifar10c" else "<corruption>/<severity>/<wnid>/<image>"
        raise CorruptedSetError(f"{kind} directory {path} holds no corruptions; expected {layout}")
    return found


def _cifar10c(path, corruption, severity):
    images = _npy_header(os.path.join(path, f"{corruption}.npy"))
    labels_path = os.path.join(path, "labels.npy")
    if not os.path.exists(labels_path):
        raise CorruptedSetError(f"cifar10c directory {path} has no labels.npy")
    labels = _npy_header(labels_path)
    where = os.path.join(path, f"{corruption}.npy")
    if images.ndim != 4 or images.dtype != np.uint8:
        raise CorruptedSetError(f"{where} must be (N, H, W, C) uint8; got {images.dtype} of shape {images.shape}")
    if len(images) % len(SEVERITIES):
        raise CorruptedSetError(f"{where} holds {len(images)} images, not 5 severities of equal size")
    if labels.ndim != 1 or len(labels) != len(images):
        raise CorruptedSetError(
            f"{labels_path} holds {labels.shape} labels but {where} holds {len(images)} images; they must match"
        )
    n = len(images) // len(SEVERITIES)
    rows = slice((severity - 1) * n, severity * n)
    return images[rows], np.asarray(labels[rows], dtype=np.int64)


def _tfds(corruption, severity, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise CorruptedSetError("tfds:cifar10_corrupted needs tensorflow-datasets (and TensorFlow)") from error
    from tf_selectivity.data.sources import _without_missing_dataset_info_warnings

    name = f"cifar10_corrupted/{tfds_config_name(corruption, severity)}"
    with _without_missing_dataset_info_warnings():  # it says what the error below says
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    if not prepared:
        raise CorruptedSetError(
            f"{name} is not prepared in {data_dir or 'the default tfds directory (~/tensorflow_datasets)'}; "
            "prepare it with tensorflow-datasets (it downloads CIFAR-10-C, 2.9 GB) or use cifar10c:PATH"
        )
    images, labels = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1, as_supervised=True))
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def _tinyimagenetc(path, corruption, severity, class_names):
    from tf_selectivity.data.sources import _BadImages, _decode_images

    folder = os.path.join(path, corruption, str(severity))
    if not os.path.isdir(folder):
        raise CorruptedSetError(
            f"tinyimagenetc: {folder} does not exist; expected {path}/<corruption>/<severity>/<wnid>/<image>")
    wnids = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    names = list(class_names) if class_names is not None else wnids
    unknown = sorted(set(wnids) - set(names))
    if unknown:
        raise CorruptedSetError(f"{folder} has classes the model does not know: {', '.join(unknown[:3])}")
    paths, labels = [], []
    for wnid in wnids:
        files = sorted(f for f in os.listdir(os.path.join(folder, wnid))
                       if f.lower().endswith((".jpeg", ".jpg", ".png")))
        paths += [os.path.join(folder, wnid, f) for f in files]
        labels += [names.index(wnid)] * len(files)
    if not paths:
        raise CorruptedSetError(f"{folder} holds no images")
    try:
        images, _ = _decode_images(paths)
    except _BadImages as error:
        raise CorruptedSetError(f"{folder}: cannot decode {error.bad[0][0]} ({error.bad[0][1]})") from None
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def load_corrupted(
    spec: str,
    corruption: str,
    severity: int,
    *,
    clean_images=None,
    clean_labels=None,
    seed: int = 0,
    data_dir: str | None = None,
    class_names: Sequence[str] | None = None,
    max_samples: int | None = None,
    indices=None,
) -> tuple:
    """One corrupted test set: ``(images, labels)``.

    Args:
        spec: the source (`parse_source`).
        corruption: which corruption.
        severity: its severity (1-5).
        clean_images: the clean test set's images (for ``generated``:
            corrupted with `seed`; for the others: the shape the images must
            have).
        clean_labels: the clean test set's labels.
        data_dir: tensorflow-datasets' directory (``tfds:``).
        class_names: Tiny ImageNet-C: the model's classes (wnids) in label
            order (default: the sorted folders).
        max_samples: only the first N images.
        indices: only the images at these positions of the test set (for
            ``generated``: positions in `clean_images`, which are the test
            set or this part of it; for the published sets: positions in
            the published set, which is in the test set's order).
            Applied before `max_samples`.

    Returns:
        (N, H, W, C) uint8 images (memory-mapped for ``cifar10c:``) and (N,)
        int64 labels.

    Raises:
        CorruptedSetError: a missing set, unknown corruption, bad severity,
            labels or shapes that do not match.
    """
    kind, path = parse_source(spec)
    _check_severity(severity)
    if kind == "generated":
        _check_corruption(corruption, GENERATED_CORRUPTIONS, spec)
        if clean_images is None or clean_labels is None:
            raise CorruptedSetError("generated corruptions need the clean test images and labels")
        if indices is not None:
            clean_images, clean_labels = np.asarray(clean_images)[indices], np.asarray(clean_labels)[indices]
        stop = max_samples or len(clean_labels)
        return corrupt(np.asarray(clean_images[:stop]), corruption, severity, seed), np.asarray(clean_labels[:stop])
    _check_corruption(corruption, CORRUPTIONS if kind == "tfds" else source_corruptions(spec), spec)
    if kind == "cifar10c":
        images, labels = _cifar10c(path, corruption, severity)
    elif kind == "tfds":
        images, labels = _tfds(corruption, severity, data_dir)
    else:
        images, labels = _tinyimagenetc(path, corruption, severity, class_names)
    if clean_images is not None and tuple(images.shape[1:]) != tuple(np.shape(clean_images)[1:]):
        raise CorruptedSetError(
            f"{spec} {corruption} has images of shape {tuple(images.shape[1:])} but the test set's are "
            f"{tuple(np.shape(clean_images)[1:])}"
        )
    wanted = len(clean_images) if clean_images is not None and indices is None else None
    if indices is not None and len(indices):
        wanted = int(np.max(indices)) + 1
    if wanted is not None and len(images) < wanted:
        raise CorruptedSetError(
            f"{spec} {corruption} holds {len(images):,} images per severity but the test set has more "
            f"({wanted:,} at least): a published corrupted set holds every test image once per severity, in the "
            "test set's order")
    if indices is not None:
        images, labels = images[np.asarray(indices)], labels[np.asarray(indices)]
    if max_samples:
        images, labels = images[:max_samples], labels[:max_samples]
    return images, labels


def _tfds_data_dir(data_dir: str | None) -> str:
    """tensorflow-datasets' directory: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _tfds_prepared(corruption: str, severity: int, data_dir: str | None) -> bool:
    """Whether tensorflow-datasets prepared `corruption` at `severity`, read from its folders:
    ``<data_dir>/cifar10_corrupted/<config>/<version>/dataset_info.json`` (what
    ``builder.is_prepared()`` looks for), without importing tensorflow-datasets."""
    folder = os.path.join(_tfds_data_dir(data_dir), "cifar10_corrupted", tfds_config_name(corruption, severity))
    if not os.path.isdir(folder):
        return False
    return any(os.path.isfile(os.path.join(folder, version, "dataset_info.json")) for version in os.listdir(folder))


def _check_labels(path: str, num_classes: int) -> None:
    """labels.npy of a CIFAR-10-C directory: integer class indices of the model's classes."""
    labels_path = os.path.join(path, "labels.npy")
    labels = _npy_header(labels_path)
    if not np.issubdtype(labels.dtype, np.integer):
        raise CorruptedSetError(f"{labels_path} must hold integer class indices; got {labels.dtype}")
    if len(labels):
        low, high = int(np.min(labels)), int(np.max(labels))
        if low < 0 or high >= num_classes:
            raise CorruptedSetError(
                f"{labels_path} holds labels from {low} to {high} but the runs have {num_classes} classes "
                f"(0 to {num_classes - 1})")


def check_source(spec: str, corruptions: Sequence[str] | None = None, image_shape=None, *, test_size=None,
                 num_classes=None, severities: Sequence[int] | None = None, data_dir: str | None = None) -> tuple:
    """Checks a source before any analysis: the corruptions exist and each
    published set fits the test set and the model. Reads only .npy headers,
    labels and folder names.

    Checks, where the arguments are given: a published set's images are
    uint8 of `image_shape`, five severities of `test_size` images each (the
    test split, once per severity, in its order), with one integer label per
    image in ``[0, num_classes)``; tensorflow-datasets has prepared every
    corruption at every one of `severities` (in `data_dir`); Tiny
    ImageNet-C has every severity, with at most `num_classes` classes.

    Returns:
        The corruptions to use (`corruptions`, or all the source has).

    Raises:
        CorruptedSetError: the first problem.
    """
    kind, path = parse_source(spec)
    available = source_corruptions(spec)
    chosen = tuple(corruptions) if corruptions else available
    for corruption in chosen:
        _check_corruption(corruption, available, spec)
    if kind == "cifar10c":
        for corruption in chosen:
            images, _ = _cifar10c(path, corruption, 1)
            where = os.path.join(path, corruption + ".npy")
            if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
                raise CorruptedSetError(
                    f"{where} has images of shape {tuple(images.shape[1:])} but the runs take {tuple(image_shape)}"
                )
            if test_size is not None and len(images) != test_size:
                raise CorruptedSetError(
                    f"{where} holds {len(SEVERITIES)} x {len(images):,} images but the test set has {test_size:,}: "
                    "a published corrupted set holds every test image once per severity, in the test set's order"
                )
        if num_classes is not None:
            _check_labels(path, num_classes)
    elif kind == "tfds":
        missing = [tfds_config_name(c, s) for c in chosen for s in (severities or SEVERITIES)
                   if not _tfds_prepared(c, s, data_dir)]
        if missing:
            more = f" (and {len(missing) - 1} more of the {len(chosen) * len(severities or SEVERITIES)} asked for)" \
                if len(missing) > 1 else ""
            raise CorruptedSetError(
                f"cifar10_corrupted/{missing[0]}{more} is not prepared in {_tfds_data_dir(data_dir)}; prepare it with "
                "tensorflow-datasets (it downloads CIFAR-10-C, 2.9 GB) or use cifar10c:PATH"
            )
    elif kind == "tinyimagenetc":
        for corruption in chosen:
            for severity in severities or SEVERITIES:
                folder = os.path.join(path, corruption, str(severity))
                if not os.path.isdir(folder):
                    raise CorruptedSetError(
                        f"tinyimagenetc: {folder} does not exist; expected {path}/<corruption>/<severity>/<wnid>/<image>")
                classes = [d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))]
                if num_classes is not None and len(classes) > num_classes:
                    raise CorruptedSetError(
                        f"{folder} has {len(classes)} classes but the runs have {num_classes}")
    return chosen
