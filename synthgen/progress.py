"""Progress for a person waiting on a long job: rich bars on a terminal, plain lines elsewhere.

On a terminal each task is a rich bar (count, rate, elapsed, ETA). Where stderr is a log file,
a CI log or a cluster job's output, bars would be noise or nothing, so a task prints lines:
its first once it has moved and run `first_line_s` (or has run `interval_s` without moving:
the job is alive), then one about every `interval_s` seconds (from a timer thread, so a stalled
step still shows), and a last one when it ends:

    render: 1,024/2,048 samples (50 %), 512 samples/s, elapsed 0:00:02, ETA 0:00:02

A task over sooner prints nothing, so quick commands and errors found at once keep their
one-line output. A stage first heard of part-way counts its rate from the report before it.
The library reports through plain callbacks (`advance(n)` for counted work, `(stage, done,
total)` for named stages); this module only turns them into output.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

INTERVAL_S = 5.0
FIRST_LINE_S = 1.0
_TICK_S = 0.25  # how often the timer thread looks for a due line


@dataclass
class _Task:
    label: str
    total: int
    unit: str
    start: float = field(default_factory=time.perf_counter)
    done: int = 0
    last_line: float | None = None  # when its last line was printed; None: none yet
    first_move: tuple[float, int] | None = None  # (time, done) of its first report of work done
    ended: bool = False

    def due(self, now: float, first_line_s: float, interval_s: float) -> bool:
        """Whether a running task's next line is due."""
        if self.last_line is not None:
            return now - self.last_line >= interval_s
        running = now - self.start
        return running >= interval_s or (self.done > 0 and running >= first_line_s)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {self.done:,}/{self.total:,} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f} %)"
        if self.done:
            text += f", {_rate(rate)} {self.unit}/s"
        text += f", elapsed {_clock(elapsed)}"
        if not self.ended and self.done and rate > 0:
            text += f", ETA {_clock((self.total - self.done) / self._recent_rate(rate))}"
        return text

    def _recent_rate(self, overall: float) -> float:
        """The rate since the task first moved (start-up excluded), for the ETA; else `overall`."""
        if self.first_move is None:
            return overall
        since, done = time.perf_counter() - self.first_move[0], self.done - self.first_move[1]
        return done / since if done > 0 and since > 0 else overall


def _rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


def _clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressDisplay:
    """Shows the progress of one or more tasks until the `with` block ends.

    stream: where progress goes (default stderr); interactive: bars (True) or lines (False),
    by default bars exactly when `stream` is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None,
                 interval_s: float = INTERVAL_S, first_line_s: float = FIRST_LINE_S) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.interactive = _is_terminal(self.stream) if interactive is None else interactive
        self.interval_s, self.first_line_s = interval_s, first_line_s
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._bars = self._ticker = None
        self._bar_ids: dict[str, int] = {}
        self._last_event = time.perf_counter()

    def __enter__(self) -> ProgressDisplay:
        if self.interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=Console(file=self.stream))
            self._bars.start()
        else:
            self._ticker = threading.Thread(target=self._tick, name="synthgen-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bars is not None:
            self._bars.stop()
        elif exc_info[0] is None:
            with self._lock:
                for task in self._tasks.values():
                    if not task.ended and task.last_line is not None:
                        self._end(task)

    def counter(self, label: str, total: int, unit: str = "samples") -> Callable[[int], None]:
        """A new task of `total` units; returns `advance(n)`, to call as units are done."""
        self._update(label, total, unit, done=0)

        def advance(n: int) -> None:
            self._update(label, total, unit, add=n)

        return advance

    def stage(self, label: str, done: int, total: int, unit: str = "steps") -> None:
        """Set a named stage's completion (made on its first report)."""
        self._update(label, total, unit, done=done)

    def _update(self, label: str, total: int, unit: str, *, done: int | None = None, add: int = 0) -> None:
        with self._lock:
            if self._stopped.is_set():
                return  # the display has closed: a late report from a worker thread shows nothing
            now = time.perf_counter()
            task = self._tasks.get(label)
            new = task is None
            if new:  # a stage first heard of part-way began when the one before it last reported
                task = self._tasks[label] = _Task(label, int(total), unit, start=self._last_event if done else now)
            self._last_event = now
            task.done = int(done) if done is not None else task.done + int(add)
            task.total = int(total)
            if task.first_move is None and task.done > 0:
                task.first_move = (now, task.done)
            finished = bool(task.total) and task.done >= task.total
            if self._bars is not None:
                self._show_bar(task, new)
            elif finished and not task.ended:
                self._end(task)

    def _show_bar(self, task: _Task, new: bool) -> None:
        if new:
            self._bar_ids[task.label] = self._bars.add_task(task.label, total=task.total, rate="")
        elapsed = time.perf_counter() - task.start
        rate = f"{_rate(task.done / elapsed)} {task.unit}/s" if task.done and elapsed > 0 else ""
        self._bars.update(self._bar_ids[task.label], completed=task.done, total=task.total, rate=rate)

    def _end(self, task: _Task) -> None:
        task.ended = True
        if task.last_line is not None or time.perf_counter() - task.start >= self.first_line_s:
            self._print(task)

    def _tick(self) -> None:
        while not self._stopped.wait(max(0.01, min(_TICK_S, self.interval_s / 4))):
            with self._lock:
                now = time.perf_counter()
                for task in self._tasks.values():
                    if not task.ended and task.due(now, self.first_line_s, self.interval_s):
                        self._print(task)

    def _print(self, task: _Task) -> None:
        task.last_line = time.perf_counter()
        print(task.line(), file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
