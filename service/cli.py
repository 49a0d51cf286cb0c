"""Command line for people who don't write code: files in, predictions with uncertainty out.

    python -m service.cli wine winequality-white.csv --output predictions.csv
    python -m service.cli cifar cat.jpg ship.png
    python -m service.cli predict wine-gaussian wines.csv --url http://gpu-box:8000
    python -m service.cli models

``predict NAME`` serves any model of ``GET /models``: a CSV file for a tabular model, image
files for an image model. ``wine`` and ``cifar`` are ``predict wine-MODEL`` and ``predict
cifar-MODEL``. A CSV is the UCI file as published (semicolons, quoted names with spaces, a
``quality`` column) or a comma CSV; its header names the model's features, compared without
case, spaces or underscores ("fixed acidity" is fixed_acidity). The output CSV is the input's
columns, all kept, plus mean, std, the interval and the epistemic/aleatoric split; images
give a table. ``--url``, ``--timeout`` and ``--retries`` go before or after the subcommand.

Exit codes: 0 done, 1 the service is down or failed, 2 the input (a file, a row, an option,
a model name) is wrong; each error is one line that says where.

Needs only the client (httpx and the response models): no torch, so ``--help`` is quick.
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

from service.client import (
    CIFAR_DEFAULT,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    IMAGE_CLASSIFICATION,
    TABULAR_REGRESSION,
    WINE_DEFAULT,
    Client,
    ServiceError,
    ServiceUnavailableError,
)
from service.schemas import (
    CIFAR_FAMILY,
    WINE_FAMILY,
    ClassificationResponse,
    ClassUncertainty,
    ModelInfo,
    ModelsResponse,
    RegressionResponse,
    family_model,
)

__all__ = [
    "CsvTable",
    "InputFileError",
    "feature_values",
    "image_table",
    "main",
    "models_table",
    "read_csv",
    "write_predictions_csv",
]

EXIT_SERVICE: Final = 1
EXIT_INPUT: Final = 2


class InputFileError(Exception):
    """The user's file cannot be read as asked; the message names the row and column."""


@dataclass(frozen=True)
class CsvTable:
    """A CSV as read: its header and cells as written, and each row's spreadsheet number."""

    header: list[str]
    rows: list[list[str]]
    row_numbers: list[int]  # the header is row 1, as in a spreadsheet


def read_csv(file: TextIO) -> CsvTable:
    """Read a UCI semicolon file, or a comma CSV with a header.

    Only the shape is checked here (a header, each row as wide as it, some rows), so that a
    broken file is reported before the service is asked which columns it needs.
    """
    sample = file.readline()
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(_chain(sample, file), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    rows: list[list[str]] = []
    numbers: list[int] = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, as spreadsheets leave at the end
        if len(cells) != len(header):
            raise InputFileError(
                f"row {reader.line_num}: {len(cells)} fields, but the header has {len(header)}"
            )
        rows.append(cells)
        numbers.append(reader.line_num)
    if not rows:
        raise InputFileError("no data rows after the header")
    return CsvTable(header, rows, numbers)


def _chain(first: str, rest: TextIO) -> Iterator[str]:
    yield first
    yield from rest


def _column_key(name: str) -> str:
    """Header names compare without case, spacing or underscores: "free sulfur dioxide" (UCI),
    "free_sulfur_dioxide" (the API) and "Free Sulfur Dioxide" name the same column."""
    return re.sub(r"[\s_]+", "", name).lower()


def feature_values(table: CsvTable, features: Sequence[str], model: str) -> list[list[float]]:
    """Each row's features as numbers, in ``features`` order; other columns are not sent."""
    columns = _feature_columns(table.header, features, model)
    return [
        [_number(cells[i], row, table.header[i]) for i in columns]
        for cells, row in zip(table.rows, table.row_numbers, strict=True)
    ]


def _feature_columns(header: list[str], features: Sequence[str], model: str) -> list[int]:
    """Index of each feature's column, in ``features`` order."""
    keys = {_column_key(name): name for name in features}
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        feature = keys.get(_column_key(name))
        if feature is None:
            continue
        if feature in found:
            raise InputFileError(
                f'row 1, column "{name}": {feature} appears twice '
                f'(also as column "{header[found[feature]]}")'
            )
        found[feature] = index
    missing = [name for name in features if name not in found]
    if missing:
        raise InputFileError(
            f"row 1: no column for {', '.join(missing)}; the header must name all "
            f"{len(features)} features of {model} (case, spaces and underscores do not matter)"
        )
    return [found[name] for name in features]


def _number(cell: str, row: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise InputFileError(f'row {row}, column "{column}": not a number: {cell!r}') from None
    if not math.isfinite(value):
        raise InputFileError(f'row {row}, column "{column}": not a finite number: {cell!r}')
    return value


def _flatten(model: BaseModel) -> dict[str, Any]:
    """Leaf fields of a response model, by name: interval.lower becomes lower.

    An optional extra the request did not ask for (None, and not a field every answer has,
    such as ``density``) is no column; ``epistemic_std``, which is null for some models, is.
    """
    fields: dict[str, Any] = {}
    for name, value in model:
        if value is None and not type(model).model_fields[name].is_required():
            continue
        fields.update(_flatten(value) if isinstance(value, BaseModel) else {name: value})
    return fields


def _cell(value: Any) -> str:
    if value is None:
        return ""  # e.g. epistemic_std of a Gaussian-head model, which has none
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_predictions_csv(out: TextIO, table: CsvTable, response: RegressionResponse) -> None:
    """The input's columns, then each prediction's fields (mean, std, lower, upper, ...)."""
    writer = csv.writer(out, lineterminator="\n")
    flat = [_flatten(prediction) for prediction in response.predictions]
    writer.writerow([*table.header, *flat[0]])
    for cells, fields in zip(table.rows, flat, strict=True):
        writer.writerow([*cells, *(_cell(value) for value in fields.values())])


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """Columns padded to line up: the first ``text_columns`` to the left, numbers right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    )


def image_table(files: Sequence[str], response: ClassificationResponse) -> str:
    """An aligned table: file, label, confidence and the uncertainty split (nats)."""
    split = list(ClassUncertainty.model_fields)
    rows = [
        [
            name,
            p.label,
            f"{p.confidence:.3f}",
            *(f"{getattr(p.uncertainty, f):.3f}" for f in split),
        ]
        for name, p in zip(files, response.predictions, strict=True)
    ]
    return _aligned(["file", "label", "confidence", *split], rows, text_columns=2)


def models_table(models: ModelsResponse) -> str:
    """An aligned table of the served models: name, task, version, device, ready."""
    rows = [
        [m.name, m.task, m.version, m.device, "yes" if m.ready else "no"] for m in models.models
    ]
    return _aligned(["name", "task", "version", "device", "ready"], rows, text_columns=5)


# ---------------------------------------------------------------------------------------------
# Subcommands


def _read_csv_file(path: Path) -> CsvTable:
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            return read_csv(file)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not a text CSV file: {exc.reason}") from exc


def _check_files(paths: Sequence[str]) -> None:
    """Before any request: a missing file is the user's mistake even with the service down."""
    missing = [name for name in paths if not Path(name).is_file()]
    if missing:
        raise InputFileError(f"no such file: {', '.join(missing)}")


def _model_of_task(client: Client, name: str, task: str) -> ModelInfo:
    info = client.model_info(name)
    if info.task != task:
        raise InputFileError(f"{name} is a {info.task} model; this needs a {task} model")
    return info


def _tabular(args: argparse.Namespace, client: Client, name: str, path: Path) -> None:
    """CSV in, the same CSV plus the predictions out (stdout, or ``--output``)."""
    table = _read_csv_file(path)  # a broken file is reported even with the service down
    info = _model_of_task(client, name, TABULAR_REGRESSION)
    features = [str(feature) for feature in info.input.get("features", [])]
    rows = feature_values(table, features, info.name)
    response = client.predict(info.name, rows, samples=args.samples, level=args.level)
    assert isinstance(response, RegressionResponse)  # what a tabular model answers
    if args.output is None:
        write_predictions_csv(sys.stdout, table, response)
        return
    with open(args.output, "w", newline="", encoding="utf-8") as out:
        write_predictions_csv(out, table, response)
    print(
        f"wrote {len(table.rows)} predictions to {args.output} "
        f"({response.model.name} {response.model.version}, samples={response.samples}, "
        f"level={response.level:g})",
        file=sys.stderr,
    )


def _images(args: argparse.Namespace, client: Client, name: str, files: Sequence[str]) -> None:
    """Image files in, a table out."""
    _check_files(files)
    info = _model_of_task(client, name, IMAGE_CLASSIFICATION)
    if getattr(args, "output", None) is not None:
        raise InputFileError(f"--output writes a tabular model's CSV; {info.name} takes images")
    response = client.predict(info.name, files, samples=args.samples, level=args.level)
    assert isinstance(response, ClassificationResponse)  # what an image model answers
    print(image_table(files, response))


def _run_predict(args: argparse.Namespace, client: Client) -> None:
    _check_files(args.inputs)
    info = client.model_info(args.name)
    if info.task == IMAGE_CLASSIFICATION:
        _images(args, client, info.name, args.inputs)
    elif info.task != TABULAR_REGRESSION:
        raise InputFileError(f"{info.name} is a {info.task} model, which this command cannot send")
    elif len(args.inputs) != 1:
        raise InputFileError(
            f"{info.name} is a tabular model: give one CSV file, not {len(args.inputs)} files"
        )
    else:
        _tabular(args, client, info.name, Path(args.inputs[0]))


def _run_wine(args: argparse.Namespace, client: Client) -> None:
    _tabular(args, client, family_model(WINE_FAMILY, args.model), args.file)


def _run_cifar(args: argparse.Namespace, client: Client) -> None:
    _images(args, client, family_model(CIFAR_FAMILY, args.model), args.images)


def _run_models(args: argparse.Namespace, client: Client) -> None:
    print(models_table(client.models()))


# ---------------------------------------------------------------------------------------------
# Arguments


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, except None: that option's help says what it means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _connection_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """--url, --timeout, --retries: on the main parser, and again on each subcommand.

    A subcommand's copies default to SUPPRESS, so that they set a value only when given and
    never overwrite one given before the subcommand.
    """
    options: list[tuple[str, type, Any, str]] = [
        ("--url", str, DEFAULT_URL, "where the service runs"),
        ("--timeout", float, DEFAULT_TIMEOUT_S, "seconds to wait for an answer"),
        (
            "--retries",
            int,
            DEFAULT_RETRIES,
            "extra tries while the service is starting, busy or unreachable",
        ),
    ]
    group = parser.add_argument_group("service")
    for flag, kind, default, help_text in options:
        if after_command:  # the formatter shows no SUPPRESS default: say it here
            group.add_argument(
                flag, type=kind, default=argparse.SUPPRESS, help=f"{help_text} (default: {default})"
            )
        else:
            group.add_argument(flag, type=kind, default=default, help=help_text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.cli",
        description="Ask the uncertainty service for predictions, from files.",
        formatter_class=_Formatter,
    )
    _connection_options(parser, after_command=False)
    commands = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--samples", type=int, default=None, help="posterior samples (default: the model's)"
    )
    common.add_argument("--level", type=float, default=0.95, help="level of the intervals")
    _connection_options(common, after_command=True)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="CSV file to write for a tabular model (default: stdout)",
    )

    predict = commands.add_parser(
        "predict",
        parents=[common, output],
        help="any served model: a CSV file, or image files",
        description="Ask model NAME (see the models command): a CSV file with a header naming "
        "its features for a tabular model, image files (PNG, JPEG, BMP, GIF, WebP) for an "
        "image model.",
        formatter_class=_Formatter,
    )
    predict.add_argument(
        "name", metavar="NAME", help="the model's name, e.g. wine-bnn or cifar-bcnn"
    )
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="one CSV file, or images")
    predict.set_defaults(run=_run_predict)

    wine = commands.add_parser(
        "wine",
        parents=[common, output],
        help="predict wine quality from a CSV file",
        description="Predict the quality of each wine in a CSV file: the UCI semicolon file, "
        "or a comma CSV with a header naming the eleven features.",
        formatter_class=_Formatter,
    )
    wine.add_argument("file", type=Path, help="the CSV file")
    wine.add_argument(
        "--model",
        default=WINE_DEFAULT,
        help="serves model wine-MODEL: bnn (full BNN), gaussian (Gaussian head), or any other "
        "wine-* model",
    )
    wine.set_defaults(run=_run_wine)

    cifar = commands.add_parser(
        "cifar",
        parents=[common],
        help="classify images as CIFAR-10",
        description="Classify images (PNG, JPEG, BMP, GIF, WebP) into the CIFAR-10 classes.",
        formatter_class=_Formatter,
    )
    cifar.add_argument("images", nargs="+", help="image files")
    cifar.add_argument(
        "--model",
        default=CIFAR_DEFAULT,
        help="serves model cifar-MODEL: bcnn (the Bayesian CNN), or any other cifar-* model",
    )
    cifar.set_defaults(run=_run_cifar)

    models = commands.add_parser(
        "models",
        help="list the served models",
        description="List the served models: name, task, version, device, ready.",
        formatter_class=_Formatter,
    )
    _connection_options(models, after_command=True)
    models.set_defaults(run=_run_models)
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
        # A 4xx means the request was wrong (a bad option, an unreadable image, an unknown
        # model name): the input.
        client_error = exc.status_code is not None and 400 <= exc.status_code < 500
        return _error(exc, EXIT_INPUT if client_error else EXIT_SERVICE)
    return 0


def _error(exc: Exception, code: int) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
