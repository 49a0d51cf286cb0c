"""Data loaders: the notebook's wine split, CIFAR-10 from JPEG folders or the python release,
any CSV table."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets.cifar import CIFAR10_CLASSES, load_cifar10
from training.datasets.location import (
    DATA_DIR_ENV,
    DataNotFoundError,
    portable_source,
    resolve_data_dir,
)
from training.datasets.table import TableError, read_table, split_table
from training.datasets.wine import load_wine, read_uci_csv


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_data_dir().parts[-2:] == ("shared", "data")


def test_wine_split_is_the_notebooks(data_dir: Path) -> None:
    split = load_wine(data_dir)
    assert split.x_train.shape == (4163, 11) and split.x_test.shape == (735, 11)
    assert split.x_train.dtype == np.float32 and split.y_test.shape == (735,)
    # The notebook's split of X_data.npy, redone independently.
    from sklearn.model_selection import train_test_split

    x = np.load(data_dir / "wine" / "X_data.npy")
    y = np.load(data_dir / "wine" / "y_data.npy")
    _, x_test, _, y_test = train_test_split(x, y, test_size=0.15, random_state=42)
    np.testing.assert_array_equal(split.x_test, x_test)
    np.testing.assert_array_equal(split.y_test, y_test.reshape(-1))


def test_uci_csv_holds_the_same_wines(data_dir: Path, tmp_path: Path) -> None:
    x_csv, y_csv = read_uci_csv(data_dir / "wine" / "winequality-white.csv")
    x_npy = np.load(data_dir / "wine" / "X_data.npy")
    assert x_csv.shape == x_npy.shape and y_csv.shape == (len(x_npy),)
    # Same rows, different order: compare as sorted tables.
    by_row = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(by_row(x_csv), by_row(x_npy), rtol=1e-6)
    # With only the CSV present the loader falls back to it.
    (tmp_path / "wine").mkdir()
    (tmp_path / "wine" / "winequality-white.csv").write_bytes(
        (data_dir / "wine" / "winequality-white.csv").read_bytes()
    )
    split = load_wine(tmp_path)
    assert split.source.name == "winequality-white.csv"
    assert len(split.x_train) + len(split.x_test) == len(x_npy)


def test_missing_wine_data_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"X_data\.npy .*winequality-white\.csv"):
        load_wine(tmp_path)


def test_cifar_jpeg_folders(data_dir: Path) -> None:
    test = load_cifar10("test", data_dir, per_class=3)
    assert test.images.shape == (30, 32, 32, 3) and test.images.dtype == np.uint8
    np.testing.assert_array_equal(test.labels, np.repeat(np.arange(10), 3))
    first_cat = sorted((data_dir / "cifar10" / "test" / "cat").glob("*.jpg"))[0]
    expected = np.asarray(Image.open(first_cat).convert("RGB"))
    np.testing.assert_array_equal(test.images[CIFAR10_CLASSES.index("cat") * 3], expected)
    assert test.fingerprint == load_cifar10("test", data_dir, per_class=3).fingerprint


def _write_release(folder: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=20)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)
        written[name] = data
    return written


def test_cifar_python_release(tmp_path: Path) -> None:
    written = _write_release(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    test = load_cifar10("test", tmp_path)
    assert test.images.shape == (20, 32, 32, 3)
    # Rows are 1024 red, then green, then blue values, each row-major.
    raw = written["test_batch"][0]
    np.testing.assert_array_equal(test.images[0, :, :, 1], raw[1024:2048].reshape(32, 32))
    train = load_cifar10("train", tmp_path)
    assert len(train.labels) == 100


def test_cifar_release_refuses_pickled_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    buffer = io.BytesIO()
    pickle.dump({b"data": Exploit(), b"labels": []}, buffer)
    (folder / "test_batch").write_bytes(buffer.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_cifar10("test", tmp_path)


def test_missing_cifar_data_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_cifar10("train", tmp_path)


def test_portable_source_names_no_build_machine_path(tmp_path: Path) -> None:
    (tmp_path / "wine").mkdir()
    assert portable_source(tmp_path / "wine" / "x.csv", tmp_path) == "wine/x.csv"
    assert portable_source(tmp_path.parent / "elsewhere.csv", tmp_path) == "elsewhere.csv"


def test_uci_wine_csv_as_a_table(data_dir: Path) -> None:
    path = data_dir / "wine" / "winequality-white.csv"
    table = read_table(path, target="quality")
    # Semicolons and quoted names, found without being told.
    assert table.features[:2] == ("fixed acidity", "volatile acidity") and len(table.features) == 11
    x, y = read_uci_csv(path)
    np.testing.assert_array_equal(table.x, x)
    np.testing.assert_array_equal(table.y, y)
    assert table.dropped_rows == () and table.ignored_columns == ()


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_table_delimiters_and_default_features(delimiter: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 3))
    lines = [delimiter.join(['"a b"', "label", "c", "y"])]
    lines += [
        delimiter.join([f"{a:.4f}", f"name {i}", f"{c:.4f}", f"{t:.4f}"])
        for i, (a, c, t) in enumerate(values)
    ]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n\n")  # a trailing blank line is no row
    table = read_table(path, target="y")
    assert table.features == ("a b", "c") and table.target == "y"
    assert table.ignored_columns == ("label",)
    np.testing.assert_allclose(table.x, values[:, :2], atol=1e-4)
    np.testing.assert_allclose(table.y, values[:, 2], atol=1e-4)
    chosen = read_table(path, target="a b", features=["y"])
    assert chosen.features == ("y",) and chosen.x.shape == (30, 1)


def test_table_split_is_the_wine_notebooks(tmp_path: Path) -> None:
    from sklearn.model_selection import train_test_split

    path = tmp_path / "t.csv"
    rows = [f"{i},{i * i % 7}" for i in range(40)]
    path.write_text("\n".join(["x,y", *rows]))
    split = split_table(read_table(path, target="y"))
    ids = np.arange(40, dtype=np.float32)
    _, test_ids = train_test_split(ids, test_size=0.15, random_state=42)
    np.testing.assert_array_equal(split.x_test[:, 0], test_ids)
    assert len(split.x_train) == 34


def test_table_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i},{i % 5}" for i in range(30)]
    rows[6] = "6,NA"
    # Header (row 1), three rows, a blank row (5), then rows[3:]: rows[6] is on row 9.
    path.write_text("\n".join(["x,y", *rows[:3], "", *rows[3:]]))
    with pytest.raises(TableError, match=r"row 9, column 'y': missing value 'NA'"):
        read_table(path, target="y")
    table = read_table(path, target="y", drop_invalid=True)
    assert table.dropped_rows == (9,) and len(table.y) == 29


def test_table_needs_enough_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,2\n2,3\n3,5\n")
    with pytest.raises(TableError, match="3 usable rows; at least 20"):
        read_table(path, target="y")
    with pytest.raises(DataNotFoundError, match="no CSV file"):
        read_table(tmp_path / "absent.csv", target="y")
