"""Any numeric table in a CSV file: named feature columns and one target column.

The first row names the columns (quoted names allowed); the delimiter, a comma, semicolon or
tab, is the one that splits that header into the most columns, so both an ordinary CSV and
the UCI wine file (semicolons, quoted names) read without flags. Rows are numbered as a
spreadsheet shows them (the header is row 1), so an error points at the cell to fix.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from training.datasets.location import DataNotFoundError, fingerprint

# Shared with the wine split, so a table's test rows are chosen as the notebook chose wine's.
from training.datasets.wine import SPLIT_SEED, TEST_SIZE

DELIMITERS = (",", ";", "\t")
# Cells read as "no value" (R's NA, pandas' NaN, UCI's "?"), compared lower-case.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
# Fewer rows than this leave too few for a test, a validation and a training split.
MIN_ROWS = 20
HEADER_ROW = 1


class TableError(ValueError):
    """The table cannot be used as asked; the message names the file, row and column."""


@dataclass(frozen=True)
class Table:
    x: np.ndarray  # float32, N × F, in ``features`` order
    y: np.ndarray  # float32, N
    features: tuple[str, ...]
    target: str
    source: Path
    dropped_rows: tuple[int, ...]  # spreadsheet row numbers skipped as invalid
    ignored_columns: tuple[str, ...]  # non-numeric columns left out of the default features

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.x, self.y)


@dataclass(frozen=True)
class TableSplit:
    """The held-out test rows and the rest, chosen as :func:`training.datasets.wine.load_wine`
    chooses them: ``train_test_split(test_size=0.15, random_state=42)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


SPLIT_DESCRIPTION = f"train_test_split(X, y, test_size={TEST_SIZE}, random_state={SPLIT_SEED})"


def split_table(table: Table) -> TableSplit:
    """The table's fixed train/test split (the same for training and for re-scoring)."""
    x_train, x_test, y_train, y_test = train_test_split(
        table.x, table.y, test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    return TableSplit(x_train, y_train, x_test, y_test)


def read_table(
    path: str | Path,
    *,
    target: str,
    features: Sequence[str] | None = None,
    drop_invalid: bool = False,
) -> Table:
    """The ``target`` column and the ``features`` columns of the CSV file at ``path``.

    ``features`` defaults to every other numeric column (one whose filled cells are mostly
    numbers). A missing, non-numeric or infinite value in a used column is an error naming
    its row and column, unless ``drop_invalid``, which skips such rows (listed in
    ``dropped_rows``). A constant feature is an error: it carries nothing to learn from, and
    its standardisation would divide by zero.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    columns = _choose_columns(path, header, rows, target, features)
    features = tuple(header[i] for i in columns[1:])
    values: list[list[float]] = []
    dropped: list[int] = []
    for row_number, cells in rows:
        parsed = _parse_row(path, header, columns, row_number, cells)
        if isinstance(parsed, str):
            if not drop_invalid:
                raise TableError(parsed)
            dropped.append(row_number)
        else:
            values.append(parsed)
    if len(values) < MIN_ROWS:
        dropped_note = f" ({len(dropped)} invalid rows dropped)" if dropped else ""
        raise TableError(
            f"{path}: {len(values)} usable rows{dropped_note}; at least {MIN_ROWS} are needed "
            "for the test, validation and training splits"
        )
    table = np.asarray(values, dtype=np.float32)
    x, y = table[:, 1:], table[:, 0]
    check_not_constant(x, features, f"{path}: feature column")
    check_not_constant(y[:, None], (target,), f"{path}: target column")
    ignored = tuple(
        name
        for i, name in enumerate(header)
        if name != target and name not in features and not _mostly_numeric(rows, i)
    )
    return Table(x, y, features, target, path, tuple(dropped), ignored)


def check_not_constant(x: np.ndarray, names: Sequence[str], what: str) -> None:
    """Raise :class:`TableError` naming the first column of ``x`` that holds one value only."""
    for i, name in enumerate(names):
        if len(x) and np.all(x[:, i] == x[0, i]):
            raise TableError(
                f"{what} {name!r} is constant ({x[0, i]:g} in every row): it carries no "
                "information to learn from; leave it out (name the others with --features)"
            )


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header's names and every non-blank data row, with its spreadsheet row number."""
    if not path.is_file():
        raise DataNotFoundError(f"no CSV file {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableError(f"{path} is not a UTF-8 text file: {exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise TableError(f"{path}: the first row must name the columns; it is empty")
    delimiter = max(DELIMITERS, key=lambda d: len(next(csv.reader([lines[0]], delimiter=d))))
    reader = csv.reader(lines, delimiter=delimiter)
    header = [name.strip() for name in next(reader)]
    if len(header) < 2:
        raise TableError(
            f"{path}: the header names one column ({header[0]!r}); expected a target and at "
            f"least one feature, separated by one of {', '.join(map(repr, DELIMITERS))}"
        )
    for i, name in enumerate(header):
        if not name:
            raise TableError(f"{path}: column {i + 1} of the header (row 1) has no name")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise TableError(f"{path}: the header names columns {duplicates} more than once")
    rows = []
    for cells in reader:
        if any(cell.strip() for cell in cells):
            rows.append((reader.line_num, cells))
    return header, rows


def _choose_columns(
    path: Path,
    header: list[str],
    rows: list[tuple[int, list[str]]],
    target: str,
    features: Sequence[str] | None,
) -> list[int]:
    """Column indices: the target's first, then the features' in order."""
    available = ", ".join(header)
    if target not in header:
        raise TableError(f"{path}: no column {target!r} for the target; the columns: {available}")
    if features is None:
        chosen = [
            name for i, name in enumerate(header) if name != target and _mostly_numeric(rows, i)
        ]
        if not chosen:
            raise TableError(f"{path}: no numeric column besides the target {target!r}")
    else:
        chosen = list(features)
        unknown = [name for name in chosen if name not in header]
        if unknown:
            raise TableError(f"{path}: no column {unknown} among the columns: {available}")
        if target in chosen:
            raise TableError(f"{path}: the target {target!r} cannot be a feature as well")
        if not chosen:
            raise TableError(f"{path}: no features named")
        repeated = sorted({name for name in chosen if chosen.count(name) > 1})
        if repeated:
            raise TableError(f"{path}: features {repeated} are named more than once")
    return [header.index(target), *(header.index(name) for name in chosen)]


def _mostly_numeric(rows: list[tuple[int, list[str]]], column: int) -> bool:
    """Whether most filled cells of ``column`` are numbers: a feature with a typo or two
    still counts (and its bad cells are reported), a text column does not."""
    filled = [
        cells[column].strip()
        for _, cells in rows
        if column < len(cells) and cells[column].strip().lower() not in MISSING
    ]
    numbers = sum(_is_number(cell) for cell in filled)
    return bool(filled) and 2 * numbers > len(filled)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_row(
    path: Path, header: list[str], columns: list[int], row_number: int, cells: list[str]
) -> list[float] | str:
    """The row's values in ``columns`` order, or the message saying why it is invalid."""
    if len(cells) != len(header):
        return (
            f"{path}: row {row_number} has {len(cells)} cells; the header (row {HEADER_ROW}) "
            f"names {len(header)} columns"
        )
    values = []
    for column in columns:
        cell = cells[column].strip()
        where = f"{path}: row {row_number}, column {header[column]!r}"
        if cell.lower() in MISSING:
            return f"{where}: missing value{f' {cell!r}' if cell else ''}"
        try:
            value = float(cell)
        except ValueError:
            return f"{where}: {cell!r} is not a number"
        if not math.isfinite(value):
            return f"{where}: {cell!r} is not a finite number"
        values.append(value)
    return values
