import dataclasses
import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import spuriouslab.data.images as images
from spuriouslab.data import SplitSpec, build_split
from spuriouslab.data.borders import add_border, nominal_alpha, scale_pixels, spurious_queries
from spuriouslab.data.images import DataError, array_checksum, load_images, read_cifar_batch, read_idx, write_idx


def _mnist_dir(root, n_train=60, n_test=30, compress=True, h=28):
    rng = np.random.default_rng(0)
    d = root / "mnist"
    d.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, h, h), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, h, h), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for stem, a in arrays.items():
        write_idx(d / (stem + (".gz" if compress else "")), a, compress=compress)
    return d, arrays


@pytest.fixture(autouse=True)
def _fresh_cache():
    images._load_cached.cache_clear()
    yield
    images._load_cached.cache_clear()


@pytest.mark.parametrize("compress", [True, False])
def test_idx_roundtrip_and_mnist_layout(tmp_path, compress):
    d, arrays = _mnist_dir(tmp_path, compress=compress)
    data = load_images("mnist", tmp_path)
    assert data.shape == (28, 28, 1) and data.x_train.dtype == np.uint8 and data.source == str(d)
    np.testing.assert_array_equal(data.x_train[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert "no reference checksum" in data.verified and len(data.checksum) == 64
    assert load_images("mnist", tmp_path) is data  # decoded once per process
    assert not data.x_train.flags.writeable


def test_truncated_and_corrupt_idx_files(tmp_path):
    a = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "x.idx", a)
    raw = (tmp_path / "x.idx").read_bytes()
    (tmp_path / "trunc.idx").write_bytes(raw[:-10])
    with pytest.raises(DataError, match=r"trunc.idx: truncated or padded IDX data"):
        read_idx(tmp_path / "trunc.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(DataError, match=r"cut.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "cut.gz")


def test_mnist_wrong_shape_or_labels(tmp_path):
    d, _ = _mnist_dir(tmp_path, h=20)
    with pytest.raises(DataError, match=r"mnist images must be \(28, 28, 1\)"):
        load_images("mnist", tmp_path)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.full(60, 12, dtype=np.uint8), compress=True)
    images._load_cached.cache_clear()
    with pytest.raises(DataError, match="labels outside 0..9"):
        load_images("mnist", tmp_path)


def _cifar_dir(root, n=20):
    rng = np.random.default_rng(1)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [*images.CIFAR_TRAIN, "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(d / name, "wb") as fh:
            pickle.dump(batch, fh)
    return d


def test_cifar_pickle_batches(tmp_path):
    d = _cifar_dir(tmp_path)
    data = load_images("cifar10", tmp_path)
    assert data.x_train.shape == (100, 32, 32, 3) and data.x_test.shape == (20, 32, 32, 3)
    with open(d / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh)
    # channel-first rows of 1024 -> (32, 32, 3)
    np.testing.assert_array_equal(data.x_train[0, :, :, 0].ravel(), raw[b"data"][0, :1024])
    np.testing.assert_array_equal(data.x_train[0, :, :, 2].ravel(), raw[b"data"][0, 2048:])
    (d / "data_batch_3").write_bytes((d / "data_batch_3").read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_3: corrupt, truncated or unsafe pickle"):
        read_cifar_batch(d / "data_batch_3")
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 100), dtype=np.uint8), b"labels": [0, 1, 2]}, fh)
    with pytest.raises(DataError, match=r"test_batch: data must be a uint8 array \(N, 3072\)"):
        read_cifar_batch(d / "test_batch")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for split in ["train", "test"]:
        for cls in ["cat", "dog"]:
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png"
                )
    data = load_images("folder", tmp_path)
    assert (
        data.classes == ["cat", "dog"]
        and data.x_train.shape == (6, 6, 6, 3)
        and list(data.y_train) == [0] * 3 + [1] * 3
    )


def test_known_checksums():
    # fixed literals, written down once: a change in how checksums are computed, or in the reference values
    # the loader compares with, fails here
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert array_checksum(a) == "208ad48e12fd6fd6bf1a54d5a15ffad828843d198fd7139e057f23fdf0f8fc84"
    assert array_checksum(a.reshape(4, 3)) != array_checksum(a)  # the shape is part of the checksum
    assert images.DATASETS["digits"].checksum == "9398599d78319d47ce7064b26026966369c358277a2bf175d63653b3bba4d006"
    assert (
        images.DATASETS["fashion-mnist"].checksum == "abf4cdc7be0d9c228398ac0cf5e497a09c7e922e721564006ac1a5942474e36e"
    )
    digits = load_images("digits")
    assert digits.checksum == "9398599d78319d47ce7064b26026966369c358277a2bf175d63653b3bba4d006"
    assert "match" in digits.verified
    assert digits.x_train.shape == (1198, 8, 8, 1) and digits.x_train.max() == 255


def test_reference_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    _mnist_dir(tmp_path)
    monkeypatch.setitem(images.DATASETS, "mnist", dataclasses.replace(images.DATASETS["mnist"], checksum="0" * 64))
    with pytest.raises(DataError, match="do not match the reference checksum"):
        load_images("mnist", tmp_path)


def test_borders_exact_pixels_and_queries():
    imgs = np.arange(2 * 2 * 2, dtype=np.uint8).reshape(2, 2, 2, 1) + 1
    padded = add_border(imgs, 1, "uniform", np.random.default_rng(7))
    expected = np.random.default_rng(7).integers(0, 256, size=(2, 4, 4, 1), dtype=np.uint8)
    expected[:, 1:3, 1:3] = imgs
    np.testing.assert_array_equal(padded, expected)
    const = add_border(np.zeros((1, 2, 2, 3), np.uint8), 2, "constant:150,50,50", np.random.default_rng(0))
    assert const.shape == (1, 6, 6, 3) and tuple(const[0, 0, 0]) == (150, 50, 50) and const[0, 2, 2].sum() == 0
    q = spurious_queries(padded, 2, 2, 1, "zero")
    assert (q[:, 1:3, 1:3] == 0).all()
    np.testing.assert_array_equal(q[:, 0], padded[:, 0])
    s = spurious_queries(padded, 2, 2, 1, "swap", np.random.default_rng(3))
    np.testing.assert_array_equal(s[0, 1:3, 1:3], padded[1, 1:3, 1:3])  # the other sample's core
    np.testing.assert_array_equal(s[:, 0], padded[:, 0])
    assert nominal_alpha(28, 28, 10) == pytest.approx(1520 / 2304)
    assert nominal_alpha(32, 32, 8) == pytest.approx(1 - 1024 / 2304)
    x = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_allclose(scale_pixels(x, "unit", x), [[0, 1]])
    np.testing.assert_allclose(scale_pixels(x, "standard", x), [[-1, 1]])


def test_binary_split_labels_nesting_and_alpha():
    spec = SplitSpec(source="digits", classes=(1, 7), n_test=40, border=4)
    s = build_split(spec, seed=0, n_train=30)
    assert s.Z.shape == (30, 256) and s.alpha == pytest.approx(1 - 64 / 256) and s.sample_shape == (16, 16, 1)
    assert set(np.unique(s.g)) == {-1.0, 1.0} and s.n_classes == 0
    data = load_images("digits")
    assert set(np.unique(data.y_train[np.isin(data.y_train, [1, 7])])) == {1, 7}
    small = build_split(spec, 0, 10)
    np.testing.assert_array_equal(small.Z, s.Z[:10])
    core = np.zeros((16, 16), bool)
    core[4:12, 4:12] = True
    assert (s.Z_query.reshape(30, 16, 16)[:, core] == 0).all()
    # the core of each training image is a digit of its class, its label +1 exactly for class 7
    cores = s.Z.reshape(30, 16, 16)[:, 4:12, 4:12].reshape(30, -1)
    labels = {
        tuple(np.asarray(img, dtype=np.uint8).ravel()): y
        for img, y in zip(data.x_train.reshape(len(data.x_train), -1), data.y_train, strict=True)
    }
    for row, g in zip(cores, s.g, strict=True):
        assert labels[tuple(row.astype(np.uint8))] == (7 if g > 0 else 1)


def test_swap_queries_take_another_training_core_and_keep_the_border():
    spec = SplitSpec(source="digits", classes=(1, 7), n_test=20, border=4, query="swap")
    s = build_split(spec, seed=3, n_train=12)
    x, q = s.Z.reshape(12, 16, 16), s.Z_query.reshape(12, 16, 16)
    border = np.ones((16, 16), bool)
    border[4:12, 4:12] = False
    np.testing.assert_array_equal(q[:, border], x[:, border])
    for i in range(12):  # the core is another sample's, never its own
        owners = [j for j in range(12) if np.array_equal(q[i, 4:12, 4:12], x[j, 4:12, 4:12])]
        assert owners and i not in owners or np.array_equal(x[i, 4:12, 4:12], x[owners[0], 4:12, 4:12])
    assert not np.array_equal(q[:, 4:12, 4:12], x[:, 4:12, 4:12])


def test_all_class_split_for_networks_keeps_class_indices():
    spec = SplitSpec(
        source="digits", classes=None, n_test=50, border=4, scaling="unit", streams="images.nets", test_queries=False
    )
    s = build_split(spec, seed=1, n_train=100)
    assert s.n_classes == 10 and s.g.dtype == np.int64 and set(np.unique(s.g)) <= set(range(10))
    assert s.Z_test_query is None and s.Z.max() <= 1.0 and s.Z.min() >= 0.0


def test_digits_memorization_through_the_cli(cli, tmp_path):
    code, stdout, err = cli(
        "run",
        "memorization",
        "--set",
        "data=digits",
        "--set",
        "n_train=10,100",
        "--set",
        "width=500",
        "--set",
        "seeds=2",
        "--out",
        tmp_path / "d",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "d" / "results.parquet")
    assert set(df.alpha) == {0.75} and set(df.d) == {256} and (df.data == "digits").all()
    small, big = df[df.n_train == 10], df[df.n_train == 100]
    assert small.spurious_acc.mean() > 0.9 and big.test_acc.mean() > small.test_acc.mean()
    assert df.gamma_pred.isna().all()  # the Gaussian theory is not applied to images


@pytest.mark.skipif(
    images.locate("fashion-mnist") is None, reason="Fashion-MNIST not installed (Debian dataset-fashion-mnist)"
)
def test_fashion_mnist_from_debian_through_the_cli(cli, tmp_path):
    code, _, err = cli(
        "run",
        "memorization",
        "--set",
        "data=fashion-mnist",
        "--set",
        "n_train=20",
        "--set",
        "n_test=100",
        "--set",
        "width=300",
        "--set",
        "seeds=1",
        "--set",
        "model=rf",
        "--out",
        tmp_path / "f",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "f" / "results.parquet")
    assert set(df.d) == {48 * 48} and df.alpha.iloc[0] == pytest.approx(1520 / 2304, abs=1e-6)


def test_data_cli_info_and_offline_fetch(cli, tmp_path, monkeypatch):
    code, stdout, _ = cli("data", "info", "--data-root", tmp_path)
    assert code == 0 and "digits" in stdout and "mnist          missing" in stdout
    import pooch

    def offline(url, output_file, pooch_instance=None, check_only=False):
        raise OSError("no network")

    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: offline(a[0], None))
    code, _, stderr = cli("data", "fetch", "mnist", "--data-root", tmp_path)
    assert code == 2 and "cannot download" in stderr and "put train-images-idx3-ubyte.gz" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not list((tmp_path / "mnist").glob("*"))
    code, _, stderr = cli(
        "run", "memorization", "--set", "data=mnist", "--data-root", tmp_path, "--out", tmp_path / "r"
    )
    assert code == 2 and "mnist: not found" in stderr and not (tmp_path / "r").exists()


def test_fetch_verifies_checksums_and_writes_atomically(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _, arrays = _mnist_dir(src)
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (src / "mnist").iterdir()}
    calls = []

    def local(url, output_file, pooch_instance=None, check_only=False):  # a pooch downloader over local files
        calls.append(url)
        data = (src / "mnist" / url.rsplit("/", 1)[-1]).read_bytes()
        if isinstance(output_file, str | os.PathLike):
            Path(output_file).write_bytes(data)
        else:
            output_file.write(data)

    monkeypatch.setitem(
        images.DATASETS,
        "mnist",
        dataclasses.replace(images.DATASETS["mnist"], sources=("https://example.invalid/mnist/", files)),
    )
    where = images.fetch("mnist", tmp_path / "root", downloader=local)
    assert len(calls) == 4
    images.fetch("mnist", tmp_path / "root", downloader=local)  # cached: verified, not downloaded again
    assert len(calls) == 4
    assert sorted(p.name for p in where.iterdir()) == sorted(files)
    np.testing.assert_array_equal(
        load_images("mnist", tmp_path / "root").x_test[..., 0], arrays["t10k-images-idx3-ubyte"]
    )
    bad = dict(files, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    monkeypatch.setitem(
        images.DATASETS,
        "mnist",
        dataclasses.replace(images.DATASETS["mnist"], sources=("https://example.invalid/mnist/", bad)),
    )
    (where / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="checksum mismatch"):
        images.fetch("mnist", tmp_path / "root", downloader=local)
    assert sorted(p.name for p in where.iterdir()) == sorted(set(files) - {"t10k-labels-idx1-ubyte.gz"})


def test_bad_image_settings(cli, tmp_path):
    for args, needle in [
        (["--set", "classes=1,1"], "pair of distinct classes"),
        (["--set", "classes=1,12"], "digits has classes 0..9"),
        (["--set", "n_train=5000"], "n_train: got 5000"),
        (["--set", "border_content=purple"], "border_content: got 'purple'"),
        (["--set", "correlation=0.5"], "correlated spurious parts exist only"),
        (["--set", "scaling=log"], "scaling: got 'log'"),
    ]:
        code, _, stderr = cli(
            "run",
            "memorization",
            "--set",
            "data=digits",
            *args,
            "--out",
            tmp_path / "x",
            "--set",
            "width=100",
            "--no-progress",
        )
        assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, (args, stderr)
