"""CIFAR-10-C corruptions (`tf_selectivity.data.corruptions`).

Generated corruptions against plain-NumPy / PIL references where the
operation has a closed form, deterministic per seed, independent of the
chunk they are made in, and ordered by severity; the published layouts
(CIFAR-10-C's .npy directory, Tiny ImageNet-C's folders) read from small
fixtures made here; tensorflow-datasets' config names and its absence.
"""

import os

import numpy as np
import pytest

from tf_selectivity.data import corruptions as C


@pytest.fixture(scope="module")
def images():
    # Smooth images with texture (a ramp plus noise), CIFAR's size.
    rng = np.random.default_rng(0)
    ramp = np.linspace(30, 220, 32)[None, :, None, None] * np.ones((6, 32, 32, 3)) * 0.5
    ramp = ramp + np.linspace(10, 100, 32)[None, None, :, None] * 0.5
    return np.clip(ramp + rng.normal(0, 20, ramp.shape), 0, 255).astype(np.uint8)


def test_every_generated_corruption_keeps_shape_and_dtype_and_repeats_per_seed(images):
    for name in C.GENERATED_CORRUPTIONS:
        a = C.corrupt(images[:2], name, 3, seed=7)
        assert a.shape == images[:2].shape and a.dtype == np.uint8, name
        np.testing.assert_array_equal(a, C.corrupt(images[:2], name, 3, seed=7), err_msg=name)


def test_random_corruptions_depend_on_the_seed_not_on_the_chunk(images):
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "fog", "elastic_transform"):
        whole = C.corrupt(images, name, 4, seed=1)
        assert not np.array_equal(whole, C.corrupt(images, name, 4, seed=2)), name
        chunk = C.corrupt(images[3:], name, 4, seed=1, index_offset=3)
        np.testing.assert_array_equal(whole[3:], chunk, err_msg=name)


def test_severities_are_ordered(images):
    # Mean absolute change from the clean image grows with severity. Not for
    # saturate (severity 3 scales saturation by 1.5, milder than 2's 0.1) nor
    # elastic_transform (its affine part shrinks as the elastic part grows):
    # both as make_cifar_c.py's constants are.
    for name in C.GENERATED_CORRUPTIONS:
        if name in ("saturate", "elastic_transform"):
            continue
        change = [np.abs(C.corrupt(images, name, s, seed=0).astype(float) - images).mean() for s in C.SEVERITIES]
        assert all(b > a for a, b in zip(change, change[1:])), (name, change)


def test_closed_forms_equal_numpy(images):
    x = images / 255.0
    # contrast: (x - mean) * c + mean, per image and channel; severity 2: c = 0.5.
    means = x.mean(axis=(1, 2), keepdims=True)
    expected = (np.clip((x - means) * 0.5 + means, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(C.corrupt(images, "contrast", 2), expected)
    # gaussian_noise severity 5: scale 0.10, image i's stream (seed, corruption number, i).
    number = C.CORRUPTIONS.index("gaussian_noise")
    noise = np.stack([np.random.default_rng((3, number, i)).normal(size=x.shape[1:], scale=0.10)
                      for i in range(len(x))])
    expected = (np.clip(x + noise, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(C.corrupt(images, "gaussian_noise", 5, seed=3), expected)
    # impulse_noise: about c of the values become 0 or 255.
    out = C.corrupt(np.full((20, 32, 32, 3), 128, np.uint8), "impulse_noise", 5)
    assert abs(np.mean(out != 128) - 0.07) < 0.005 and set(np.unique(out)) == {0, 128, 255}


def test_hsv_corruptions_equal_matplotlibs_hsv(images):
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    x = images / 255.0
    hsv = rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)  # brightness, severity 5
    expected = np.clip(hsv_to_rgb(hsv), 0, 1) * 255
    got = C.corrupt(images, "brightness", 5).astype(float)
    assert np.abs(got - expected).max() <= 1.0  # truncation to uint8
    hsv = rgb_to_hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * 2.5 + 0.2, 0, 1)  # saturate, severity 5
    expected = np.clip(hsv_to_rgb(hsv), 0, 1) * 255
    assert np.abs(C.corrupt(images, "saturate", 5).astype(float) - expected).max() <= 1.0


def test_pil_corruptions_equal_pil(images):
    import io

    from PIL import Image

    picture = Image.fromarray(images[0])
    pixelated = np.asarray(picture.resize((20, 20), Image.BOX).resize((32, 32), Image.BOX))
    np.testing.assert_array_equal(C.corrupt(images[:1], "pixelate", 5)[0], pixelated)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=40)
    np.testing.assert_array_equal(C.corrupt(images[:1], "jpeg_compression", 5)[0], np.asarray(Image.open(buffer)))


def test_gaussian_blur_equals_a_numpy_convolution(images):
    # sigma 1 (severity 5), kernel radius 4 (truncate 4), edges repeated ("nearest").
    x = images[0] / 255.0
    taps = np.exp(-np.arange(-4, 5) ** 2 / 2.0)
    taps /= taps.sum()
    padded = np.pad(x, ((4, 4), (4, 4), (0, 0)), mode="edge")
    rows = sum(w * padded[k : k + 32] for k, w in enumerate(taps))
    blurred = sum(w * rows[:, k : k + 32] for k, w in enumerate(taps))
    expected = (np.clip(blurred, 0, 1) * 255).astype(np.uint8)
    got = C.corrupt(images[:1], "gaussian_blur", 5)[0]
    assert np.abs(got.astype(int) - expected).max() <= 1  # float summation order at a truncation edge


def test_bad_arguments_are_named(images):
    with pytest.raises(C.CorruptedSetError, match="unknown corruption 'rain'"):
        C.corrupt(images, "rain", 1)
    with pytest.raises(C.CorruptedSetError, match="unknown corruption 'frost' for generated"):
        C.corrupt(images, "frost", 1)
    for severity in (0, 6, 2.5, True):
        with pytest.raises(C.CorruptedSetError, match="severity must be an integer from 1 to 5"):
            C.corrupt(images, "contrast", severity)
    with pytest.raises(C.CorruptedSetError, match="uint8"):
        C.corrupt(images.astype(np.float32), "contrast", 1)
    with pytest.raises(C.CorruptedSetError, match="unknown corruption source"):
        C.parse_source("imagenetc:/x")
    with pytest.raises(C.CorruptedSetError, match="needs a PATH"):
        C.parse_source("cifar10c:")


def _cifar10c(root, n=4, shape=(32, 32, 3), labels=None, names=("gaussian_noise", "fog")):
    os.makedirs(root, exist_ok=True)
    for k, name in enumerate(names):
        # Pixel value = 10 * severity + k: which severity each row is.
        data = np.concatenate([np.full((n, *shape), 10 * s + k, np.uint8) for s in C.SEVERITIES])
        np.save(os.path.join(root, f"{name}.npy"), data)
    np.save(os.path.join(root, "labels.npy"), labels if labels is not None else np.tile(np.arange(n), 5).astype(np.uint8))
    return str(root)


def test_cifar10c_layout_reads_each_severity_memory_mapped(tmp_path):
    root = _cifar10c(tmp_path / "c")
    spec = f"cifar10c:{root}"
    assert C.source_corruptions(spec) == ("gaussian_noise", "fog")  # CIFAR-10-C's order
    for severity in C.SEVERITIES:
        images, labels = C.load_corrupted(spec, "fog", severity)
        assert isinstance(images, np.memmap) and images.shape == (4, 32, 32, 3)
        assert np.all(images == 10 * severity + 1)
        np.testing.assert_array_equal(labels, np.arange(4))
        assert labels.dtype == np.int64
    images, _ = C.load_corrupted(spec, "gaussian_noise", 2, max_samples=3)
    assert images.shape[0] == 3 and np.all(images == 20)
    assert C.check_source(spec, image_shape=(32, 32, 3)) == ("gaussian_noise", "fog")


def test_cifar10c_mismatches_are_refused(tmp_path):
    spec = f"cifar10c:{_cifar10c(tmp_path / 'labels', labels=np.zeros(19, np.uint8))}"
    with pytest.raises(C.CorruptedSetError, match=r"holds \(19,\) labels but .*gaussian_noise.npy holds 20 images"):
        C.load_corrupted(spec, "gaussian_noise", 1)
    with pytest.raises(C.CorruptedSetError, match="labels"):
        C.check_source(spec)
    spec = f"cifar10c:{_cifar10c(tmp_path / 'shape', shape=(16, 16, 3))}"
    with pytest.raises(C.CorruptedSetError, match=r"shape \(16, 16, 3\) but the runs take \(32, 32, 3\)"):
        C.check_source(spec, image_shape=(32, 32, 3))
    with pytest.raises(C.CorruptedSetError, match=r"shape \(16, 16, 3\) but the test set's are \(32, 32, 3\)"):
        C.load_corrupted(spec, "fog", 1, clean_images=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(C.CorruptedSetError, match="unknown corruption 'contrast'.*it does not have"):
        C.check_source(spec, ["contrast"])
    with pytest.raises(C.CorruptedSetError, match="does not exist"):
        C.source_corruptions(f"cifar10c:{tmp_path / 'nope'}")


def test_tinyimagenetc_layout(tmp_path):
    from PIL import Image

    root = tmp_path / "tic"
    for severity in (1, 2):
        for label, wnid in enumerate(("n01", "n02")):
            folder = root / "fog" / str(severity) / wnid
            folder.mkdir(parents=True)
            for j in range(2):
                Image.fromarray(np.full((8, 8, 3), 50 * severity + label + j, np.uint8)).save(folder / f"{j}.png")
    spec = f"tinyimagenetc:{root}"
    assert C.source_corruptions(spec) == ("fog",)
    images, labels = C.load_corrupted(spec, "fog", 2)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    np.testing.assert_array_equal(images[:, 0, 0, 0], [100, 101, 101, 102])
    # The model's class order, not the folders'.
    _, labels = C.load_corrupted(spec, "fog", 1, class_names=["n00", "n02", "n01"])
    np.testing.assert_array_equal(labels, [2, 2, 1, 1])
    with pytest.raises(C.CorruptedSetError, match="does not exist"):
        C.load_corrupted(spec, "fog", 3)


def test_tfds_config_names_and_a_clear_error_when_absent(tmp_path):
    assert C.tfds_config_name("glass_blur", 3) == "frosted_glass_blur_3"
    assert C.tfds_config_name("elastic_transform", 1) == "elastic_1"
    assert C.tfds_config_name("gaussian_noise", 5) == "gaussian_noise_5"
    with pytest.raises(C.CorruptedSetError, match="severity"):
        C.tfds_config_name("fog", 6)
    with pytest.raises(C.CorruptedSetError, match="cifar10_corrupted/fog_2 is not prepared in"):
        C.load_corrupted("tfds:cifar10_corrupted", "fog", 2, data_dir=str(tmp_path))
