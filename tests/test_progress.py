"""TrainProgress: the estimate of the remaining time printed while training."""

from __future__ import annotations

from csgaussian import progress
from csgaussian.progress import TrainProgress


def test_remaining_time_is_the_mean_pace_since_start_times_the_iterations_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    bar = TrainProgress(total=1000, quiet=True)
    bar.start_at(200)  # a resumed run: its pace counts only this session's iterations
    assert bar.remaining_seconds(200) is None
    clock[0] = 130.0
    assert bar.remaining_seconds(300) == 30.0 / 100 * 700


def test_log_lines_carry_the_estimate(monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    bar = TrainProgress(total=100, description="stage 1")
    bar.interactive = False
    with bar:
        bar.start_at(0)
        clock[0] = 125.0
        bar.update(50, loss=0.5)
    assert "stage 1 50/100  loss 0.5  eta 2m05s" in capsys.readouterr().err
