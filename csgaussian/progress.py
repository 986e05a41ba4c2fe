"""Progress display for long work: a rich progress bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class TrainProgress:
    """Shows iteration, loss, PSNR and counts while training; silent with ``quiet=True``."""

    def __init__(self, total: int, quiet: bool = False, description: str = "train") -> None:
        self.total = total
        self.quiet = quiet
        self.console = Console(stderr=True, soft_wrap=True)
        self.interactive = self.console.is_terminal and sys.stderr.isatty()
        self.description = description
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> TrainProgress:
        if not self.quiet and self.interactive:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
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
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration)
        elif not self.quiet and iteration:
            self.console.print(f"{self.description}: resuming at iteration {iteration}")

    def update(self, iteration: int, **metrics: float | int) -> None:
        status = "  ".join(_format(name, value) for name, value in metrics.items())
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration, status=status)
        elif not self.quiet:
            self.console.print(f"{self.description} {iteration}/{self.total}  {status}")


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
