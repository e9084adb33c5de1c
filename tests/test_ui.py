"""The dashboard's server over real sockets: its API, the token, the loopback default, bad
requests, a corrupt shard, a burst of requests; and the downsampled series behind its charts."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import TRACKLAB, wait_until
from tests.ui_fixtures import demo_store, make_run

pytest.importorskip("uplot", reason="the ui extra (uplot-python) is not installed")

from tracklab.ui import series
from tracklab.ui.server import Dashboard


def get(server: Any, path: str, headers: dict[str, str] | None = None,
        port: int | None = None, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One raw request (the path goes out as written: no client-side normalisation)."""
    conn = http.client.HTTPConnection(host, port or server.server_address[1], timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def get_json(server: Any, path: str) -> tuple[int, Any]:
    status, headers, body = get(server, path)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def test_runs_api_lists_every_run_with_peaks_and_last_values(served: Dashboard,
                                                             store_dir: Path) -> None:
    ids = demo_store(str(store_dir), runs=3, steps=200)
    status, doc = get_json(served, "/api/runs")
    assert status == 200
    assert sorted(r["id"] for r in doc["runs"]) == sorted(ids)
    row = next(r for r in doc["runs"] if r["id"] == ids[0])
    assert row["status"] == "finished" and row["project"] == "sweep"
    assert row["tags"] == ["baseline"] and row["config"]["batch_size"] == 64
    assert row["peak_gpu_mem"] > 1e9 and row["peak_cpu"] > 0 and row["peak_rss"] > 1e9
    assert set(row["metrics"]) >= {"train/loss", "val/loss"}
    assert doc["warnings"] == []


def test_unknown_run_is_a_json_404(served: Dashboard, store_dir: Path) -> None:
    demo_store(str(store_dir), runs=1, steps=10)
    for path in ("/api/run/nosuchrun", "/api/series?run=nosuchrun&key=train/loss",
                 "/api/keys?run=nosuchrun"):
        status, doc = get_json(served, path)
        assert status == 404, path
        assert "no run matches 'nosuchrun'" in doc["error"]
    status, doc = get_json(served, "/api/nothing")
    assert status == 404 and doc["error"].startswith("no such API")


@pytest.mark.parametrize("path", [
    "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
    "/static/%2e%2e%2f%2e%2e%2fdata.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "/vendor/../__init__.py", "/vendor/%2e%2e%2f__init__.py", "/static/.", "/static/",
    "/../../../../etc/passwd", "/static/app.js%00.png",
])
def test_static_routes_refuse_path_traversal(served: Dashboard, path: str) -> None:
    status, _, body = get(served, path)
    assert status == 404
    assert b"import" not in body and b"root:" not in body


def test_static_page_and_chart_library_are_served_from_the_installed_packages(
        served: Dashboard) -> None:
    status, headers, body = get(served, "/")
    assert status == 200 and b"/vendor/uPlot.iife.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = get(served, "/vendor/uPlot.iife.js")
    assert status == 200 and b"uPlot" in body and headers["Content-Type"].startswith("text/javascript")
    import uplot.static

    assert body == (Path(uplot.static.__file__).parent / "uPlot.iife.js").read_bytes()


def test_loopback_server_refuses_a_foreign_host_header(served: Dashboard) -> None:
    # a page on another site, its name rebound to 127.0.0.1, must not read the API
    status, _, body = get(served, "/api/runs", {"Host": "attacker.example:8177"})
    assert status == 403 and b"loopback" in body
    assert get(served, "/api/runs", {"Host": "localhost:9000"})[0] == 200


def test_corrupt_shard_leaves_other_runs_visible_with_a_warning(served: Dashboard,
                                                               store_dir: Path) -> None:
    ids = demo_store(str(store_dir), runs=2, steps=20)
    (store_dir / "node-broken.db").write_bytes(b"this is not a database" * 100)
    status, doc = get_json(served, "/api/runs")
    assert status == 200
    assert sorted(r["id"] for r in doc["runs"]) == sorted(ids)
    assert len(doc["warnings"]) == 1 and "node-broken.db" in doc["warnings"][0]
    assert "left out" in doc["warnings"][0]
    status, doc = get_json(served, f"/api/run/{ids[0]}")
    assert status == 200 and doc["info"]["id"] == ids[0]


def test_series_keeps_a_spike_logged_once_and_a_zoom_reads_its_range(store_dir: Path) -> None:
    from tracklab.read.runs import open_run

    run = make_run(str(store_dir), "long", steps=60_000, keys=2, samples=False, spike_at=41_234)
    view = open_run(run.id, str(store_dir))
    try:
        whole = series.metric_series(view, ["train/loss"], "step", None, None, 500)["train/loss"]
        assert len(whole["x"]) <= 3 * 500
        assert max(whole["y"]) == 50.0  # one point in 60,000, drawn
        assert whole["x"][0] == 0 and whole["x"][-1] == 59_999
        zoom = series.metric_series(view, ["train/loss"], "step", 41_000, 41_500, 500)["train/loss"]
        assert all(41_000 <= x <= 41_500 for x in zoom["x"])
        assert 41_234 in zoom["x"] and len(zoom["x"]) == 501  # the range read whole: every point
        by_time = series.metric_series(view, ["train/loss"], "time", None, None, 500)["train/loss"]
        assert max(by_time["y"]) == 50.0
    finally:
        view.close()


def test_rollups_are_the_min_max_and_last_of_their_points(store_dir: Path) -> None:
    import sqlite3

    run = make_run(str(store_dir), "r", steps=5000, keys=1, samples=False, spike_at=1500)
    (path,) = store_dir.glob("node-*.db")
    c = sqlite3.connect(path)
    rows = c.execute("SELECT level, bucket, n, min, max, last, first_step, last_step FROM "
                     "metric_rollups WHERE key = 'train/loss' AND level = 256 ORDER BY bucket"
                     ).fetchall()
    c.close()
    assert [r[1] for r in rows] == list(range(20))
    assert [r[2] for r in rows] == [256] * 19 + [5000 - 19 * 256]
    assert rows[5][4] == 50.0 and rows[5][6] == 1280 and rows[5][7] == 1535  # the spike's
    assert run.id


def test_system_series_on_step_and_time_axes(store_dir: Path) -> None:
    from tracklab.read.runs import open_run

    (rid,) = demo_store(str(store_dir), runs=1, steps=400)
    view = open_run(rid, str(store_dir))
    try:
        clock = series.step_clock(view)
        path = "accelerators.0.utilization"
        by_step = series.system_series(view, [path, "no.such.path"], "step", None, None, 200,
                                       clock)
        by_time = series.system_series(view, [path], "time", None, None, 200)[path]
        assert by_step["no.such.path"] == {"x": [], "y": []}
        by_step = by_step[path]
    finally:
        view.close()
    assert by_step["x"] and min(by_step["x"]) >= 0 and max(by_step["x"]) <= 399
    assert by_time["x"][0] >= 1_780_000_000 and len(by_time["x"]) == len(by_time["y"])


# -- the command, over real sockets ---------------------------------------------------------------

def start_cli(store_dir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen([*TRACKLAB, "ui", "--dir", str(store_dir), "--port", "0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    lines = [p.stdout.readline(), p.stdout.readline()]
    url = next((m.group(0) for line in lines if (m := re.search(r"http://\S+", line))), None)
    assert url, f"no URL printed: {lines!r} {p.stderr.read() if p.poll() is not None else ''}"
    return p, url


def stop_cli(p: subprocess.Popen[str]) -> tuple[int, str, str]:
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    return p.returncode, out, err


def test_ui_binds_loopback_by_default_answers_at_once_and_ctrl_c_exits_0(store_dir: Path) -> None:
    demo_store(str(store_dir), runs=1, steps=10)
    started = time.monotonic()
    p, url = start_cli(store_dir)
    try:
        m = re.match(r"http://127\.0\.0\.1:(\d+)/$", url)
        assert m, url
        port = int(m.group(1))
        status, _, _ = get(None, "/api/runs", port=port)
        assert status == 200
        assert time.monotonic() - started < 10  # the figure itself is in tests/benchmarks
        listening = [c.laddr for c in psutil.Process(p.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]
    finally:
        code, out, err = stop_cli(p)
    assert code == 0, err
    assert "Traceback" not in err and "stopped" in out


def test_any_other_host_needs_the_token(store_dir: Path) -> None:
    demo_store(str(store_dir), runs=1, steps=10)
    p, url = start_cli(store_dir, "--host", "0.0.0.0")
    try:
        m = re.match(r"http://0\.0\.0\.0:(\d+)/\?token=([\w-]{20,})$", url)
        assert m, url
        port, token = int(m.group(1)), m.group(2)
        for path in ("/", "/api/runs", "/vendor/uPlot.iife.js", "/api/runs?token=wrong"):
            status, _, body = get(None, path, port=port)
            assert status == 401, path
            assert b"token" in body
        status, headers, _ = get(None, f"/?token={token}", port=port)
        assert status == 200
        cookie = headers["Set-Cookie"].split(";")[0]
        assert cookie == f"tracklab_token={token}" and "HttpOnly" in headers["Set-Cookie"]
        status, _, body = get(None, "/api/runs", {"Cookie": cookie}, port=port)
        assert status == 200 and json.loads(body)["runs"]
        assert get(None, "/api/runs", {"Cookie": "tracklab_token=nope"}, port=port)[0] == 401
    finally:
        code, _, err = stop_cli(p)
    assert code == 0 and "Traceback" not in err


def test_without_the_ui_extra_it_says_what_to_install(store_dir: Path) -> None:
    code = ("import sys; sys.modules['uplot'] = None; sys.argv = ['tracklab', 'ui', '--port', '0'];"
            "from tracklab_cli.__main__ import main; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TRACKLAB_DIR": str(store_dir)})
    assert p.returncode == 1
    assert "pip install 'tracklab[ui]'" in p.stderr and "Traceback" not in p.stderr


def test_port_in_use_is_one_line(store_dir: Path, served: Dashboard) -> None:
    p = subprocess.run([*TRACKLAB, "ui", "--port", str(served.server_address[1])],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.startswith("tracklab: cannot listen on 127.0.0.1:") and "Traceback" not in p.stderr


@pytest.mark.slow
def test_a_burst_of_1000_requests_leaves_it_answering_with_flat_memory(store_dir: Path) -> None:
    ids = demo_store(str(store_dir), runs=3, steps=300)
    p, url = start_cli(store_dir)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    paths = ["/api/runs", f"/api/run/{ids[0]}", f"/api/series?run={ids[1]}&key=train/loss",
             "/api/run/missing", "/static/../x", "/"]
    proc = psutil.Process(p.pid)

    def burst(n: int) -> list[int]:
        codes: list[int] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            for i in range(k, n, 8):
                status = get(None, paths[i % len(paths)], port=port)[0]
                with lock:
                    codes.append(status)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return codes

    try:
        burst(300)  # warm: caches, thread stacks, the allocator's arenas
        before = proc.memory_info().rss
        codes = burst(1000)
        after = proc.memory_info().rss
        assert len(codes) == 1000 and set(codes) <= {200, 404}
        assert get(None, "/api/runs", port=port)[0] == 200
        assert after - before < 15 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB"
        wait_until(lambda: proc.num_threads() <= 4, "request threads to end", 30)
    finally:
        code, _, err = stop_cli(p)
    assert code == 0 and "Traceback" not in err


def test_series_api_zooms_in_seconds_since_each_runs_start(served: Dashboard,
                                                           store_dir: Path) -> None:
    ids = demo_store(str(store_dir), runs=2, steps=300)
    _, runs = get_json(served, "/api/runs")
    start = {r["id"]: r["started_at"] for r in runs["runs"]}
    query = "&".join(f"run={i}" for i in ids)
    status, doc = get_json(served, f"/api/series?{query}&key=train/loss&key=sys:cpu.overall"
                                   "&axis=time&rel=1&lo=100&hi=200&width=300")
    assert status == 200
    for rid in ids:
        for key in ("train/loss", "sys:cpu.overall"):
            xs = doc["runs"][rid]["series"][key]["x"]
            assert xs and all(start[rid] + 100 <= x <= start[rid] + 200 for x in xs), (rid, key)
    status, doc = get_json(served, f"/api/series?{query}&key=train/loss&axis=sideways")
    assert status == 400
    status, doc = get_json(served, f"/api/series?{query}&key=train/loss&lo=abc")
    assert status == 400 and doc["error"].startswith("bad request")


def test_an_ended_runs_row_is_read_again_when_its_record_changes(served: Dashboard,
                                                               store_dir: Path) -> None:
    (rid,) = demo_store(str(store_dir), runs=1, steps=20)
    _, doc = get_json(served, "/api/runs")
    assert doc["runs"][0]["tags"] == ["baseline"]
    _, again = get_json(served, "/api/runs")
    assert again == doc
    p = subprocess.run([*TRACKLAB, "tag", rid, "best"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "TRACKLAB_DIR": str(store_dir)})
    assert p.returncode == 0, p.stderr
    _, doc = get_json(served, "/api/runs")
    assert doc["runs"][0]["tags"] == ["baseline", "best"]


def test_rm_removes_a_runs_rollups(store_dir: Path) -> None:
    import sqlite3

    run = make_run(str(store_dir), "gone", steps=300, keys=1, samples=False)
    keep = make_run(str(store_dir), "kept", steps=300, keys=1, samples=False, seed=1)
    p = subprocess.run([*TRACKLAB, "rm", run.id, "--yes"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "TRACKLAB_DIR": str(store_dir)})
    assert p.returncode == 0, p.stderr
    (path,) = store_dir.glob("node-*.db")
    c = sqlite3.connect(path)
    try:
        left = {r for (r,) in c.execute("SELECT DISTINCT run FROM metric_rollups")}
        nums = {i: n for n, i in c.execute("SELECT num, id FROM runs")}
    finally:
        c.close()
    assert left == {nums[keep.id]}


def test_open_without_a_display_says_so_and_serves(store_dir: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    p, url = start_cli(store_dir, "--open")
    try:
        assert p.stdout is not None
        note = p.stdout.readline() + p.stdout.readline()
        assert "no display here for --open" in note
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert get(None, "/api/runs", port=port)[0] == 200
    finally:
        code, _, err = stop_cli(p)
    assert code == 0 and "Traceback" not in err
