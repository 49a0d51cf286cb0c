"""``python -m service.cli``: files in, predictions out, against a real uvicorn process."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from service.client import Client
from service.live_server import LiveServer, free_port
from training.datasets.wine import WINE_FEATURES

ROOT = Path(__file__).resolve().parents[1]
PREDICTION_COLUMNS = ["mean", "std", "lower", "upper", "epistemic_std", "aleatoric_std"]
IMAGE_COLUMNS = ["file", "label", "confidence", "total", "aleatoric", "epistemic"]
UCI_ROWS = 5
# The first white wine of the UCI file, in its column order.
WINE = ["7.0", "0.27", "0.36", "20.7", "0.045", "45", "170", "1.001", "3.0", "0.45", "8.8"]


@pytest.fixture(scope="module")
def server(live_server: LiveServer) -> LiveServer:
    return live_server


@pytest.fixture
def uci_file(data_dir: Path, tmp_path: Path) -> Path:
    """The UCI file as published, cut to its header and first rows."""
    lines = (data_dir / "wine" / "winequality-white.csv").read_text().splitlines()
    path = tmp_path / "wines.csv"
    path.write_text("\n".join(lines[: 1 + UCI_ROWS]) + "\n")
    return path


@pytest.fixture
def images(data_dir: Path) -> list[str]:
    return [str(data_dir / "cifar10" / "test" / c / "0000.jpg") for c in ("cat", "ship")]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _comma_csv(path: Path, *rows: list[str], header: list[str] | None = None) -> Path:
    lines = [header or list(WINE_FEATURES), *rows]
    path.write_text("\n".join(",".join(row) for row in lines) + "\n")
    return path


def _nowhere() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def _check_image_table(output: str, images: list[str]) -> None:
    header, *rows = output.splitlines()
    assert header.split() == IMAGE_COLUMNS
    # Columns line up: each header word starts where its column does.
    starts = [header.index(word) for word in header.split()]
    assert len(rows) == len(images)
    for image, row in zip(images, rows, strict=True):
        assert row.startswith(image)
        assert row[starts[1] - 1] == " " and row[starts[1]] != " "
        confidence, total, aleatoric, epistemic = map(float, row.split()[2:])
        assert 0 < confidence <= 1
        assert total == pytest.approx(aleatoric + epistemic, abs=2e-3)


def test_help_lists_the_subcommands() -> None:
    result = _cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("predict", "wine", "cifar", "models"):
        assert command in result.stdout


def test_wine_uci_file_to_csv(server: LiveServer, uci_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "predictions.csv"
    result = _cli("--url", server.url, "wine", str(uci_file), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {UCI_ROWS} predictions to {out}" in result.stderr

    with uci_file.open(newline="") as file:
        source = list(csv.reader(file, delimiter=";"))
    with out.open(newline="") as file:
        written = list(csv.reader(file))
    assert written[0] == source[0] + PREDICTION_COLUMNS  # "fixed acidity", ..., "quality", ...
    assert [row[: len(source[0])] for row in written[1:]] == source[1:]

    # The same numbers the client gets, to the six digits written.
    features = [[float(cell) for cell in row[:11]] for row in source[1:]]
    with Client(server.url) as client:
        expected = client.predict_wine(features).predictions
    for row, prediction in zip(written[1:], expected, strict=True):
        mean, std, lower, upper, epistemic, aleatoric = map(float, row[len(source[0]) :])
        assert (mean, std) == pytest.approx((prediction.mean, prediction.std), rel=1e-5)
        assert (lower, upper) == pytest.approx(
            (prediction.interval.lower, prediction.interval.upper), rel=1e-5
        )
        assert lower < mean < upper and epistemic > 0 and aleatoric > 0


def test_connection_options_after_the_subcommand(
    server: LiveServer, uci_file: Path, tmp_path: Path
) -> None:
    before = _cli("--url", server.url, "wine", str(uci_file))
    # Given after the subcommand, they win over those before it.
    after = _cli("--url", _nowhere(), "wine", str(uci_file), "--url", server.url, "--retries", "0")
    assert (before.returncode, after.returncode) == (0, 0), after.stderr
    assert after.stdout == before.stdout
    assert len(after.stdout.splitlines()) == 1 + UCI_ROWS


def test_wine_comma_csv_to_stdout(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _comma_csv(tmp_path / "wines.csv", WINE)
    code = main(["wine", str(path), "--model", "gaussian", "--level", "0.8", "--url", server.url])
    assert code == 0
    header, row = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert header == [*WINE_FEATURES, *PREDICTION_COLUMNS]
    fields = dict(zip(header, row, strict=True))
    assert fields["epistemic_std"] == ""  # the Gaussian head models none
    assert float(fields["lower"]) < float(fields["mean"]) < float(fields["upper"])


def test_header_names_match_without_case_spaces_or_underscores_and_extras_stay(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Shuffled, respelt, with a column the model does not take: only the features are sent.
    spelt = [name.upper().replace("_", " ") for name in WINE_FEATURES]
    order = list(reversed(range(len(WINE_FEATURES))))
    header = ["id", *(spelt[i] for i in order)]
    path = _comma_csv(tmp_path / "wines.csv", ["w1", *(WINE[i] for i in order)], header=header)
    assert main(["--url", server.url, "predict", "wine-bnn", str(path), "--samples", "20"]) == 0
    written_header, row = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert written_header == [*header, *PREDICTION_COLUMNS]
    assert row[: len(header)] == ["w1", *(WINE[i] for i in order)]
    with Client(server.url) as client:
        expected = client.predict_wine([[float(x) for x in WINE]], samples=20).predictions[0]
    assert float(row[len(header)]) == pytest.approx(expected.mean, rel=1e-5)


def test_predict_a_tabular_model_by_name(
    server: LiveServer, uci_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "predictions.csv"
    by_name = _cli("predict", "wine-gaussian", str(uci_file), "-o", str(out), "--url", server.url)
    shortcut = _cli("--url", server.url, "wine", str(uci_file), "--model", "gaussian")
    assert (by_name.returncode, shortcut.returncode) == (0, 0), by_name.stderr
    assert out.read_text() == shortcut.stdout
    assert "(wine-gaussian " in by_name.stderr


def test_predict_an_image_model_by_name(
    server: LiveServer, images: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "cifar-bcnn", *images, "--url", server.url, "--samples", "2"]) == 0
    _check_image_table(capsys.readouterr().out, images)


def test_predict_an_unknown_model_names_the_served_ones(server: LiveServer, uci_file: Path) -> None:
    result = _cli("predict", "no-such-model", str(uci_file), "--url", server.url)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {server.url}/predict/no-such-model answered 404: no model named "
        "'no-such-model' is served; the models are: cifar-bcnn, wine-bnn, wine-gaussian\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "wine-bnn", "{csv}", "{csv}"], "give one CSV file, not 2 files"),
        (["predict", "cifar-bcnn", "{image}", "-o", "out.csv"], "--output writes a tabular"),
        (["predict", "wine-bnn", "{image}"], "is not a text CSV file"),
    ],
)
def test_predict_input_that_does_not_fit_the_model(
    args: list[str],
    message: str,
    server: LiveServer,
    uci_file: Path,
    images: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    filled = [a.format(csv=uci_file, image=images[0]) for a in args]
    assert main([*filled, "--url", server.url]) == 2
    assert message in capsys.readouterr().err


def test_models_table(server: LiveServer) -> None:
    result = _cli("models", "--url", server.url)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["name", "task", "version", "device", "ready"]
    with Client(server.url) as client:
        served = client.models().models
    assert [row.split() for row in rows] == [
        [m.name, m.task, m.version, m.device, "yes"] for m in served
    ]
    starts = [header.index(word) for word in header.split()]
    assert all(row[starts[2] :].startswith(m.version) for row, m in zip(rows, served, strict=True))


def test_malformed_row_names_row_and_column(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [*WINE[:8], "abc", *WINE[9:]]  # pH
    path = _comma_csv(tmp_path / "wines.csv", *[WINE] * 5, bad)
    assert main(["--url", server.url, "wine", str(path)]) == 2
    assert capsys.readouterr().err == "error: row 7, column \"pH\": not a number: 'abc'\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a;b\n1;2\n", "row 1: no column for fixed_acidity, volatile_acidity"),
        (",".join(WINE_FEATURES) + "\n" + ",".join(["inf"] * 11) + "\n", "not a finite number"),
        (
            ",".join([*WINE_FEATURES, "Fixed Acidity"]) + "\n" + ",".join(["1"] * 12) + "\n",
            'row 1, column "Fixed Acidity": fixed_acidity appears twice',
        ),
    ],
)
def test_malformed_headers_and_cells(
    content: str,
    message: str,
    server: LiveServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "wines.csv"
    path.write_text(content)
    assert main(["--url", server.url, "wine", str(path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (",".join(WINE_FEATURES) + "\n" + ",".join(["1"] * 10) + "\n", "row 2: 10 fields"),
        (",".join(WINE_FEATURES) + "\n\n", "no data rows"),
    ],
)
def test_a_malformed_file_is_reported_without_the_service(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wines.csv"
    path.write_text(content)
    # Never reaches the service: the URL goes nowhere.
    assert main(["--url", _nowhere(), "--retries", "0", "wine", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_service_error_is_one_line(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _comma_csv(tmp_path / "wines.csv", WINE)
    assert main(["--url", server.url, "wine", str(path), "--samples", "100000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "query.samples" in err


def test_service_down(uci_file: Path) -> None:
    url = _nowhere()
    result = _cli("wine", str(uci_file), "--url", url, "--retries", "0")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot reach the service at {url}/models: ")
    assert result.stderr.count("\n") == 1


def test_cifar_table(
    server: LiveServer, images: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--url", server.url, "cifar", *images, "--samples", "2"]) == 0
    _check_image_table(capsys.readouterr().out, images)


@pytest.mark.parametrize("command", ["cifar", "predict cifar-bcnn"])
def test_a_missing_image_is_reported_without_the_service(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.png"
    assert main(["--url", _nowhere(), *command.split(), str(missing)]) == 2
    assert capsys.readouterr().err == f"error: no such file: {missing}\n"


def test_cifar_not_an_image_is_the_users_error(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["--url", server.url, "cifar", str(text)]) == 2
    assert "answered 415" in capsys.readouterr().err
