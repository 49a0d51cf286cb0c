"""Command line for people who don't write code: a CSV of wines in, a CSV with uncertainty out.

    python -m service.cli wine winequality-white.csv --output predictions.csv
    python -m service.cli cifar cat.jpg ship.png

``wine`` reads the UCI file as published (semicolons, quoted names with spaces, a ``quality``
column) or a comma CSV whose header uses the API's names, and writes the input's columns plus
mean, std, the interval and the epistemic/aleatoric split. ``cifar`` prints a table. Exit
codes: 0 done, 1 the service is down or failed, 2 the input (a file, a row, an option) is
wrong; each error is one line that says where.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from pydantic import BaseModel

from models.wine import WINE_FEATURES
from service.client import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    Client,
    ServiceError,
    ServiceUnavailableError,
)
from service.schemas import CifarResponse, ClassUncertainty, WineResponse

__all__ = ["InputFileError", "WineTable", "main", "read_wine_csv"]

EXIT_SERVICE: Final = 1
EXIT_INPUT: Final = 2

# Header names compare without case, spacing or underscores: "free sulfur dioxide" (UCI),
# "free_sulfur_dioxide" (the API) and "Free Sulfur Dioxide" name the same column.
_FEATURE_KEYS: Final = {re.sub(r"[\s_]+", "", name).lower(): name for name in WINE_FEATURES}


class InputFileError(Exception):
    """The user's file cannot be read as asked; the message names the row and column."""


@dataclass(frozen=True)
class WineTable:
    """A wine CSV as read: its header and cells as written, and the features as numbers."""

    header: list[str]
    rows: list[list[str]]
    features: list[list[float]]  # per row, in WINE_FEATURES order


def read_wine_csv(file: TextIO) -> WineTable:
    """Read a UCI semicolon file, or a comma CSV with a header.

    Errors number rows as a spreadsheet does, the header being row 1. Columns other than the
    features (such as ``quality``) are kept for the output but not sent.
    """
    sample = file.readline()
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(_chain(sample, file), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    columns = _feature_columns(header)
    rows: list[list[str]] = []
    features: list[list[float]] = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, as spreadsheets leave at the end
        row = reader.line_num
        if len(cells) != len(header):
            raise InputFileError(
                f"row {row}: {len(cells)} fields, but the header has {len(header)}"
            )
        features.append([_number(cells[i], row, header[i]) for i in columns])
        rows.append(cells)
    if not rows:
        raise InputFileError("no data rows after the header")
    return WineTable(header, rows, features)


def _chain(first: str, rest: TextIO) -> Iterator[str]:
    yield first
    yield from rest


def _feature_columns(header: list[str]) -> list[int]:
    """Index of each feature's column, in WINE_FEATURES order."""
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        feature = _FEATURE_KEYS.get(re.sub(r"[\s_]+", "", name).lower())
        if feature is None:
            continue
        if feature in found:
            raise InputFileError(
                f'row 1, column "{name}": {feature} appears twice '
                f'(also as column "{header[found[feature]]}")'
            )
        found[feature] = index
    missing = [name for name in WINE_FEATURES if name not in found]
    if missing:
        raise InputFileError(
            f"row 1: no column for {', '.join(missing)}; the header needs the eleven features "
            f"by their UCI names (fixed acidity; ...) or the API's ({', '.join(WINE_FEATURES)})"
        )
    return [found[name] for name in WINE_FEATURES]


def _number(cell: str, row: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise InputFileError(f'row {row}, column "{column}": not a number: {cell!r}') from None
    if not math.isfinite(value):
        raise InputFileError(f'row {row}, column "{column}": not a finite number: {cell!r}')
    return value


def _flatten(model: BaseModel) -> dict[str, Any]:
    """Leaf fields of a response model, by name: interval.lower becomes lower."""
    fields: dict[str, Any] = {}
    for name, value in model:
        fields.update(_flatten(value) if isinstance(value, BaseModel) else {name: value})
    return fields


def _cell(value: Any) -> str:
    if value is None:
        return ""  # e.g. epistemic_std of the Gaussian-head model, which has none
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_wine_csv(out: TextIO, table: WineTable, response: WineResponse) -> None:
    """The input's columns, then each prediction's fields (mean, std, lower, upper, ...)."""
    writer = csv.writer(out, lineterminator="\n")
    flat = [_flatten(prediction) for prediction in response.predictions]
    writer.writerow([*table.header, *flat[0]])
    for cells, fields in zip(table.rows, flat, strict=True):
        writer.writerow([*cells, *(_cell(value) for value in fields.values())])


def cifar_table(files: Sequence[str], response: CifarResponse) -> str:
    """An aligned table: file, label, confidence and the uncertainty split (nats)."""
    split = list(ClassUncertainty.model_fields)
    header = ["file", "label", "confidence", *split]
    rows = [
        [
            name,
            p.label,
            f"{p.confidence:.3f}",
            *(f"{getattr(p.uncertainty, f):.3f}" for f in split),
        ]
        for name, p in zip(files, response.predictions, strict=True)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    # Text columns to the left, numbers to the right.
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    )


def _run_wine(args: argparse.Namespace, client: Client) -> None:
    try:
        with open(args.file, newline="", encoding="utf-8-sig") as file:
            table = read_wine_csv(file)
    except OSError as exc:
        raise InputFileError(f"cannot read {args.file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{args.file} is not a text CSV file: {exc.reason}") from exc
    response = client.predict_wine(
        table.features, model=args.model, samples=args.samples, level=args.level
    )
    if args.output is None:
        write_wine_csv(sys.stdout, table, response)
        return
    with open(args.output, "w", newline="", encoding="utf-8") as out:
        write_wine_csv(out, table, response)
    print(
        f"wrote {len(table.rows)} predictions to {args.output} "
        f"({response.model.name} {response.model.version}, samples={response.samples}, "
        f"level={response.level:g})",
        file=sys.stderr,
    )


def _run_cifar(args: argparse.Namespace, client: Client) -> None:
    missing = [name for name in args.images if not Path(name).is_file()]
    if missing:
        raise InputFileError(f"no such file: {', '.join(missing)}")
    response = client.predict_cifar(args.images, samples=args.samples, level=args.level)
    print(cifar_table(args.images, response))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.cli",
        description="Ask the uncertainty service for predictions, from files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="where the service runs")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for an answer"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="extra tries while the service is starting, busy or unreachable",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--samples", type=int, default=None, help="posterior samples (default: the model's)"
    )
    common.add_argument("--level", type=float, default=0.95, help="level of the intervals")

    wine = commands.add_parser(
        "wine",
        parents=[common],
        help="predict wine quality from a CSV file",
        description="Predict the quality of each wine in a CSV file: the UCI semicolon file, "
        "or a comma CSV with a header naming the eleven features.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    wine.add_argument("file", type=Path, help="the CSV file")
    wine.add_argument("--model", default="bnn", help="bnn (full BNN) or gaussian (Gaussian head)")
    wine.add_argument(
        "--output", "-o", type=Path, default=None, help="CSV file to write (default: stdout)"
    )
    wine.set_defaults(run=_run_wine)

    cifar = commands.add_parser(
        "cifar",
        parents=[common],
        help="classify images as CIFAR-10",
        description="Classify images (PNG, JPEG, BMP, GIF, WebP) into the CIFAR-10 classes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cifar.add_argument("images", nargs="+", help="image files")
    cifar.set_defaults(run=_run_cifar)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with Client(args.url, timeout=args.timeout, retries=args.retries) as client:
            args.run(args, client)
    except InputFileError as exc:
        return _error(exc, EXIT_INPUT)
    except ServiceUnavailableError as exc:
        return _error(exc, EXIT_SERVICE)
    except ServiceError as exc:
        # A 4xx means the request was wrong (a bad option, an unreadable image): the input.
        client_error = exc.status_code is not None and 400 <= exc.status_code < 500
        return _error(exc, EXIT_INPUT if client_error else EXIT_SERVICE)
    return 0


def _error(exc: Exception, code: int) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
