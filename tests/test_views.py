"""Seeing a run: sparklines in show, watch, plot, report, compare, export, rm, ls filters.

The views are tested on runs recorded by a real ``tracklab run`` (two fake GPUs, a child that
logs training metrics), made once for the module; the live views against a run still going.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tracklab
from tests.conftest import ROOT, TRACKLAB, run_tracklab, wait_until, write_script
from tracklab.read import report
from tracklab.read import trends as views
from tracklab.read.export import EXPORT_FIELDS
from tracklab.store import series
from tracklab_cli.app import app
from tracklab_cli.render.text import sparkline

CHILD = """
import math, sys, time, tracklab
tracklab.init(config={"lr": LR, "batch": 32, "seed": 1})
for step in range(STEPS):
    tracklab.log({"train/loss": 2.0 * math.exp(-step / 10), "train/acc": step / STEPS,
                  "epoch": step // 10})
    if step % 10 == 9:
        tracklab.log({"val/loss": 1.0 / (step + 1)})
    time.sleep(0.03)
tracklab.log({"odd/nan": float("nan"), "odd/inf": float("inf"), "odd/big": 2 ** 70,
              "odd/flag": True})
tracklab.finish()
sys.exit(EXIT)
"""

GPU_ENV = {"TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "two_gpus"}


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLAB_")}
    env.update(GPU_ENV, TRACKLAB_DIR=str(store), PYTHONPATH=str(ROOT))
    return env


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real runs in one store: ``a`` finished (exit 0), ``b`` failed (exit 3, other lr)."""
    base = tmp_path_factory.mktemp("recorded")
    store = base / "store"
    ids = {}
    for name, lr, steps, code in (("a", "3e-4", 40, 0), ("b", "1e-3", 30, 3)):
        body = CHILD.replace("LR", lr).replace("STEPS", str(steps)).replace("EXIT", str(code))
        script = write_script(base, body, f"{name}.py")
        res = run_tracklab("run", "--interval", "0.1", "--name", f"run-{name}", "--", sys.executable,
                           str(script), env=_env(store), timeout=120)
        assert res.returncode == code, res.stderr
        ids[name] = next(r["id"] for r in tracklab.list_runs(str(store)) if r["name"] == f"run-{name}")
    return {"store": store, **ids}


@pytest.fixture
def at_recorded(recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("TRACKLAB_DIR", str(recorded["store"]))
    return recorded


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


# -- trends and show ----------------------------------------------------------------------------

def test_to_grid_holds_values_between_points_and_leaves_the_ends_blank() -> None:
    pts = [(12.0, 1.0), (15.0, 2.0), (31.0, 3.0)]
    assert views.to_grid(pts, 0.0, 40.0, 4) == [None, 2.0, 2.0, 3.0]
    assert views.to_grid([(5.0, 0, 7)], 0.0, 40.0, 4) == [7, None, None, None]
    assert views.to_grid([], 0.0, 1.0, 3) == [None, None, None]


def test_sparkline_draws_blanks_nan_and_scales_percentages() -> None:
    line = sparkline([None, 0.0, 50.0, 100.0, float("nan")], 40, "%")
    assert line.plain == " ▁▅█×"
    assert any(span.style == "red" for span in line.spans)  # NaN stands out
    assert sparkline([1.0, 2.0], 40).plain == "▁█"
    assert sparkline([5.0, 5.0]).plain == "▄▄" and sparkline([0, 0]).plain == "▁▁"
    assert sparkline([5.0, 5.0], unit="%").plain == "▁▁"  # 5% of 100 is low, not mid
    assert len(sparkline(list(range(40)), 10).plain) == 10


def test_show_has_a_trend_for_every_system_gpu_and_training_row(at_recorded: dict) -> None:
    res = cli("show", at_recorded["a"], "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    n = data["trend_window"]["columns"]
    assert n == 40
    rows = data["system"] + [r for g in data["gpus"] for r in g["rows"]]
    assert {r["path"] for r in rows} >= {"cpu.overall", "accelerators.1.utilization"}
    for r in rows:
        assert len(r["trend"]) == n and any(v is not None for v in r["trend"]), r["path"]
    loss = [v for v in data["metrics"]["train/loss"]["trend"] if v is not None]
    assert loss == sorted(loss, reverse=True) and loss[0] > 1.5  # falling, on the time axis
    assert loss[-1] == data["metrics"]["train/loss"]["last"]
    # NaN and infinity survive as values (JSON strings), never dropped silently
    assert "nan" in data["metrics"]["odd/nan"]["trend"]
    rendered = CliRunner().invoke(app, ["show", at_recorded["a"]], env={"COLUMNS": "120"})
    assert rendered.exit_code == 0
    assert "trend (" in rendered.stdout and "▁" in rendered.stdout
    narrow = cli("show", at_recorded["a"])  # 80 columns: the trends give way, labels stay
    assert narrow.exit_code == 0 and "trend (" not in narrow.stdout
    assert "process tree RSS" in narrow.stdout


def test_system_and_training_trends_share_the_time_axis(at_recorded: dict) -> None:
    view = tracklab.open_run(at_recorded["a"])
    try:
        start, end = views.span(view)
        info = view.info
        assert start == info["started_at"] and end == info["ended_at"]
        cpu = views.trends(view, ["cpu.overall"], 20)["cpu.overall"]
        loss = views.metric_trends(view, ["train/loss", "val/loss"], 20)
        assert len(cpu) == len(loss["train/loss"]) == 20
        # each trend starts in the column of its first point's time, on one axis for all
        width = (end - start) / 20
        t_cpu = views.system_points(view, ["cpu.overall"], 400)["cpu.overall"][0][0]
        for key, t_first in (("train/loss", view.metrics(["train/loss"])[0]["time"]),
                             ("val/loss", view.metrics(["val/loss"])[0]["time"])):
            col = next(i for i, v in enumerate(loss[key]) if v is not None)
            assert col == min(19, int((t_first - start) / width)), key
            assert t_first > t_cpu  # the child logs after the wrapper's first sample
        assert next(i for i, v in enumerate(cpu) if v is not None) == int((t_cpu - start) / width)
    finally:
        view.close()


def test_metric_points_keep_exact_values_and_end_at_the_last_one(at_recorded: dict) -> None:
    view = tracklab.open_run(at_recorded["a"])
    try:
        pts = views.metric_points(view, ["odd/big", "odd/flag", "odd/inf", "epoch"], 400)
        assert pts["odd/big"][-1][2] == 2 ** 70 and pts["odd/flag"][-1][2] is True
        assert pts["odd/inf"][-1][2] == math.inf
        epochs = [p[2] for p in pts["epoch"]]
        assert epochs == sorted(epochs) and epochs[-1] == 3 and set(map(type, epochs)) == {int}
    finally:
        view.close()


def _build_day_run(store: Path) -> str:
    """86,400 samples a second apart (direct inserts: building them through the recorder would
    take minutes) and 1,000,000 training points logged through the SDK (100 keys x 10,000)."""
    from tracklab.sampling.recorder import SampleRecorder
    from tracklab.store import Shard
    from tracklab.store.codec import dumps_exact, encode_sample, flatten

    run = tracklab.init(name="day", dir=str(store))
    keys = [f"k/{i:02d}" for i in range(99)]
    for step in range(10_000):
        row = dict.fromkeys(keys, step * 0.5)
        row["loss"] = 1.0 / (step + 1)
        tracklab.log(row)
    tracklab.finish()
    snap = {"cpu": {"overall": 50.0, "cores": [{"id": i, "usage": 50.0} for i in range(8)]},
            "memory": {"usage": 40.0, "used": 10 ** 10},
            "accelerators": [{"id": g, "utilization": 90.0, "power": 300.0} for g in range(8)],
            "process": {"cpu": 100.0, "rss": 10 ** 9, "count": 3, "pids": [1, 2, 3]}}
    paths, values = flatten(snap)
    shard = Shard(run._shard_path)
    num = shard.run_num(run.id)
    layout = shard.layout(tuple(paths))
    rec = SampleRecorder(shard.path, num)
    blobs = []
    for k in range(100):  # 100 distinct samples, cycled: content does not change the cost
        vals = list(values)
        vals[0] = float(k)
        rec._update(paths, vals)
        blobs.append(encode_sample(vals))
    start = time.time() - 86_400
    c = shard.conn
    c.execute("BEGIN IMMEDIATE")
    c.executemany("INSERT INTO samples (run, time, layout, data) VALUES (?, ?, ?, ?)",
                  ((num, start + i, layout, blobs[i % 100]) for i in range(86_400)))
    c.execute("INSERT OR REPLACE INTO sample_stats (run, pid, count, stats) VALUES (?, ?, ?, ?)",
              (num, 1, 86_400, dumps_exact(rec.stats)))
    c.execute("UPDATE runs SET started_at = ?, ended_at = ? WHERE num = ?",
              (start, time.time(), num))
    c.execute("COMMIT")
    shard.close()
    return run.id


def _vm_steps(view: Any, fn: Any) -> int:
    """SQLite virtual-machine steps (in thousands) a call costs on the view's connections:
    a measure of work that the machine's noise does not move."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    for shard, _ in view.parts:
        shard.conn.set_progress_handler(tick, 1000)
    try:
        fn()
    finally:
        for shard, _ in view.parts:
            shard.conn.set_progress_handler(None, 0)
    return count[0]


@pytest.mark.slow
def test_views_of_a_day_long_run_read_a_bounded_number_of_rows(at_recorded: dict,
                                                               tmp_path: Path) -> None:
    from tracklab.read.show import summarize

    big = _build_day_run(tmp_path / "big")
    small = tracklab.open_run(at_recorded["a"], str(at_recorded["store"]))
    view = tracklab.open_run(big, str(tmp_path / "big"))
    try:
        assert view.sample_count() == 86_400
        assert sum(1 for _ in view.iter_metrics(["loss"])) == 10_000
        figures = {}
        for name, fn in (("show", lambda v: summarize(v)), ("watch", lambda v: views.live(v)),
                         ("report", lambda v: views.panels(v, n=500))):
            steps_big = _vm_steps(view, lambda fn=fn: fn(view))
            steps_small = _vm_steps(small, lambda fn=fn: fn(small))
            t0 = time.perf_counter()
            fn(view)
            figures[name] = (steps_big, steps_small, time.perf_counter() - t0)
            # a full scan of the samples alone would be thousands of steps; seeks are tens
            assert steps_big < 300, (name, figures)
        shard, row = view.parts[0]
        scan = _vm_steps(view, lambda: sum(1 for _ in shard.samples(row["num"])))
        assert scan > 10 * max(s for s, _, _ in figures.values()), (scan, figures)
        data = summarize(view)
        loss = data["metrics"]["loss"]["trend"]
        assert loss[-1] == 1.0 / 10_000
        print("\nday-long run (86,400 samples, 1,000,000 points): "
              + f"reading every sample {scan}k VM steps; " + ", ".join(
                  f"{k} {s}k VM steps (small run {m}k), {t * 1000:.0f} ms"
                  for k, (s, m, t) in figures.items()))
    finally:
        view.close()
        small.close()


def test_a_rare_key_costs_a_bounded_scan(tmp_path: Path) -> None:
    run = tracklab.init(name="rare", dir=str(tmp_path / "s"))
    for step in range(series.MAX_SCAN_ROWS * 6):
        tracklab.log({"a": 1.0, "b": 2.0})
        if step == 10:
            tracklab.log({"rare": 7.0})
    tracklab.finish()
    view = tracklab.open_run(run.id, str(tmp_path / "s"))
    try:
        steps = _vm_steps(view, lambda: views.metric_points(view, ["rare"], 3))
        pts = views.metric_points(view, ["rare"], 3)
        assert [p[2] for p in pts["rare"]] == [7.0]
        scanned_all = _vm_steps(view, lambda: sum(1 for _ in view.iter_metrics(["rare"])))
        assert steps < scanned_all  # three bins of at most MAX_SCAN_ROWS rows, not the run
    finally:
        view.close()


# -- watch --------------------------------------------------------------------------------------

def test_watch_once_shows_system_gpus_process_and_training(at_recorded: dict) -> None:
    res = cli("watch", at_recorded["a"], "--once")
    assert res.exit_code == 0, res.output
    for text in ("tracklab watch · run-a", "CPU (all cores)", "memory used", "A100-SXM4-40GB",
                 "utilization trend", "train/loss", "val/loss", "finished exit 0"):
        assert text in res.stdout, text


def test_watch_of_an_ended_run_prints_it_and_says_so(at_recorded: dict) -> None:
    res = cli("watch", at_recorded["b"])
    assert res.exit_code == 0
    assert "train/loss" in res.stdout
    assert f"run {at_recorded['b']} failed, exit 3" in res.stderr


def test_watch_without_a_running_run_says_how_to_pick_one(at_recorded: dict) -> None:
    res = cli("watch")
    assert res.exit_code == 1
    assert "no running run" in res.stderr


LIVE_CHILD = """
import os, sys, time, tracklab
tracklab.init()
i = 0
while not os.path.exists(sys.argv[1]):
    tracklab.log({"train/loss": 1.0 / (i + 1)})
    i += 1
    time.sleep(0.05)
tracklab.finish()
"""


def _has_open(pid: int, store: Path) -> bool:
    import psutil

    try:
        return any(f.path.startswith(str(store)) for f in psutil.Process(pid).open_files())
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_watch_follows_a_live_run_stops_on_ctrl_c_and_on_the_runs_end(
        tmp_path: Path, store_dir: Path) -> None:
    flag = tmp_path / "stop"
    script = write_script(tmp_path, LIVE_CHILD)
    runner = subprocess.Popen([*TRACKLAB, "run", "-q", "--interval", "0.2", "--", sys.executable,
                               str(script), str(flag)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        def running() -> list[dict[str, Any]]:
            return [r for r in tracklab.list_runs() if r["status"] == "running"]

        wait_until(lambda: running() and tracklab.open_run(running()[0]["id"]).sample_count() > 1,
                   "the run to start sampling")
        run_id = running()[0]["id"]
        # 1. Ctrl-C: a clean message, exit 0, and the run goes on
        watcher = subprocess.Popen([*TRACKLAB, "watch", "-n", "0.2"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        wait_until(lambda: _has_open(watcher.pid, store_dir), "watch to open the store")
        time.sleep(0.5)  # a few refreshes
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
        assert f"stopped watching {run_id}; the run goes on" in err
        assert "Traceback" not in err
        assert tracklab.open_run(run_id).info["status"] == "running"
        # 2. the run ends: watch shows the last frame, says so, exits 0
        watcher = subprocess.Popen([*TRACKLAB, "watch", run_id, "-n", "0.2"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: _has_open(watcher.pid, store_dir), "watch to open the store")
        flag.write_text("")
        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
        assert f"run {run_id} finished, exit 0" in err
        assert "train/loss" in out
    finally:
        flag.write_text("")
        runner.communicate(timeout=60)
    assert runner.returncode == 0


# -- plot -----------------------------------------------------------------------------------------

def test_plot_writes_png_and_svg_with_a_panel_per_family(at_recorded: dict,
                                                         tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "run.png"
    res = cli("plot", at_recorded["a"], "-o", str(png))
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    svg = tmp_path / "run.svg"
    res = cli("plot", at_recorded["a"], "-o", str(svg), "--metric", "train", "--metric",
              "accelerators.*.utilization", "--step")
    assert res.exit_code == 0, res.output
    text = svg.read_text()
    assert "train/loss" in text and "GPU 1 utilization" in text and ">step<" in text
    assert "val/loss" not in text and "CPU (all cores)" not in text
    assert "(2 panels)" in res.stderr


def test_plot_of_many_metrics_draws_a_readable_figure_and_counts_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested dicts (dotted keys) share a panel per top-level name; past 16 panels of 10 keys
    the figure stops growing and a note counts what is left out."""
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("TRACKLAB_DIR", str(tmp_path / "store"))
    run = tracklab.init(name="wide")
    for step in range(3):  # 30 families: 29 of 10 keys, one of 15 (nested dicts, flattened)
        run.log({f"layer{i:02d}": {f"k{j:02d}": float(step + j) for j in range(10)}
                 for i in range(29)} | {"val": {f"k{j:02d}": 1.0 for j in range(15)}}, step=step)
    run.finish()
    data = views.panels(tracklab.open_run(run.id), max_panels=16, max_series=10)
    training = [p for p in data["panels"] if p["training"]]
    assert [p["title"] for p in training] == [f"layer{i:02d}" for i in range(16)]
    assert all(len(p["series"]) == 10 for p in training)
    assert data["left_out"] == 29 * 10 + 15 - 160
    png = tmp_path / "wide.png"
    res = cli("plot", run.id, "-o", str(png), "--metric", "val")
    assert res.exit_code == 0, res.output
    assert "(1 panel)" in res.stderr and "5 more training metric(s) not drawn" in res.stderr
    res = cli("plot", run.id, "-o", str(png))
    assert res.exit_code == 0, res.output
    assert "145 more training metric(s) not drawn" in res.stderr


def test_plot_refuses_unknown_formats_and_unmatched_metrics(at_recorded: dict,
                                                            tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res = cli("plot", at_recorded["a"], "-o", str(tmp_path / "x.bmpx"))
    assert res.exit_code == 2 and ".png, .svg or .pdf" in res.stderr
    res = cli("plot", at_recorded["a"], "-o", str(tmp_path / "x.png"), "--metric", "nope*")
    assert res.exit_code == 1 and "no series matches" in res.stderr


def test_plot_without_matplotlib_says_how_to_install_it(at_recorded: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    res = cli("plot", at_recorded["a"], "-o", str(tmp_path / "x.png"))
    assert res.exit_code == 1
    assert "pip install 'tracklab[plot]'" in res.stderr
    assert not (tmp_path / "x.png").exists()


# -- report -------------------------------------------------------------------------------------

def test_report_is_one_self_contained_page(at_recorded: dict, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = cli("report", at_recorded["a"], "-o", str(out))
    assert res.exit_code == 0, res.output
    html = out.read_text()
    for needle in ("<h1>run-a", "finished · exit 0", "<h3>System</h3>", "GPU 1",
                   "<h3>Training metrics</h3>", 'class="line"', "train/loss", "lr=0.0003"):
        assert needle in html, needle
    lowered = html.lower()
    assert "http://" not in lowered and "https://" not in lowered  # nothing fetched
    assert "<link" not in lowered and "src=" not in lowered
    assert html.count("<figure") >= 8  # CPU, memory, GPUs, disk, network, train, val, ...
    piped = cli("report", at_recorded["a"])
    assert piped.stdout.startswith("<!doctype html>")


def test_report_includes_the_diagnosis(at_recorded: dict,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    def findings(*args: Any, **kwargs: Any) -> list[Any]:
        return [{"severity": "warning", "message": "GPU 0 idle 62% of the run",
                 "evidence": "utilization < 5% in 31 of 50 samples"}, "swap used"]

    view = tracklab.open_run(at_recorded["a"])
    try:
        if importlib.util.find_spec("tracklab.read.diagnose") is None:  # before omitted
            assert 'id="diagnosis"' not in report.report_html(view)
            fake = types.ModuleType("tracklab.read.diagnose")
            fake.diagnose = findings  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, "tracklab.read.diagnose", fake)
        else:
            real = importlib.import_module("tracklab.read.diagnose")
            assert 'id="diagnosis"' in report.report_html(view)  # the real rules ran
            monkeypatch.setattr(real, "diagnose", findings)
        html = report.report_html(view)
    finally:
        view.close()
    assert 'id="diagnosis"' in html
    assert "GPU 0 idle 62% of the run" in html and "31 of 50 samples" in html
    assert "swap used" in html
    assert html.index('id="diagnosis"') < html.index('id="tables"') < html.index('id="charts"')


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browse(html_path: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    browser = _chromium()
    assert browser
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", *extra, html_path.as_uri()],
        capture_output=True, text=True, timeout=120)


HOVER = """<script>
var fig = document.querySelector('figure.chart'), svg = fig.querySelector('svg');
var r = svg.getBoundingClientRect();
svg.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + r.width * 0.6,
                                               clientY: r.top + 20, bubbles: true}));
document.documentElement.setAttribute('data-tip', fig.querySelector('.tip').textContent);
</script></body>"""


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (apt-get install "
                    "chromium) to load the report in a real browser")
def test_report_loads_in_headless_chromium_and_draws_its_charts(at_recorded: dict,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert cli("report", at_recorded["a"], "-o", str(out)).exit_code == 0
    html = out.read_text()
    charts = html.count('<figure class="chart"')
    # the page's own script runs, finds a drawn line in every chart, and says so
    res = _browse(out, tmp_path, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f'data-charts-drawn="{charts}"' in res.stdout
    assert "Uncaught" not in res.stderr and ":ERROR:CONSOLE" not in res.stderr
    assert res.stdout.count('<path class="line"') >= charts - 1
    # hovering a chart reads its values out
    hover = tmp_path / "hover.html"
    hover.write_text(html.replace("</body>", HOVER))
    res = _browse(hover, tmp_path, "--dump-dom")
    tip = res.stdout.split('data-tip="', 1)[1].split('"', 1)[0]
    assert tip.startswith("at 0:") and "CPU (all cores): " in tip and "%" in tip
    # and it renders: a screenshot that is not blank
    shot = tmp_path / "report.png"
    res = _browse(out, tmp_path, f"--screenshot={shot}", "--window-size=900,2400")
    assert res.returncode == 0 and shot.stat().st_size > 50_000


# -- compare ----------------------------------------------------------------------------------------

def test_compare_marks_the_differences_that_matter(at_recorded: dict) -> None:
    res = cli("compare", at_recorded["a"], at_recorded["b"], "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["id"] for r in data["runs"]] == [at_recorded["a"], at_recorded["b"]]
    rows = {(s["title"], r["label"]): r for s in data["sections"] for r in s["rows"]}
    assert rows[("run", "exit code")]["values"] == [0, 3]
    assert rows[("run", "exit code")]["marked"] and rows[("run", "status")]["marked"]
    assert not rows[("run", "host")]["marked"]
    assert rows[("config (differences)", "lr")]["values"] == [0.0003, 0.001]
    assert ("config (differences)", "batch") not in rows  # identical keys are counted only
    assert rows[("training metrics (last value)", "train/loss")]["marked"]  # 0.04 vs 0.11
    assert not rows[("training metrics (last value)", "train/acc")]["marked"]  # 0.975, 0.967
    assert not rows[("training metrics (last value)", "odd/big")]["marked"]
    assert {"GPU 0 mean utilization", "GPU 1 energy", "peak CPU"} <= {
        label for (title, label) in rows if title == "system"}
    table = cli("compare", at_recorded["a"], at_recorded["b"])
    assert table.exit_code == 0
    assert "exit code" in table.stdout and "* differs" in table.stdout


def test_compare_needs_two_runs(at_recorded: dict) -> None:
    res = cli("compare", at_recorded["a"])
    assert res.exit_code == 2 and "at least two runs" in res.stderr


# -- export -----------------------------------------------------------------------------------------

def test_export_metrics_csv_is_every_point_exactly(at_recorded: dict) -> None:
    res = cli("export", at_recorded["a"], "--what", "metrics", "--format", "csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0]) == list(EXPORT_FIELDS)
    view = tracklab.open_run(at_recorded["a"])
    try:
        assert len(rows) == len(view.metrics())
    finally:
        view.close()
    loss = [r for r in rows if r["key"] == "train/loss"]
    assert [float(r["value"]) for r in loss] == [2.0 * math.exp(-s / 10) for s in range(40)]
    assert {r["run_id"] for r in rows} == {at_recorded["a"]}
    odd = {r["key"]: r["value"] for r in rows if r["key"].startswith("odd/")}
    assert odd == {"odd/nan": "nan", "odd/inf": "inf", "odd/big": str(2 ** 70),
                   "odd/flag": "true"}


def test_export_jsonl_is_strict_json_and_samples_are_flat(at_recorded: dict) -> None:
    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))

    res = cli("export", at_recorded["a"], "--format", "jsonl")
    lines = [strict(line) for line in res.stdout.splitlines()]
    assert {"key": "odd/nan", "value": "nan"}.items() <= next(
        x for x in lines if x["key"] == "odd/nan").items()
    assert next(x for x in lines if x["key"] == "odd/flag")["value"] is True  # a JSON boolean
    res = cli("export", at_recorded["a"], "--what", "samples", "-f", "jsonl",
              "--key", "cpu.overall", "--key", "accelerators.1.power")
    got = [strict(line) for line in res.stdout.splitlines()]
    assert {x["key"] for x in got} == {"cpu.overall", "accelerators.1.power"}
    assert all(x["step"] is None and isinstance(x["value"], (int, float)) for x in got)
    times = [x["time"] for x in got if x["key"] == "cpu.overall"]
    assert times == sorted(times) and len(times) >= 3
    every = cli("export", at_recorded["a"], "--what", "samples")
    keys = {r["key"] for r in csv.DictReader(io.StringIO(every.stdout))}
    assert "memory.used" in keys and "accelerators.0.utilization" in keys
    assert not any(k.endswith((".id", ".pid")) or ".pids." in k for k in keys)


def test_export_to_a_file_takes_the_format_from_its_suffix(at_recorded: dict,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    res = cli("export", at_recorded["a"], "-o", str(out))
    assert res.exit_code == 0 and "rows to" in res.stderr
    assert json.loads(out.read_text().splitlines()[0])["run_id"] == at_recorded["a"]
    assert not list(tmp_path.glob("*.part"))


def test_export_parquet(at_recorded: dict, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "m.parquet"
    res = cli("export", at_recorded["a"], "-o", str(out))
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.column_names == list(EXPORT_FIELDS)
    loss = [v for k, v in zip(table.column("key").to_pylist(), table.column("value").to_pylist())
            if k == "train/loss"]
    assert loss[0] == 2.0 and len(loss) == 40


def test_export_parquet_without_pyarrow_says_how_to_install_it(
        at_recorded: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    res = cli("export", at_recorded["a"], "-o", str(tmp_path / "m.parquet"))
    assert res.exit_code == 1 and "pip install 'tracklab[parquet]'" in res.stderr
    assert not list(tmp_path.iterdir())


def test_export_into_a_closed_pipe_stops_quietly(at_recorded: dict) -> None:
    p = subprocess.Popen([*TRACKLAB, "export", at_recorded["a"], "--what", "samples"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_env(at_recorded["store"]))
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.readline().startswith(b"run_id,")
    p.stdout.close()  # like `| head -1`
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert "Traceback" not in err and p.returncode in (0, 1)


# -- rm and ls -------------------------------------------------------------------------------------

@pytest.fixture
def copied(recorded: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    store = tmp_path / "copy"
    shutil.copytree(recorded["store"], store)
    monkeypatch.setenv("TRACKLAB_DIR", str(store))
    return {**recorded, "store": store}


def test_rm_asks_and_deletes_everything_of_the_run(copied: dict) -> None:
    res = cli("rm", copied["a"], input="n\n")
    assert res.exit_code == 1 and "nothing deleted" in res.stderr
    assert tracklab.open_run(copied["a"]).info["id"] == copied["a"]
    res = cli("rm", copied["a"], input="y\n")
    assert res.exit_code == 0, res.output
    assert "deleted 1 run" in res.stderr
    with pytest.raises(tracklab.RunNotFound):
        tracklab.open_run(copied["a"])
    db = next(copied["store"].glob("node-*.db"))
    with sqlite3.connect(db) as c:  # nothing of it is left behind
        for table in ("points", "samples", "metric_stats", "sample_stats", "procs"):
            runs = {r[0] for r in c.execute(f"SELECT DISTINCT run FROM {table}")}
            assert len(runs) <= 1, table  # only run b's rows remain
    assert [r["id"] for r in tracklab.list_runs()] == [copied["b"]]


def test_rm_with_yes_and_unknown_runs(copied: dict) -> None:
    res = cli("rm", "no-such-run", copied["a"], "--yes")
    assert res.exit_code == 1 and "no run matches" in res.stderr
    assert len(tracklab.list_runs()) == 2  # nothing deleted when one ref fails
    res = cli("rm", copied["a"], copied["b"], copied["a"], "--yes")
    assert res.exit_code == 0 and "deleted 2 runs" in res.stderr
    assert tracklab.list_runs() == []


def test_rm_refuses_a_running_run_unless_forced(store_dir: Path) -> None:
    run = tracklab.init(name="live")
    tracklab.log({"x": 1.0})
    res = cli("rm", run.id, "--yes")
    assert res.exit_code == 1 and "still running" in res.stderr
    run.finish()
    assert cli("rm", run.id, "--yes").exit_code == 0


def test_ls_filters_by_age_and_sorts(at_recorded: dict) -> None:
    def ids(*args: str) -> list[str]:
        res = cli("ls", "--json", *args)
        assert res.exit_code == 0, res.output
        return [json.loads(line)["id"] for line in res.stdout.splitlines()]

    a, b = at_recorded["a"], at_recorded["b"]
    assert ids() == [b, a]  # newest first
    assert ids("--since", "1h") == [b, a]
    assert ids("--since", "2999-01-01") == []
    assert ids("--sort", "duration") == [a, b]  # a logged 40 steps, b 30
    assert ids("--sort", "name") == [a, b] and ids("--sort", "name", "--reverse") == [b, a]
    assert ids("--status", "failed") == [b]
    assert ids("--sort", "duration", "--limit", "1") == [a]
    bad = cli("ls", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "age" in bad.output
    assert cli("ls", "--sort", "colour").exit_code == 2


def test_parse_since() -> None:
    from tracklab_cli.commands.views import parse_since

    assert parse_since("90s", now=1000.0) == 910.0
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("1w", now=1e6) == 1e6 - 7 * 86400


def test_views_of_a_run_with_nothing_recorded_yet(store_dir: Path, tmp_path: Path) -> None:
    run = tracklab.init(name="bare")
    run.finish()
    show = cli("show", run.id)
    assert show.exit_code == 0 and "no system samples" in show.stdout
    watch = cli("watch", run.id, "--once")
    assert watch.exit_code == 0
    assert "no system samples yet" in watch.stdout and "no training metrics yet" in watch.stdout
    assert cli("report", run.id, "-o", str(tmp_path / "r.html")).exit_code == 0
    assert "no series to draw" in (tmp_path / "r.html").read_text()
    export = cli("export", run.id)
    assert export.exit_code == 0 and export.stdout == ",".join(EXPORT_FIELDS) + "\n"
    if importlib.util.find_spec("matplotlib") is not None:
        plot = cli("plot", run.id, "-o", str(tmp_path / "p.png"))
        assert plot.exit_code == 1 and "no samples or training metrics" in plot.stderr


def test_views_of_an_int_beyond_float_range(store_dir: Path, tmp_path: Path) -> None:
    # log() keeps such an int exactly; report, plot and parquet export died converting it
    run = tracklab.init(name="huge")
    tracklab.log({"count": 10**400, "loss": 1.0})
    tracklab.log({"count": 5, "loss": 0.5})
    run.finish()
    assert cli("report", run.id, "-o", str(tmp_path / "r.html")).exit_code == 0
    if importlib.util.find_spec("matplotlib") is not None:
        plot = cli("plot", run.id, "-o", str(tmp_path / "p.png"))
        assert plot.exit_code == 0, plot.output
    if importlib.util.find_spec("pyarrow") is not None:
        import pyarrow.parquet as pq

        res = cli("export", run.id, "-o", str(tmp_path / "m.parquet"))
        assert res.exit_code == 0, res.output
        table = pq.read_table(tmp_path / "m.parquet")
        assert sorted(zip(table.column("key").to_pylist(), table.column("value").to_pylist())) \
            == [("count", 5.0), ("count", math.inf), ("loss", 0.5), ("loss", 1.0)]


def test_sql_lives_only_in_the_store() -> None:
    for path in ("tracklab/read/trends.py", "tracklab/read/report.py", "tracklab_cli/commands/views.py",
                 "tracklab_cli/render/views.py"):
        text = (ROOT / path).read_text()
        for word in ("SELECT ", "INSERT ", "DELETE FROM", "UPDATE "):
            assert word not in text, (path, word)
