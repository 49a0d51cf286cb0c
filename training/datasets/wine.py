"""Wine Quality (white): the reference notebook's arrays or the original UCI CSV.

Looks in ``<data_dir>/wine/`` for ``X_data.npy`` and ``y_data.npy`` (the
notebook's shuffled rows), else for the UCI file ``winequality-white.csv``.
The split is the notebook's: ``train_test_split(test_size=0.15, random_state=42)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from training.datasets.location import DataNotFoundError, fingerprint, resolve_data_dir

# The eleven inputs in UCI column order, by the names the served models (and so the HTTP API)
# use for them; the target is the UCI file's last column.
WINE_FEATURES: tuple[str, ...] = (
    "fixed_acidity",
    "volatile_acidity",
    "citric_acid",
    "residual_sugar",
    "chlorides",
    "free_sulfur_dioxide",
    "total_sulfur_dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
)
WINE_TARGET = "quality"

TEST_SIZE = 0.15
SPLIT_SEED = 42
UCI_CSV = "winequality-white.csv"


@dataclass(frozen=True)
class WineSplit:
    x_train: np.ndarray  # float32, N × 11, raw units
    y_train: np.ndarray  # float32, N
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.x_train, self.y_train, self.x_test, self.y_test)


def load_wine(data_dir: str | Path | None = None) -> WineSplit:
    """The notebook's train/test split of the white-wine table."""
    folder = resolve_data_dir(data_dir) / "wine"
    x_path, y_path, csv_path = folder / "X_data.npy", folder / "y_data.npy", folder / UCI_CSV
    if x_path.is_file() and y_path.is_file():
        x, y = np.load(x_path, allow_pickle=False), np.load(y_path, allow_pickle=False)
        source = folder
    elif csv_path.is_file():
        x, y = read_uci_csv(csv_path)
        source = csv_path
    else:
        raise DataNotFoundError(
            f"no Wine Quality data in {folder}: put X_data.npy and y_data.npy (the reference "
            f"notebook's arrays) or the UCI file {UCI_CSV} there, or point --data-dir / "
            "$BAYES_DATA_DIR at a folder that has a wine/ subfolder with them"
        )
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if x.ndim != 2 or x.shape[1] != len(WINE_FEATURES) or len(x) != len(y):
        raise ValueError(
            f"expected N×{len(WINE_FEATURES)} features and N targets, "
            f"got {x.shape} and {y.shape} from {source}"
        )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    return WineSplit(x_train, y_train, x_test, y_test, source)


def read_uci_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features and quality from the UCI semicolon-separated file (quoted header)."""
    table = np.loadtxt(path, delimiter=";", skiprows=1, dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != len(WINE_FEATURES) + 1:
        raise ValueError(f"{path}: expected {len(WINE_FEATURES) + 1} columns, got {table.shape}")
    return table[:, :-1], table[:, -1]
