"""Progress for people waiting: periodic lines when stderr is not a terminal, bars when it is."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

from synthgen.progress import ProgressDisplay


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_lines_at_start_periodically_and_at_the_end():
    stream = io.StringIO()
    with ProgressDisplay(stream, interactive=False, interval_s=0.05) as display:
        advance = display.counter("render", 2048)
        advance(1024)
        time.sleep(0.2)  # the timer reports while nothing advances
        advance(1024)
    lines = _lines(stream)
    assert lines[0] == "render: 0/2,048 samples (0 %), elapsed 0:00:00"
    ticks = [line for line in lines[1:-1] if line.startswith("render: 1,024/2,048 samples (50 %), ")]
    assert len(ticks) >= 2 and all("samples/s" in line and "ETA" in line for line in ticks)
    assert lines[-1].startswith("render: 2,048/2,048 samples (100 %), ") and "ETA" not in lines[-1]
    assert len(lines) == 2 + len(ticks)  # nothing after the end line, nothing else


def test_a_stage_first_heard_of_part_way_counts_from_the_report_before_it():
    stream = io.StringIO()
    with ProgressDisplay(stream, interactive=False, interval_s=60) as display:
        display.stage("reading", 10, 10, "samples")
        time.sleep(0.05)
        display.stage("features", 100, 100, "samples")
    first, second = _lines(stream)
    assert first.startswith("reading: 10/10 samples (100 %)")
    rate = float(second.split(", ")[1].split()[0].replace(",", ""))
    assert second.startswith("features: 100/100 samples (100 %)") and 100 < rate < 100 / 0.05 * 1.01


def test_an_unfinished_task_gets_its_last_line_when_the_display_closes():
    stream = io.StringIO()
    with ProgressDisplay(stream, interactive=False, interval_s=60) as display:
        display.counter("estimate", 100)(40)
    assert _lines(stream)[-1].startswith("estimate: 40/100 samples (40 %)")


def test_advances_from_many_threads_all_count():
    stream = io.StringIO()
    with ProgressDisplay(stream, interactive=False, interval_s=60) as display:
        advance = display.counter("sample", 4000)
        threads = [threading.Thread(target=lambda: [advance(1) for _ in range(1000)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert _lines(stream)[-1].startswith("sample: 4,000/4,000 samples (100 %)")


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
    """`synthgen render --n 2048 --out r.zarr 2> log`: the log shows the job start, move and end."""
    log = tmp_path / "log"
    with log.open("w") as stderr:
        subprocess.run([sys.executable, "-m", "synthgen", "render", "--n", "2048", "--out", "r.zarr"],
                       cwd=tmp_path, stderr=stderr, stdout=subprocess.DEVNULL, check=True, timeout=300)
    lines = [line for line in log.read_text().splitlines() if line.startswith("render: ")]
    assert lines[0].startswith("render: 0/2,048 samples (0 %)")
    assert lines[-1].startswith("render: 2,048/2,048 samples (100 %)") and "samples/s" in lines[-1]
