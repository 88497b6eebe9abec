"""Progress for people waiting: periodic lines when stderr is not a terminal, bars when it is."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import pytest

from synthgen.progress import ProgressDisplay


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def _display(stream, interval_s=60.0, first_line_s=0.0) -> ProgressDisplay:
    return ProgressDisplay(stream, interactive=False, interval_s=interval_s, first_line_s=first_line_s)


def test_a_line_once_it_moves_then_periodically_then_at_the_end():
    stream = io.StringIO()
    with _display(stream, interval_s=0.1, first_line_s=0.05) as display:
        advance = display.counter("render", 2048)
        advance(1024)
        time.sleep(0.5)  # the timer reports while nothing advances
        advance(1024)
    lines = _lines(stream)
    ticks = lines[:-1]
    assert len(ticks) >= 3 and all(line.startswith("render: 1,024/2,048 samples (50 %), ") for line in ticks)
    assert all("samples/s" in line and "ETA" in line for line in ticks)
    assert lines[-1].startswith("render: 2,048/2,048 samples (100 %), ") and "ETA" not in lines[-1]


def test_a_quick_task_and_an_early_failure_print_nothing():
    """Quick commands, and errors found before any work (a bad model, an unreachable
    scheduler), keep their one-line output."""
    stream = io.StringIO()
    with _display(stream, interval_s=60.0, first_line_s=30.0) as display:
        display.counter("verify", 10)(10)
    with pytest.raises(RuntimeError):
        with _display(stream, interval_s=60.0, first_line_s=0.0) as display:
            display.counter("render", 100)
            time.sleep(0.3)
            raise RuntimeError("no scheduler")
    assert stream.getvalue() == ""


def test_a_task_that_does_not_move_still_shows_it_is_alive():
    stream = io.StringIO()
    with _display(stream, interval_s=0.1, first_line_s=0.0) as display:
        display.counter("sample", 100)
        time.sleep(0.35)
    lines = _lines(stream)
    assert len(lines) >= 2 and all(line.startswith("sample: 0/100 samples (0 %), elapsed") for line in lines)


def test_a_stage_first_heard_of_part_way_counts_from_the_report_before_it():
    stream = io.StringIO()
    with _display(stream) as display:
        display.stage("reading", 10, 10, "samples")
        time.sleep(0.05)
        display.stage("features", 100, 100, "samples")
    first, second = _lines(stream)
    assert first.startswith("reading: 10/10 samples (100 %)")
    rate = float(second.split(", ")[1].split()[0].replace(",", ""))
    assert second.startswith("features: 100/100 samples (100 %)") and 100 < rate < 100 / 0.05 * 1.01


def test_an_unfinished_task_gets_its_last_line_when_the_display_closes():
    stream = io.StringIO()
    with _display(stream, interval_s=0.05) as display:
        display.counter("estimate", 100)(40)
        time.sleep(0.2)
    assert _lines(stream)[-1].startswith("estimate: 40/100 samples (40 %)")


def test_advances_from_many_threads_all_count():
    stream = io.StringIO()
    with _display(stream) as display:
        advance = display.counter("sample", 4000)
        threads = [threading.Thread(target=lambda: [advance(1) for _ in range(1000)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert _lines(stream) == [_lines(stream)[0]] and _lines(stream)[0].startswith("sample: 4,000/4,000 samples")


def test_a_terminal_gets_a_bar():
    stream = io.StringIO()
    with ProgressDisplay(stream, interactive=True) as display:
        advance = display.counter("render", 100)
        advance(60)
        advance(40)
    text = stream.getvalue()
    assert "render" in text and "100/100" in text and "samples/s" in text


def test_bars_only_on_a_terminal(tmp_path):
    assert ProgressDisplay(io.StringIO()).interactive is False
    with (tmp_path / "log").open("w") as log:
        assert ProgressDisplay(log).interactive is False


def test_render_to_a_log_leaves_progress_lines(tmp_path):
    """`synthgen render --n 2048 --out r.zarr 2> log`: the log shows the job move and end."""
    log = tmp_path / "log"
    with log.open("w") as stderr:
        subprocess.run([sys.executable, "-m", "synthgen", "render", "--n", "2048", "--out", "r.zarr"],
                       cwd=tmp_path, stderr=stderr, stdout=subprocess.DEVNULL, check=True, timeout=300)
    lines = log.read_text().splitlines()
    assert len(lines) >= 2 and all(line.startswith("render: ") for line in lines)
    assert "ETA" in lines[0] and "samples/s" in lines[0]
    assert lines[-1].startswith("render: 2,048/2,048 samples (100 %)") and "samples/s" in lines[-1]
