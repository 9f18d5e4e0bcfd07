"""Progress bars that also work where nobody is watching a terminal.

rich redraws its bars in place, which only a terminal can show: with output redirected to a file (``nohup``,
a cluster job's log, CI) it prints nothing until the bar stops, so a five-hour ``ccaug synth`` looks dead.
`progress_bar` gives the usual rich bar in a terminal and, elsewhere, a `LineProgress` that writes one plain
line per task every `every` seconds and when the task finishes, with the same columns minus the bar.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich import get_console
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID
from rich.text import Text

LOG_EVERY_SECONDS = 30.0
# rich estimates speed (and so the ETA) from the updates of the last 30 s by default; a batch of diffusion
# sampling on a CPU takes longer than that, which left the ETA blank. Ten minutes covers the slowest batches.
SPEED_WINDOW_SECONDS = 600.0


def progress_bar(
    *columns: str | ProgressColumn,
    enabled: bool = True,
    transient: bool = False,
    console: Console | None = None,
    every: float = LOG_EVERY_SECONDS,
) -> Progress:
    """A rich `Progress` with `columns`: live in a terminal, plain log lines elsewhere, silent if not `enabled`."""
    console = console or get_console()
    window = SPEED_WINDOW_SECONDS
    if not enabled:
        return Progress(*columns, console=console, disable=True)
    if console.is_terminal:
        return Progress(*columns, console=console, transient=transient, speed_estimate_period=window)
    return LineProgress(*columns, console=console, every=every, speed_estimate_period=window)


class LineProgress(Progress):
    """A `Progress` that never redraws: it prints a line for a task at its first update, then at most once
    every `every` seconds, and once when the task completes."""

    def __init__(self, *columns: str | ProgressColumn, every: float = LOG_EVERY_SECONDS, **kwargs: Any):
        super().__init__(*columns, disable=True, **kwargs)  # disable: no live display, tasks still count
        self.every = every
        self._last_line: dict[TaskID, float] = {}
        self._finished: set[TaskID] = set()

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        task = self._task(task_id)
        if task_id in self._finished or not task.visible:
            return
        now = time.monotonic()
        if task.finished:
            self._finished.add(task_id)
        elif now - self._last_line.get(task_id, -math.inf) < self.every:
            return
        self._last_line[task_id] = now
        self.console.print(self.line(task), soft_wrap=True, highlight=False, markup=False)

    def line(self, task: Task) -> str:
        """The task as one line of text: every column but the bar, separated by spaces."""
        parts = []
        for column in self.columns:
            if isinstance(column, BarColumn):
                continue
            rendered = Text.from_markup(column.format(task=task)) if isinstance(column, str) else column(task)
            parts.append(rendered.plain if isinstance(rendered, Text) else str(rendered))
        return " ".join(part for part in parts if part.strip())

    def _task(self, task_id: TaskID) -> Task:
        with self._lock:
            return self._tasks[task_id]
