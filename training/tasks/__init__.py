"""One home per surrogate kind: the :class:`~training.tasks.base.Task` registry.

- ``"stepper"`` (:mod:`.stepper`): a learned time stepper, ``acoustic_stepper`` / ``photoacoustic``
  / ``maxwell_stepper`` datasets -> :class:`pdesurrogate.Surrogate`;
- ``"field"`` (:mod:`.field`): the optical field operator, ``optics`` datasets ->
  :class:`pdesurrogate.FieldOperator`;
- ``"traces"`` (:mod:`.traces`): the USCT trace operator, ``usct`` datasets ->
  :class:`pdesurrogate.TraceOperator`.

A new kind is one module with a :class:`~training.tasks.base.Task` subclass and one line in
:data:`TASKS` (plus, if it deploys as a new class, that class in :mod:`pdesurrogate.surrogate`).
"""

from __future__ import annotations

from .base import Prepared, Task, TrustSamples, TrustSignals
from .field import FieldTask
from .stepper import StepperTask, reversal_signs
from .traces import TraceTask

TASKS: dict[str, Task] = {task.name: task for task in (StepperTask(), FieldTask(), TraceTask())}


def get_task(name: str) -> Task:
    """The task called ``name`` (``train.task``, ``surrogate.json``'s ``task``)."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {name!r}")
    return TASKS[name]


def task_for_scenario(scenario: str) -> Task:
    """The task that trains on datasets of ``scenario``."""
    for task in TASKS.values():
        if scenario in task.scenarios:
            return task
    raise ValueError(f"dataset scenario {scenario!r} has no surrogate task; use one of "
                     f"{[s for task in TASKS.values() for s in task.scenarios]}")


__all__ = ["TASKS", "FieldTask", "Prepared", "StepperTask", "Task", "TraceTask", "TrustSamples", "TrustSignals", "get_task",
           "reversal_signs", "task_for_scenario"]
