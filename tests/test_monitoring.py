"""The monitoring API (API.md §3): each call's behaviour and units, read back from the store."""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import tracklab
from tests import fakes
from tests.conftest import wait_until
from tracklab.errors import TracklabWarning
from tracklab.sdk import system_monitor as monitoring

FULL = {"nodeId", "timestamp", "cpu", "memory", "disk", "network", "accelerators"}
GIB = 1024**3


def stored(run_id: str) -> list[dict[str, Any]]:
    view = tracklab.open_run(run_id)
    try:
        return view.samples()
    finally:
        view.close()


def context_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("tracklab-context", "tracklab-monitor")) and t.is_alive()]


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRACKLAB_NVML_MODULE", "tests.fakes")
    fakes.use_scenario("two_gpus")
    yield
    monitoring._at_exit()  # close NVML before the fake forgets its state
    fakes.reset()


@pytest.fixture
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRACKLAB_NVML_MODULE", "tests.fakes")
    fakes.use_scenario("no_driver")
    yield
    monitoring._at_exit()
    fakes.reset()


# -- get_run_system_monitor / cleanup_run_monitor -------------------------------------------------


def test_one_monitor_per_run_and_project() -> None:
    a = tracklab.get_run_system_monitor("r1")
    assert tracklab.get_run_system_monitor("r1") is a
    assert tracklab.get_run_system_monitor("r1", project="p") is not a
    assert tracklab.get_run_system_monitor("r2") is not a
    assert isinstance(a, tracklab.RunSystemMonitor)
    assert a.collect_interval == 10.0 and not a.running


def test_the_monitor_of_an_init_run_is_found_by_run_id_alone() -> None:
    run = tracklab.init(project="p", system_monitor=True)
    mon = tracklab.get_run_system_monitor(run.id)
    assert mon is tracklab.get_run_system_monitor(run.id, project="p")
    assert mon.running
    run.finish()
    assert not mon.running


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="run_id"):
        tracklab.get_run_system_monitor(None)  # type: ignore[arg-type]
    for bad in (0, -1, "5", True, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="collect_interval must be a positive number"):
            tracklab.get_run_system_monitor("r", collect_interval=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"callable|function"):
        mon = tracklab.get_run_system_monitor("r2")
        mon.add_callback("not a function")  # type: ignore[arg-type]


def test_start_and_stop_are_idempotent_and_stop_is_prompt() -> None:
    mon = tracklab.get_run_system_monitor("r", collect_interval=30)
    mon.start()
    mon.start()
    assert len(context_threads()) == 1
    assert wait_until(lambda: mon.sampler.count >= 1)
    t0 = time.monotonic()
    mon.stop()
    assert time.monotonic() - t0 < 1.0  # the 30 s wait is interrupted, not sat out
    mon.stop()
    assert not mon.running and context_threads() == []
    assert len(stored("r")) == 2  # one at start, one at stop
    mon.start()  # a stopped monitor starts again
    assert wait_until(lambda: len(stored("r")) >= 3)
    mon.stop()


def test_a_run_id_no_run_has_is_created_on_first_write() -> None:
    mon = tracklab.get_run_system_monitor("my-run", project="proj")
    assert tracklab.list_runs() == []  # creating a monitor writes nothing
    mon.log_custom_metric("custom.temperature", 65.5)
    [run] = tracklab.list_runs()
    assert (run["id"], run["project"], run["status"]) == ("my-run", "proj", "running")
    tracklab.cleanup_run_monitor("my-run")
    assert tracklab.open_run("my-run").info["status"] == "finished"


def test_cleanup_stops_forgets_and_is_safe_twice() -> None:
    tracklab.cleanup_run_monitor("never-had-one")
    mon = tracklab.get_run_system_monitor("r", project="p", collect_interval=30)
    mon.start()
    tracklab.cleanup_run_monitor("r", "p")
    assert not mon.running
    tracklab.cleanup_run_monitor("r", "p")
    tracklab.cleanup_run_monitor("r")
    assert tracklab.get_run_system_monitor("r", project="p") is not mon


def test_every_monitor_of_a_run_shares_one_writer() -> None:
    """Sample statistics are kept per (run, process): all writers of a process must be one."""
    run = tracklab.init(project="p", system_monitor=True)
    tracklab.monitor_cpu(run.id).log_cpu_metrics()
    tracklab.monitor_memory(run.id).log_memory_metrics()
    run.finish()
    view = tracklab.open_run(run.id)
    assert view.sample_count() == len(view.samples()) >= 4
    view.close()


# -- callbacks ----------------------------------------------------------------------------------


def test_callbacks_receive_every_snapshot_in_the_document_format() -> None:
    seen: list[dict[str, Any]] = []
    mon = tracklab.get_run_system_monitor("r", collect_interval=0.05)
    mon.add_callback(seen.append)
    mon.start()
    assert wait_until(lambda: len(seen) >= 3)
    mon.stop()
    assert len(seen) == mon.sampler.count == len(stored("r"))
    for snap in seen:
        assert set(snap) >= FULL
        assert 0 <= snap["cpu"]["overall"] <= 100
        assert isinstance(snap["timestamp"], int) and snap["timestamp"] > 1.6e12  # ms


def test_a_raising_callback_is_logged_once_and_nothing_stops(
        caplog: pytest.LogCaptureFixture) -> None:
    calls = {"bad": 0, "good": 0}

    def bad(snap: dict[str, Any]) -> None:
        calls["bad"] += 1
        snap["accelerators"][7]["utilization"]  # raises IndexError

    def good(_snap: dict[str, Any]) -> None:
        calls["good"] += 1

    mon = tracklab.get_run_system_monitor("r", collect_interval=0.05)
    mon.add_callback(bad)
    mon.add_callback(good)
    with caplog.at_level(logging.WARNING, logger="tracklab"):
        mon.start()
        assert wait_until(lambda: calls["good"] >= 3)
        mon.stop()
    assert calls["bad"] == calls["good"] == mon.sampler.count
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].name == "tracklab.sdk.system_monitor" and "bad" in warnings[0].getMessage()
    assert warnings[0].exc_info and warnings[0].exc_info[0] is IndexError


def test_remove_callback() -> None:
    seen: list[Any] = []
    mon = tracklab.get_run_system_monitor("r")
    mon.add_callback(seen.append)
    mon.remove_callback(seen.append)
    mon.remove_callback(print)  # never added: nothing happens
    mon.get_current_metrics()
    assert seen == []


# -- custom metrics, current metrics, system info ------------------------------------------------


def test_log_custom_metric_stores_one_reading_with_the_samples() -> None:
    mon = tracklab.get_run_system_monitor("r")
    mon.log_custom_metric("custom.temperature", 65.5)
    mon.log_custom_metric("fan_speed", 75)  # the prefix is added
    mon.log_custom_metric("custom.temperature", 66.0)
    samples = stored("r")
    assert [s["custom"] for s in samples] == [
        {"temperature": 65.5}, {"fan_speed": 75}, {"temperature": 66.0}]
    stats = tracklab.open_run("r").system_summary()
    assert stats["custom.temperature"] == {"min": 65.5, "max": 66.0, "mean": 65.75,
                                           "last": 66.0, "count": 2}
    # the latest of each rides along in the snapshots callbacks and get_current_metrics() see
    assert mon.get_current_metrics()["custom"] == {"temperature": 66.0, "fan_speed": 75}


def test_a_custom_metric_that_is_not_a_number_is_dropped_with_a_warning() -> None:
    mon = tracklab.get_run_system_monitor("r")
    with pytest.warns(TracklabWarning, match="not a number"):
        mon.log_custom_metric("custom.label", "hot")  # type: ignore[arg-type]
    for name in (5, "custom.", ""):  # the name is what is wrong: the warning says so
        with pytest.warns(TracklabWarning, match="has no name"):
            mon.log_custom_metric(name, 1.0)  # type: ignore[arg-type]
    assert tracklab.list_runs() == []


def test_get_current_metrics_takes_one_when_there_is_none() -> None:
    mon = tracklab.get_run_system_monitor("r", collect_interval=30)
    snap = mon.get_current_metrics()
    assert set(snap) >= FULL and 0 <= snap["cpu"]["overall"] <= 100
    assert len(stored("r")) == 1  # the reading it took is a sample of the run
    assert mon.get_current_metrics() is snap  # the latest, not a new one


def test_get_system_info_keys_and_units(two_gpus: None) -> None:
    info = tracklab.get_run_system_monitor("r").get_system_info()
    assert info["platform"] == platform.platform()
    assert info["hostname"] == socket.gethostname()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert info["cpu_count"] == psutil.cpu_count(logical=True)
    assert info["cpu_physical"] == psutil.cpu_count(logical=False)
    assert info["memory_total"] == psutil.virtual_memory().total  # bytes
    assert isinstance(info["memory_total"], int)
    assert info["python"] == platform.python_version()
    assert info["gpu_info"] == ["NVIDIA A100-SXM4-40GB"] * 2
    assert info["gpu_count"] == 2 and info["gpus"][0]["memoryTotal"] == 40 * GIB
    assert info["driver_version"] and info["cuda_version"]


def test_get_system_info_without_a_gpu(no_gpus: None) -> None:
    info = tracklab.get_run_system_monitor("r").get_system_info()
    assert (info["gpu_info"], info["gpu_count"], info["driver_version"]) == ([], 0, None)


# -- exit, logging ----------------------------------------------------------------------------


def test_a_monitor_never_stopped_neither_holds_the_exit_nor_loses_its_last_sample(
        tmp_path: Path, isolated_env: Path) -> None:
    script = tmp_path / "never_stopped.py"
    report = tmp_path / "times.json"
    script.write_text(
        "import atexit, json, time\n"
        "times = {}\n"
        "atexit.register(lambda: json.dump(dict(times, exit=time.time()),\n"
        f"                                  open({str(report)!r}, 'w')))\n"
        "import tracklab\n"
        "mon = tracklab.get_run_system_monitor('left-running', collect_interval=30)\n"
        "mon.start()\n"
        "times['end'] = time.time()\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    times = json.loads(report.read_text())
    assert times["exit"] - times["end"] < 10  # not the 30 s interval
    samples = stored("left-running")
    assert len(samples) == 2  # at start and at exit
    assert samples[-1]["timestamp"] / 1000 >= times["end"] - 0.01
    assert tracklab.open_run("left-running").info["status"] == "finished"


def test_a_forked_child_that_exits_neither_hangs_nor_ends_the_parents_monitor(
        tmp_path: Path, isolated_env: Path) -> None:
    # A child forked while the sampling thread held a lock (writing a sample) inherited that
    # lock held forever, and hung in its exit handlers; one that got through marked the
    # parent's run finished while the parent was still sampling.
    script = tmp_path / "forks.py"
    script.write_text(
        "import os, signal, sys, time, tracklab\n"
        "mon = tracklab.get_run_system_monitor('forked', collect_interval=0.01)\n"
        "mon.start()\n"
        "for i in range(20):\n"
        "    time.sleep(0.013)\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        signal.alarm(5)  # a hung child ends, and fails the test\n"
        "        sys.exit(0)  # a normal exit: atexit handlers run\n"
        "    if os.waitpid(pid, 0)[1]:\n"
        "        sys.exit(f'child {i} hung at exit')\n"
        "print(tracklab.open_run('forked').info['status'])\n"
        "mon.stop()\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "running\n"
    assert tracklab.open_run("forked").info["status"] == "finished"  # the parent's exit


def test_debug_logging_shows_each_sample_taken_and_written_and_nothing_prints(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.DEBUG, logger="tracklab"):
        mon = tracklab.get_run_system_monitor("r", collect_interval=30)
        mon.start()
        mon.stop()
        hw = tracklab.monitor_hardware("r")
        hw.get_hardware_summary()
        hw.log_all_metrics()
        with hw.monitor_hardware(log_interval=30):
            pass
        tracklab.cleanup_run_monitor("r")
    names = {r.name for r in caplog.records}
    assert all(n.startswith("tracklab.") for n in names), names
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("sample ") and " taken " in m for m in messages) >= 4
    assert sum(m.startswith("sample written") for m in messages) == len(stored("r")) == 5
    assert capfd.readouterr() == ("", "")


# -- monitor_cpu / monitor_memory ---------------------------------------------------------------


def test_cpu_getters_and_units() -> None:
    cpu = tracklab.monitor_cpu("r")
    assert 0 <= cpu.get_cpu_usage() <= 100  # type: ignore[operator]
    cores = cpu.get_core_usage()
    assert len(cores) == cpu.get_cpu_count() == psutil.cpu_count(logical=True)
    assert all(isinstance(u, float) and 0 <= u <= 100 for u in cores)
    load = cpu.get_cpu_load()
    assert load is not None and len(load) == 3 and all(x >= 0 for x in load)
    assert load == pytest.approx(list(os.getloadavg()), abs=2.0)
    assert tracklab.list_runs() == []  # getters write nothing


def test_cpu_readings_never_measure_an_empty_window() -> None:
    """Back-to-back getters reuse a reading younger than FRESH_S instead of dividing ~0 by ~0."""
    cpu = tracklab.monitor_cpu("r")
    overall = cpu.get_cpu_usage()
    cores = cpu.get_core_usage()
    assert overall == pytest.approx(sum(cores) / len(cores), abs=0.01)


def test_log_cpu_metrics_writes_one_cpu_sample() -> None:
    snap = tracklab.monitor_cpu("r").log_cpu_metrics()
    [sample] = stored("r")
    assert set(sample) == {"nodeId", "timestamp", "cpu"}
    assert sample["cpu"]["overall"] == snap["cpu"]["overall"]


def test_memory_getters_and_units() -> None:
    mem = tracklab.monitor_memory("r")
    assert 0 < mem.get_memory_usage() <= 100
    b = mem.get_memory_bytes()
    assert set(b) == {"used", "total", "available"}
    assert all(isinstance(v, int) for v in b.values())
    assert 0 < b["used"] <= b["total"] == psutil.virtual_memory().total
    swap = mem.get_swap_info()
    assert set(swap) == {"used", "total", "percentage"} and swap["used"] <= swap["total"]
    info = mem.get_memory_info()
    assert {"usage", "used", "total", "available", "swap"} <= set(info)
    mem.log_memory_metrics()
    [sample] = stored("r")
    assert set(sample) == {"nodeId", "timestamp", "memory"}


def test_a_run_object_is_accepted_where_a_run_id_is() -> None:
    run = tracklab.init(project="p")
    tracklab.monitor_cpu(run).log_cpu_metrics()
    run.finish()
    assert len(stored(run.id)) == 1


# -- monitor_gpu -------------------------------------------------------------------------------


def test_gpu_getters_with_two_gpus(two_gpus: None) -> None:
    gpu = tracklab.monitor_gpu("r")
    assert gpu.get_gpu_count() == 2
    info = gpu.get_gpu_info()
    assert [g["id"] for g in info] == [0, 1]
    assert all(g["memoryTotal"] == 40 * GIB for g in info)  # bytes
    util = gpu.get_gpu_utilization()
    assert set(util) == {0, 1}
    for i, u in util.items():
        assert fakes.base_utilization(i) <= u <= fakes.base_utilization(i) + 2  # percent
    snap = gpu.log_gpu_metrics()
    [sample] = stored("r")
    assert set(sample) == {"nodeId", "timestamp", "accelerators"}
    assert [g["id"] for g in sample["accelerators"]] == [0, 1]
    assert sample["accelerators"][0]["memory"]["used"] == snap["accelerators"][0]["memory"]["used"]


def test_gpu_getters_without_a_driver(no_gpus: None) -> None:
    gpu = tracklab.monitor_gpu("r")
    assert (gpu.get_gpu_count(), gpu.get_gpu_info(), gpu.get_gpu_utilization()) == (0, [], {})


def test_monitor_gpu_usage_summarizes_the_span(two_gpus: None) -> None:
    gpu = tracklab.monitor_gpu("r")
    with gpu.monitor_gpu_usage(gpu_id=1, interval=0.05) as usage:
        assert usage.end is None
        wait_until(lambda: usage.samples >= 3)
    assert gpu.last_usage is usage
    assert usage.end is not None and usage.duration == pytest.approx(usage.end - usage.start)
    assert usage.samples >= 3 and list(usage.gpus) == [1]
    one = usage.gpus[1]
    base = fakes.base_utilization(1)
    assert base <= one["utilization_mean"] <= one["utilization_peak"] <= base + 2
    assert one["memory_peak"] == one["memory_mean"] == 16 * GIB  # bytes: the fake uses 40 %
    assert isinstance(one["memory_mean"], int)
    assert one["memory_total"] == 40 * GIB and one["samples"] == usage.samples
    samples = stored("r")
    assert len(samples) == usage.samples
    assert all(len(s["accelerators"]) == 2 for s in samples)  # the store indexes by position


def test_monitor_gpu_usage_of_all_gpus(two_gpus: None) -> None:
    with tracklab.monitor_gpu("r").monitor_gpu_usage() as usage:
        pass
    assert sorted(usage.gpus) == [0, 1] and usage.samples == 2  # entry and exit


def test_an_unknown_gpu_id_is_a_value_error_before_the_block(two_gpus: None) -> None:
    ran = []
    gpu = tracklab.monitor_gpu("r")
    for bad in (2, -1, "0", True):
        with pytest.raises(ValueError, match="GPU"), \
                gpu.monitor_gpu_usage(gpu_id=bad):  # type: ignore[arg-type]
            ran.append(bad)
    assert ran == [] and tracklab.list_runs() == []


def test_monitor_gpu_usage_without_a_gpu_runs_the_block(
        no_gpus: None, caplog: pytest.LogCaptureFixture) -> None:
    ran = []
    with caplog.at_level(logging.WARNING, logger="tracklab"), \
            tracklab.monitor_gpu("r").monitor_gpu_usage(gpu_id=0) as usage:
        ran.append(1)
    assert ran == [1] and usage.gpus == {} and usage.duration is not None
    assert "no NVIDIA GPU" in caplog.text
    assert tracklab.list_runs() == []


# -- monitor_hardware ----------------------------------------------------------------------------


def test_hardware_summary_has_every_family(two_gpus: None) -> None:
    summary = tracklab.monitor_hardware("r").get_hardware_summary()
    assert 0 <= summary["cpu"]["overall"] <= 100
    assert 0 < summary["memory"]["usage"] <= 100
    assert 0 < summary["disk"]["used"] <= summary["disk"]["total"]
    assert {"bytesIn", "bytesOut", "packetsIn", "packetsOut", "connections"} <= set(
        summary["network"])
    assert [g["id"] for g in summary["gpu"]] == [0, 1]
    assert tracklab.list_runs() == []


def test_hardware_summary_without_a_gpu(no_gpus: None) -> None:
    assert tracklab.monitor_hardware("r").get_hardware_summary()["gpu"] == []


def test_log_all_metrics_writes_one_complete_sample() -> None:
    tracklab.monitor_hardware("r").log_all_metrics()
    [sample] = stored("r")
    assert FULL | {"process"} <= set(sample)


def test_monitor_hardware_records_entry_and_exit_and_stops_at_once() -> None:
    hw = tracklab.monitor_hardware("r")
    t0 = time.monotonic()
    with hw.monitor_hardware(log_interval=30) as span:
        assert context_threads()
        time.sleep(0.2)
    assert time.monotonic() - t0 < 5  # a 30 s interval is not waited for
    assert context_threads() == []
    assert span.samples == 2 and span.duration is not None and span.duration >= 0.2
    samples = stored("r")
    assert len(samples) == 2 and all(set(s) >= FULL for s in samples)


def test_monitor_hardware_samples_in_the_background() -> None:
    with tracklab.monitor_hardware("r").monitor_hardware(log_interval=0.05) as span:
        assert wait_until(lambda: span.samples >= 4)
    assert len(stored("r")) == span.samples


def test_monitor_hardware_propagates_the_exception_unchanged() -> None:
    class Boom(Exception):
        pass

    err = Boom("the block failed")
    with pytest.raises(Boom) as raised, \
            tracklab.monitor_hardware("r").monitor_hardware(log_interval=30):
        raise err
    assert raised.value is err
    assert context_threads() == []
    assert len(stored("r")) == 2  # the exit sample is still taken


def test_monitor_hardware_rejects_a_bad_interval() -> None:
    for bad in (0, "5", float("inf")):
        with pytest.raises(ValueError, match="log_interval must be a positive number"), \
                tracklab.monitor_hardware("r").monitor_hardware(log_interval=bad):  # type: ignore[arg-type]
            pass


# -- integrate_with_run --------------------------------------------------------------------------


def test_integrate_with_run_starts_and_finishes_a_monitored_run() -> None:
    events: list[Any] = []

    @tracklab.integrate_with_run
    class Trainer:
        """A user's class."""

        def __init__(self, project: str, lr: float = 0.1) -> None:
            events.append(("init", project, lr, self.tracklab_run.project))
            self.project = project

        def finish(self) -> str:
            events.append("finish")
            return "done"

    t = Trainer("proj", lr=0.5)
    run = t.tracklab_run
    assert events == [("init", "proj", 0.5, "proj")]
    mon = tracklab.get_run_system_monitor(run.id)
    assert mon.running
    assert t.finish() == "done"
    assert events[-1] == "finish" and not mon.running
    info = tracklab.open_run(run.id).info
    assert (info["project"], info["status"]) == ("proj", "finished")
    assert len(stored(run.id)) >= 2
    assert Trainer.__doc__ == "A user's class." and Trainer.__init__.__name__ == "__init__"


def test_integrate_with_run_takes_the_project_keyword_and_adds_finish() -> None:
    @tracklab.integrate_with_run
    class Plain:
        def __init__(self, project: str) -> None:
            self.project = project

    p = Plain(project="kw")
    assert p.tracklab_run.project == "kw"
    p.finish()
    assert tracklab.open_run(p.tracklab_run.id).info["status"] == "finished"


def test_integrate_with_run_fails_the_run_when_init_raises() -> None:
    @tracklab.integrate_with_run
    class Broken:
        def __init__(self, project: str) -> None:
            raise RuntimeError("bad config")

    with pytest.raises(RuntimeError, match="bad config"):
        Broken("p")
    [run] = tracklab.list_runs()
    assert run["status"] == "failed"


def test_integrate_with_run_only_decorates_classes() -> None:
    with pytest.raises(TypeError, match="class"):
        tracklab.integrate_with_run(lambda: None)  # type: ignore[type-var]


def test_cleanup_during_a_monitoring_block_keeps_the_statistics_whole() -> None:
    with tracklab.monitor_hardware("r").monitor_hardware(log_interval=30):
        tracklab.monitor_cpu("r").log_cpu_metrics()
        tracklab.cleanup_run_monitor("r")  # closes the run's channel under the block
        tracklab.monitor_cpu("r").log_cpu_metrics()
    view = tracklab.open_run("r")
    assert view.sample_count() == len(view.samples()) == 4
    assert view.system_summary()["cpu.overall"]["count"] == 4
    view.close()


def test_disabled_mode_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLAB_MODE", "disabled")
    mon = tracklab.get_run_system_monitor("r", collect_interval=0.05)
    mon.start()
    assert not mon.running
    mon.log_custom_metric("custom.temperature", 65.5)
    hw = tracklab.monitor_hardware("r")
    assert 0 <= hw.get_cpu_usage() <= 100  # type: ignore[operator]  # readings still work
    hw.log_all_metrics()
    with hw.monitor_hardware(log_interval=0.05) as span:
        pass
    assert span.samples == 0
    tracklab.cleanup_run_monitor("r")
    monkeypatch.delenv("TRACKLAB_MODE")
    assert tracklab.list_runs() == []


def test_a_custom_metric_keeps_every_digit() -> None:
    mon = tracklab.get_run_system_monitor("r")
    mon.log_custom_metric("custom.lr", 3.0e-5)
    mon.log_custom_metric("custom.ratio", 0.123456789)
    assert [s["custom"] for s in stored("r")] == [{"lr": 3.0e-5}, {"ratio": 0.123456789}]
    assert tracklab.open_run("r").system_summary()["custom.lr"]["max"] == 3.0e-5


def test_periodic_samples_count_at_once_and_their_statistics_are_whole_at_close(
        isolated_env: Path) -> None:
    """The sampler's statistics are stored every few seconds, the sample count with every sample:
    a reader of a live run counts every sample, and a closed recorder leaves statistics that
    cover every sample."""
    from tracklab import store as st
    from tracklab.sampling.recorder import SampleRecorder
    from tracklab.store.codec import dumps_exact

    shard = st.open_shard(str(isolated_env), "n")
    num = shard.insert_run({"id": "rec1", "name": "rec", "project": "p", "status": "running",
                            "started_at": time.time(), "heartbeat_at": time.time(), "node": "n",
                            "owner": "sdk", "command": dumps_exact(["x"])})
    path = shard.path
    shard.close()
    rec = SampleRecorder(path, num, heartbeat=False)
    for i in range(20):
        rec({"nodeId": "n", "timestamp": int(time.time() * 1000), "cpu": {"overall": float(i)}})
    view = tracklab.open_run("rec1")
    assert view.sample_count() == len(view.samples()) == 20
    view.close()
    rec.close()
    view = tracklab.open_run("rec1")
    assert view.system_summary()["cpu.overall"] == {"min": 0.0, "max": 19.0, "mean": 9.5,
                                                    "last": 19.0, "count": 20}
    view.close()


def test_a_monitor_started_again_after_cleanup_reads_gpus_and_is_stopped_at_exit(
        two_gpus: None) -> None:
    """The document's MyTrainingLoop keeps its monitor; cleanup() then start() again sampled
    with the collectors cleanup had closed (no GPUs), in a monitor no exit would stop."""
    mon = tracklab.get_run_system_monitor("r", collect_interval=0.2)
    mon.start()
    mon.stop()
    tracklab.cleanup_run_monitor("r")
    mon.start()
    assert wait_until(lambda: mon.sampler.count >= 2)
    assert len(mon.get_current_metrics()["accelerators"]) == 2
    assert mon.get_system_info()["gpu_count"] == 2
    monitoring._at_exit()
    assert not mon.running
    assert [len(s["accelerators"]) for s in stored("r")] == [2] * len(stored("r"))
