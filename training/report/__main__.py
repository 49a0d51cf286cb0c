"""``python -m training.report``."""

from training.report.cli import main

main()
