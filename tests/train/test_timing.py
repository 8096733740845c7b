"""performance_log_every's timer: phases add up, reports reset, an off timer costs nothing."""

from __future__ import annotations

import time

from toolkit.train.timing import PHASES, StepTimer, format_report


def test_sections_accumulate_and_reports_reset():
    timer = StepTimer(every=2)
    for _ in range(2):
        with timer.section("forward"):
            time.sleep(0.02)
        with timer.section("data"):
            time.sleep(0.01)
    assert not timer.due(1) and timer.due(2)
    report = timer.report()
    assert report["steps"] == 2 and set(report["seconds"]) == {*PHASES, "other"}
    assert report["seconds"]["forward"] >= 0.04 and report["seconds"]["data"] >= 0.02
    assert report["seconds"]["forward"] > report["seconds"]["data"]
    assert abs(sum(report["seconds"].values()) - report["wall_s"]) < 1e-3
    assert abs(report["s_per_step"] - report["wall_s"] / 2) < 1e-3
    assert "forward" in format_report(2, report) and "steps 1-2" in format_report(2, report)
    assert timer.report()["seconds"]["forward"] == 0.0  # started over


def test_off_timer_records_nothing():
    timer = StepTimer(every=0)
    with timer.section("forward"):
        time.sleep(0.01)
    assert not timer.due(10) and timer.seconds["forward"] == 0.0
