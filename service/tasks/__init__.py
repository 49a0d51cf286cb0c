"""The task kinds the service serves, by the name models declare (``model.task``).

A new kind is a module with a :class:`~service.tasks.base.Task` subclass and one entry here.
"""

from __future__ import annotations

from typing import Any

from service.tasks.base import Decoded, Limits, Task
from service.tasks.image_classification import ImageClassification
from service.tasks.tabular_regression import TabularRegression

__all__ = ["TASKS", "Decoded", "Limits", "Task"]

TASKS: dict[str, type[Task[Any, Any]]] = {
    task.name: task for task in (TabularRegression, ImageClassification)
}
