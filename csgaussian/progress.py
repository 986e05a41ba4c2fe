"""Progress display for long work: a rich progress bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class TrainProgress:
    """Shows iteration, loss, PSNR, counts and the estimated time remaining while training;
    silent with ``quiet=True``. The estimate is the mean time per iteration since
    :meth:`start_at` times the iterations left."""

    def __init__(self, total: int, quiet: bool = False, description: str = "train") -> None:
        self.total = total
        self.quiet = quiet
        self.console = Console(stderr=True, soft_wrap=True)
        self.interactive = self.console.is_terminal and sys.stderr.isatty()
        self.description = description
        self._progress: Progress | None = None
        self._task: Any = None
        self._started: tuple[float, int] = (time.perf_counter(), 0)

    def __enter__(self) -> TrainProgress:
        if not self.quiet and self.interactive:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start_at(self, iteration: int) -> None:
        self._started = (time.perf_counter(), iteration)
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration)
        elif not self.quiet and iteration:
            self.console.print(f"{self.description}: resuming at iteration {iteration}")

    def remaining_seconds(self, iteration: int) -> float | None:
        """Estimated seconds to ``total`` (None before the first iteration of this session)."""
        t0, first = self._started
        done = iteration - first
        if done <= 0:
            return None
        return (time.perf_counter() - t0) / done * max(self.total - iteration, 0)

    def update(self, iteration: int, **metrics: float | int) -> None:
        status = "  ".join(_format(name, value) for name, value in metrics.items())
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration, status=status)
        elif not self.quiet:
            left = self.remaining_seconds(iteration)
            eta = "" if left is None else f"  eta {_duration(left)}"
            self.console.print(f"{self.description} {iteration}/{self.total}  {status}{eta}")


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _format(name: str, value: float | int) -> str:
    if isinstance(value, float):
        return f"{name} {value:.4g}"
    return f"{name} {value}"


def summary_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table of final figures, printed at the end of long work."""
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name, value in rows.items():
        table.add_row(
            name, _format(name, value).removeprefix(f"{name} ") if value is not None else "n/a"
        )
    return table
