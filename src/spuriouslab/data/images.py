"""Image data: loaders for the real file formats, discovery, verification, fetching.

Formats: MNIST-style IDX (gzipped or raw; MNIST, Fashion-MNIST), the CIFAR-10 python pickle batches
(``cifar-10-batches-py/``), scikit-learn's bundled 8x8 digits (offline), and an image-folder layout
``root/{train,test}/<class>/*.png|jpg`` (Pillow).  Images stay uint8 ``(N, H, W, C)`` and each data set is
decoded once per process.

Where data lives, in order: ``--data-root`` (config ``data_root``), ``$SPURIOUSLAB_DATA``, the cache
``~/.cache/spuriouslab``, and Debian's ``/usr/share/datasets/fashion-mnist`` (package dataset-fashion-mnist).
Inside a root, MNIST lives in ``mnist/``, Fashion-MNIST in ``fashion-mnist/``, CIFAR-10 in
``cifar-10-batches-py/``; an image folder is given as ``data_root`` itself.

Verification: shapes, dtypes and label ranges always; then a SHA-256 of the decoded arrays, compared with the
known value where we have one, and the canonical MD5 of each downloaded archive.  A truncated or corrupt file
is a one-line :class:`DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from spuriouslab.errors import ConfigError


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
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
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
        raise DataError(f"{path}: truncated or padded IDX data ({len(raw) - header} bytes for shape {dims}, "
                        f"expected {expected})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> None:
    """Write an IDX file (used by the tests' fixtures and by anyone exporting data)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    a = np.ascontiguousarray(array)
    data = bytes([0, 0, codes[a.dtype], a.ndim]) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes()
    Path(path).write_bytes(gzip.compress(data) if compress else data)


def _idx_file(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).exists():
            return directory / name
    return directory / (stem + ".gz")


MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def read_mnist_dir(directory: Path, name: str) -> ImageData:
    arrays = [read_idx(_idx_file(directory, stem)) for stem in MNIST_FILES]
    x_train, y_train, x_test, y_test = arrays
    for imgs, labels, split in [(x_train, y_train, "train"), (x_test, y_test, "t10k")]:
        if imgs.ndim != 3 or imgs.dtype != np.uint8:
            raise DataError(f"{directory}: {split} images must be uint8 (N, H, W), got {imgs.dtype} {imgs.shape}")
        if labels.ndim != 1 or len(labels) != len(imgs):
            raise DataError(f"{directory}: {split} labels ({labels.shape}) do not match images ({imgs.shape})")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DataError(f"{directory}: {split} labels outside 0..9")
    classes = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)]
    return ImageData(name, x_train[..., None], y_train.astype(np.int64), x_test[..., None], y_test.astype(np.int64),
                     classes, source=str(directory))


FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------- CIFAR
# What a CIFAR-10 python batch holds: a dict of bytes keys, lists, and numpy arrays (rebuilt by these functions,
# under their names in numpy 1 and numpy 2).  Anything else in a pickle is refused: loading data never runs code.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that admits only numpy array reconstruction and plain builtin values."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a data file may hold only arrays, "
                                     "lists, dicts, numbers and strings")


# Errors a corrupt pickle can raise anywhere in the unpickler or numpy's reconstruction
_CORRUPT = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, MemoryError, OverflowError, LookupError, SystemError, RecursionError, UnicodeError,
            struct.error)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
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
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise DataError(f"{path}: corrupt, truncated or unsafe pickle ({type(exc).__name__}: {detail})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: not a CIFAR-10 batch (no data/labels entries)")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: data must be a uint8 array (N, 3072), got {type(data).__name__} "
                        f"{getattr(data, 'dtype', '')} {shape}")
    if not isinstance(labels, list | np.ndarray) or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        raise DataError(f"{path}: labels must be a list of N integers in 0..9")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(data) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path}: labels must be N = {len(data)} integers in 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def read_cifar_dir(directory: Path) -> ImageData:
    parts = [read_cifar_batch(directory / f) for f in CIFAR_TRAIN]
    x_test, y_test = read_cifar_batch(directory / "test_batch")
    return ImageData("cifar10", np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                     x_test, y_test, CIFAR_CLASSES, source=str(directory))


# ---------------------------------------------------------------------------------- digits, folders
def load_digits_data() -> ImageData:
    """scikit-learn's bundled 8x8 digits (0..16) as uint8 0..255; a fixed 2/3 - 1/3 split by index."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.clip(np.round(d.images * (255 / 16)), 0, 255).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int64)
    cut = (2 * len(imgs)) // 3
    return ImageData("digits", imgs[:cut], labels[:cut], imgs[cut:], labels[cut:], [str(i) for i in range(10)],
                     source="sklearn.datasets.load_digits")


def read_image_split(directory: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``directory/<class>/*.png|jpg|bmp`` of the given classes (label = index in ``classes``), uint8
    (N, H, W, C); every class needs a folder, every image the same size, every file must decode."""
    from PIL import Image, UnidentifiedImageError

    imgs, labels = [], []
    for ci, cname in enumerate(classes):
        if not (directory / cname).is_dir():
            raise DataError(f"{directory}: class {cname!r} (present in train/) is missing; every class needs "
                            f"{directory.name}/{cname}/")
        for f in sorted((directory / cname).glob("*")):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                continue
            try:
                with Image.open(f) as im:
                    imgs.append(np.asarray(im.convert("RGB" if im.mode not in ("L",) else "L")))
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError,
                    zlib.error, struct.error, Image.DecompressionBombError) as exc:
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


# ------------------------------------------------------------------------------- discovery, loading
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
SUBDIR = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar-10-batches-py"}
EXPECTED_SHAPE = {"mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1), "cifar10": (32, 32, 3), "digits": (8, 8, 1)}
# SHA-256 of the decoded arrays (x_train, y_train, x_test, y_test), see array_checksum.  Computed here from
# Debian's dataset-fashion-mnist files (whose gzip streams differ from upstream's, the decoded IDX bytes do
# not) and from scikit-learn's bundled digits.  MNIST and CIFAR-10 are checked by their archives' MD5s on fetch.
KNOWN_CHECKSUMS = {
    "fashion-mnist": "abf4cdc7be0d9c228398ac0cf5e497a09c7e922e721564006ac1a5942474e36e",
    "digits": "9398599d78319d47ce7064b26026966369c358277a2bf175d63653b3bba4d006",
}
IMAGE_DATASETS = ["digits", "mnist", "fashion-mnist", "cifar10", "folder"]


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spuriouslab"


def search_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    roots = []
    if data_root:
        roots.append(Path(data_root).expanduser())
    if os.environ.get("SPURIOUSLAB_DATA"):
        roots.append(Path(os.environ["SPURIOUSLAB_DATA"]).expanduser())
    roots.append(default_cache())
    return roots


def locate(name: str, data_root: str | os.PathLike | None = None) -> Path | None:
    """The directory holding data set ``name``, or None."""
    if name == "folder":
        return Path(data_root) if data_root and Path(data_root).is_dir() else None
    for root in search_roots(data_root):
        for candidate in (root / SUBDIR[name], root / name, root):
            probe = candidate / "data_batch_1" if name == "cifar10" else _idx_file(candidate, MNIST_FILES[0])
            if probe.exists():
                return candidate
    if name == "fashion-mnist" and _idx_file(DEBIAN_FASHION, MNIST_FILES[0]).exists():
        return DEBIAN_FASHION
    return None


def where_to_put(name: str, data_root=None) -> str:
    root = search_roots(data_root)[0]
    if name == "cifar10":
        return f"put data_batch_1..5 and test_batch (cifar-10-batches-py) into {root / SUBDIR[name]}"
    return f"put {', '.join(f + '.gz' for f in MNIST_FILES)} into {root / SUBDIR[name]}"


def array_checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@lru_cache(maxsize=8)
def _load_cached(name: str, data_root: str | None) -> ImageData:
    if name == "digits":
        data = load_digits_data()
    else:
        where = locate(name, data_root)
        if where is None:
            hint = "give data_root=DIR (root/train/<class>/*.png)" if name == "folder" else where_to_put(name, data_root)
            fetch = "" if name == "folder" else f", or run `spuriouslab data fetch {name}`"
            raise DataError(f"{name}: not found; {hint}{fetch}")
        if name == "cifar10":
            data = read_cifar_dir(where)
        elif name == "folder":
            data = read_image_folder(where)
        else:
            data = read_mnist_dir(where, name)
    if name in EXPECTED_SHAPE and data.shape != EXPECTED_SHAPE[name]:
        raise DataError(f"{data.source}: {name} images must be {EXPECTED_SHAPE[name]}, got {data.shape}")
    data.checksum = array_checksum(data.x_train, data.y_train, data.x_test, data.y_test)
    known = KNOWN_CHECKSUMS.get(name)
    if known is None:
        data.verified = "shapes, dtypes and labels checked (no reference checksum for the decoded arrays)"
    elif data.checksum == known:
        data.verified = "decoded arrays match the reference checksum"
    else:
        raise DataError(f"{data.source}: decoded {name} arrays do not match the reference checksum "
                        f"(got {data.checksum[:16]}..., expected {known[:16]}...); the files are altered or corrupt")
    for a in (data.x_train, data.x_test, data.y_train, data.y_test):
        a.setflags(write=False)
    return data


def load_images(name: str, data_root: str | os.PathLike | None = None) -> ImageData:
    """Load (once per process) and verify an image data set."""
    if name not in IMAGE_DATASETS:
        raise DataError(f"data: got {name!r}; allowed: synthetic, {', '.join(IMAGE_DATASETS)}")
    return _load_cached(name, str(data_root) if data_root else None)


def to_float_chw(images: np.ndarray, device: str = "cpu"):
    """uint8 images (N, H, W, C) as a float tensor (N, C, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0).to(device)


def image_shape(name: str, data_root: str | os.PathLike | None = None) -> tuple[int, int, int]:
    """``(H, W, C)`` of a data set's images: known for the named sets, read from the files for a folder."""
    if name in EXPECTED_SHAPE:
        return EXPECTED_SHAPE[name]
    return load_images(name, data_root).shape


# ------------------------------------------------------------------------------------------- fetch
SOURCES = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
}


def fetch(name: str, data_root: str | os.PathLike | None = None, progress: bool = True, downloader=None) -> Path:
    """Download ``name`` from its canonical location into the first search root with ``pooch`` (MD5-checked,
    written atomically, cached: a file already there with the right checksum is not downloaded again).
    Offline, fails at once with a one-line DataError saying where to put which files.  ``downloader`` is passed
    to ``pooch.retrieve`` (the tests give one that reads local files)."""
    import pooch

    if name not in SOURCES:
        raise DataError(f"data fetch: got {name!r}; allowed: {', '.join(SOURCES)}")
    base, files = SOURCES[name]
    root = search_roots(data_root)[0]
    target = root / SUBDIR[name] if name != "cifar10" else root
    target.mkdir(parents=True, exist_ok=True)
    for fname, md5 in files.items():
        try:
            pooch.retrieve(base + fname, known_hash=f"md5:{md5}", fname=fname, path=target,
                           progressbar=progress and downloader is None, downloader=downloader)
        except ValueError as exc:  # pooch: the downloaded file's hash does not match
            raise DataError(f"{base + fname}: checksum mismatch after download; try again ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - network errors of any kind (requests, OS, timeouts)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"data fetch {name}: cannot download {base + fname} ({reason}); offline, "
                            f"{where_to_put(name, data_root)}") from None
    if name == "cifar10":
        final = root / SUBDIR[name]
        if not (final / "data_batch_1").exists():
            tmpdir = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-extract."))
            with tarfile.open(target / "cifar-10-python.tar.gz") as tar:
                tar.extractall(tmpdir, filter="data")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmpdir / SUBDIR[name], final)
            shutil.rmtree(tmpdir, ignore_errors=True)
        target = final
    _load_cached.cache_clear()
    return target


def info(data_root: str | os.PathLike | None = None) -> list[dict]:
    """What is found where, and whether it verifies."""
    rows = []
    for name in ["digits", "mnist", "fashion-mnist", "cifar10"]:
        try:
            d = load_images(name, data_root)
            rows.append({"name": name, "status": "ok", "where": d.source, "train": len(d.x_train),
                         "test": len(d.x_test), "shape": d.shape, "checksum": d.checksum[:16], "verified": d.verified})
        except DataError as exc:
            rows.append({"name": name, "status": "missing" if "not found" in str(exc) else "error",
                         "where": "", "detail": str(exc)})
    return rows
