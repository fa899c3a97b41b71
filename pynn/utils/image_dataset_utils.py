"""`image_dataset_from_directory`: a folder of images (one sub-folder per class) as a Dataset.

Images are decoded with Pillow (imported when the first image is read) and resized in NumPy
the way Keras 3's `ops.image.resize` does on its torch backend (half-pixel centres, no
antialiasing), so the pixel values equal Keras's.
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pynn.utils import dataset_utils as du

__all__ = ["image_dataset_from_directory", "load_image", "resize_image"]

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}


def _pil_image():
    try:
        from PIL import Image
    except ImportError as exc:   # pragma: no cover - Pillow is in the test extra
        raise ImportError("image_dataset_from_directory needs Pillow to decode images: "
                          "pip install pillow") from exc
    return Image


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.75, as PyTorch's bicubic)."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _axis_matrix(n_in: int, n_out: int, interpolation: str) -> np.ndarray:
    """The (n_out, n_in) matrix taking one axis of the image to its resized values."""
    scale = n_in / n_out
    dst = np.arange(n_out, dtype=np.float64)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    if interpolation == "nearest":
        # the input pixel whose area holds the output pixel's centre
        m[rows, np.minimum(np.floor((dst + 0.5) * scale).astype(np.int64), n_in - 1)] = 1.0
    elif interpolation == "bilinear":
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)   # half-pixel centres
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        frac = src - lo
        np.add.at(m, (rows, lo), 1.0 - frac)
        np.add.at(m, (rows, np.minimum(lo + 1, n_in - 1)), frac)
    else:   # "bicubic"
        src = (dst + 0.5) * scale - 0.5
        base = np.floor(src).astype(np.int64)
        for k in range(-1, 3):   # four taps, clamped at the borders
            np.add.at(m, (rows, np.clip(base + k, 0, n_in - 1)), _cubic(src - (base + k)))
    return m


def resize_image(image: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear",
                 crop_to_aspect_ratio: bool = False,
                 pad_to_aspect_ratio: bool = False) -> np.ndarray:
    """Resizes one float32 image of shape (height, width, channels) to `size`.

    `crop_to_aspect_ratio` first cuts the largest centred window with the target's aspect
    ratio; `pad_to_aspect_ratio` first pads with zeros, evenly on both sides, to it.
    """
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("crop_to_aspect_ratio, pad_to_aspect_ratio: at most one may be True")
    img = np.asarray(image, dtype=np.float32)
    th, tw = size
    h, w = img.shape[:2]
    if crop_to_aspect_ratio:
        ch = max(min(h, int(float(w * th) / tw)), 1)
        cw = max(min(w, int(float(h * tw) / th)), 1)
        top, left = int(float(h - ch) / 2), int(float(w - cw) / 2)
        img = img[top:top + ch, left:left + cw]
    elif pad_to_aspect_ratio:
        ph = max(h, int(float(w * th) / tw))
        pw = max(w, int(float(h * tw) / th))
        top, left = int(float(ph - h) / 2), int(float(pw - w) / 2)
        img = np.pad(img, ((top, top), (left, left), (0, 0)))
    h, w = img.shape[:2]
    rows = _axis_matrix(h, th, interpolation)
    cols = _axis_matrix(w, tw, interpolation)
    out = np.einsum("oh,hwc->owc", rows, img.astype(np.float64))
    return np.einsum("pw,owc->opc", cols, out).astype(np.float32)


def load_image(path: str, num_channels: int = 3) -> np.ndarray:
    """One image file as float32 (height, width, channels) with values in [0, 255]."""
    Image = _pil_image()
    try:
        with Image.open(path) as img:
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[num_channels]
            if img.mode != mode and not (num_channels == 1 and img.mode in ("I;16", "I")):
                img = img.convert(mode)
            arr = np.asarray(img, dtype=np.float32)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _check_size(image_size: Any) -> tuple[int, int]:
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, (list, tuple)) or len(image_size) != 2
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and int(d) > 0
                       for d in image_size)):
        raise ValueError(f"image_size: expected (height, width), two positive integers, got "
                         f"{image_size!r}")
    return int(image_size[0]), int(image_size[1])


def image_dataset_from_directory(
        directory: str | os.PathLike[str], labels: str | Sequence[int] | None = "inferred",
        label_mode: str | None = "int", class_names: Sequence[str] | None = None,
        color_mode: str = "rgb", batch_size: int | None = 32,
        image_size: tuple[int, int] = (256, 256), shuffle: bool = True,
        seed: int | None = None, validation_split: float | None = None,
        subset: str | None = None, interpolation: str = "bilinear",
        follow_links: bool = False, crop_to_aspect_ratio: bool = False,
        pad_to_aspect_ratio: bool = False, data_format: str | None = None,
        verbose: bool = True) -> Any:
    """A `Dataset` of the images in a folder, labelled by sub-folder (Keras 3's function).

    ```
    directory/
        cats/  a.png  b.jpg ...
        dogs/  c.png ...
    ```
    gives labels 0 for cats and 1 for dogs (sub-folders in alphabetical order).

    Args:
        directory: the folder. With ``labels="inferred"`` it holds one sub-folder per class;
            files below those (any depth) with a .bmp, .gif, .jpeg, .jpg or .png ending are
            the samples.
        labels: "inferred" (from the sub-folders), None (images only), or a list of integer
            labels, one per file in sorted path order.
        label_mode: "int" (int32 labels), "categorical" (float32 one-hot), "binary" (float32
            of shape (n, 1); exactly two classes) or None (images only).
        class_names: with inferred labels, the sub-folders to use, in label order.
        color_mode: "rgb", "rgba" or "grayscale" (3, 4 or 1 channels).
        batch_size: images per batch, or None to yield single images.
        image_size: (height, width) every image is resized to.
        shuffle: shuffle the file list (seeded) and reshuffle at each pass; False keeps the
            alphabetical order.
        seed: the shuffling seed; required with `validation_split` and `shuffle`.
        validation_split: fraction of the images held out for validation (the last ones of
            the seeded order, as in Keras).
        subset: "training", "validation" or "both" (returns `[train, validation]`).
        interpolation: "bilinear", "nearest" or "bicubic", the methods of Keras's torch
            backend (its TensorFlow-only "area", Lanczos and Gaussian kernels are not offered).
        follow_links: follow symbolic links to folders.
        crop_to_aspect_ratio: centre-crop to the target's aspect ratio before resizing.
        pad_to_aspect_ratio: zero-pad to the target's aspect ratio before resizing.
        data_format: "channels_last" (or None); pynn's images are channels-last.
        verbose: print how many files and classes were found.

    Returns:
        A `pynn.utils.Dataset` yielding `(images, labels)` with float32 images of shape
        `(batch, height, width, channels)` and values in [0, 255] (just `images` without
        labels), with `class_names` and `file_paths`; `[train, val]` for ``subset="both"``.
        The file order, labels and split equal Keras's for the same seed; Keras's per-pass
        reshuffle uses a buffer of `8 * batch_size` images, pynn's permutes them all.
    """
    du.check_labels_arg(labels, class_names)
    du.check_label_mode(label_mode)
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    if color_mode not in _CHANNELS:
        raise ValueError(f"color_mode: expected 'rgb', 'rgba' or 'grayscale', got "
                         f"{color_mode!r}")
    channels = _CHANNELS[color_mode]
    size = _check_size(image_size)
    if not isinstance(interpolation, str) or interpolation.lower() not in INTERPOLATIONS:
        raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}, got "
                         f"{interpolation!r}")
    interpolation = interpolation.lower()
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("crop_to_aspect_ratio, pad_to_aspect_ratio: at most one may be True")
    if data_format not in (None, "channels_last"):
        raise ValueError(f"data_format: pynn's images are channels_last, got {data_format!r}")
    du.check_validation_split_arg(validation_split, subset, shuffle, seed)
    du.check_seed(seed)
    if seed is None:
        seed = int(np.random.randint(10**6))
    paths, found, names = du.index_directory(directory, labels, ALLOWLIST_FORMATS,
                                             class_names, shuffle, seed, follow_links, verbose)
    if label_mode == "binary" and len(names or []) != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, got class_names="
                         f"{names}")

    def load(batch_paths: list[str]) -> np.ndarray:
        out = np.empty((len(batch_paths),) + size + (channels,), dtype=np.float32)
        for k, p in enumerate(batch_paths):
            img = load_image(p, channels)
            out[k] = resize_image(img, size, interpolation, crop_to_aspect_ratio,
                                  pad_to_aspect_ratio)
        return out

    return du.loader_datasets(os.fspath(directory), paths, found, names, label_mode, load,
                              batch_size, shuffle, seed, validation_split, subset, "images",
                              verbose)
