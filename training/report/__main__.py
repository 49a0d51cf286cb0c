"""``python -m training.report``."""

from models.checkpoint import CheckpointError
from training.cli import run_script
from training.datasets.location import DataNotFoundError
from training.report.cli import main
from training.report.repository import ReportError

run_script(main, (ReportError, CheckpointError, DataNotFoundError))
