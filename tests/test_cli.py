"""``python -m service.cli``: files in, predictions out, against a real uvicorn process."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from models.wine import WINE_FEATURES
from service.cli import main
from service.client import Client
from service.live_server import LiveServer, free_port
from service.schemas import WINE_EXAMPLE

ROOT = Path(__file__).resolve().parents[1]
PREDICTION_COLUMNS = ["mean", "std", "lower", "upper", "epistemic_std", "aleatoric_std"]
UCI_ROWS = 5


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


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _comma_csv(path: Path, *rows: list[str]) -> Path:
    path.write_text("\n".join(",".join(row) for row in [list(WINE_FEATURES), *rows]) + "\n")
    return path


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


def test_wine_comma_csv_to_stdout(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _comma_csv(tmp_path / "wines.csv", [str(x) for x in WINE_EXAMPLE])
    code = main(["--url", server.url, "wine", str(path), "--model", "gaussian", "--level", "0.8"])
    assert code == 0
    header, row = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert header == [*WINE_FEATURES, *PREDICTION_COLUMNS]
    fields = dict(zip(header, row, strict=True))
    assert fields["epistemic_std"] == ""  # the Gaussian head models none
    assert float(fields["lower"]) < float(fields["mean"]) < float(fields["upper"])


def test_malformed_row_names_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [str(x) for x in WINE_EXAMPLE]
    bad = [*good[:8], "abc", *good[9:]]  # pH
    path = _comma_csv(tmp_path / "wines.csv", *[good] * 5, bad)
    # Never reaches the service: the URL goes nowhere.
    code = main(["--url", f"http://127.0.0.1:{free_port()}", "wine", str(path)])
    assert code == 2
    assert capsys.readouterr().err == "error: row 7, column \"pH\": not a number: 'abc'\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a;b\n1;2\n", "row 1: no column for fixed_acidity, volatile_acidity"),
        (",".join(WINE_FEATURES) + "\n" + ",".join(["1"] * 10) + "\n", "row 2: 10 fields"),
        (",".join(WINE_FEATURES) + "\n" + ",".join(["inf"] * 11) + "\n", "not a finite number"),
        (",".join(WINE_FEATURES) + "\n\n", "no data rows"),
    ],
)
def test_other_malformed_files(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wines.csv"
    path.write_text(content)
    assert main(["--url", f"http://127.0.0.1:{free_port()}", "wine", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_service_error_is_one_line(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _comma_csv(tmp_path / "wines.csv", [str(x) for x in WINE_EXAMPLE])
    assert main(["--url", server.url, "wine", str(path), "--samples", "100000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "query.samples" in err


def test_service_down(uci_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _cli("--url", url, "--retries", "0", "wine", str(uci_file))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot reach the service at {url}/predict/wine: ")
    assert result.stderr.count("\n") == 1


def test_cifar_table(
    server: LiveServer, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(data_dir / "cifar10" / "test" / c / "0000.jpg") for c in ("cat", "ship")]
    assert main(["--url", server.url, "cifar", *images, "--samples", "2"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["file", "label", "confidence", "total", "aleatoric", "epistemic"]
    # Columns line up: each header word starts where its column does.
    starts = [header.index(word) for word in header.split()]
    for image, row in zip(images, rows, strict=True):
        assert row.startswith(image)
        assert row[starts[1] - 1] == " " and row[starts[1]] != " "
        confidence, total, aleatoric, epistemic = map(float, row.split()[2:])
        assert 0 < confidence <= 1
        assert total == pytest.approx(aleatoric + epistemic, abs=2e-3)


def test_cifar_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.png"
    assert main(["--url", "http://127.0.0.1:9", "cifar", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: no such file: {missing}\n"


def test_cifar_not_an_image_is_the_users_error(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["--url", server.url, "cifar", str(text)]) == 2
    assert "answered 415" in capsys.readouterr().err
