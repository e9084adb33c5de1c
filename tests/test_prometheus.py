"""Prometheus exposition: the exporter's text format, the wrapper's endpoint, and a real server.

The last test starts Debian's ``prometheus`` binary on loopback, points it at a wrapper's port
and queries its HTTP API until the run's GPU and CPU series appear; it is skipped where the
binary is not installed (``apt-get install prometheus``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRACKLAB, wait_until, write_script

NOT_UP = (OSError, ValueError, KeyError)  # a server not up yet, or not yet scraped

GPU_ENV = {"TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "two_gpus"}
DASHBOARD = Path(__file__).resolve().parent.parent / "tracklab" / "grafana" / \
    "tracklab-dashboard.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str, timeout: float = 5.0) -> dict[str, list[Any]]:
    """``{metric name: [Sample, ...]}`` of one scrape of ``url``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def snapshot(node: str = "n1") -> dict[str, Any]:
    gpu = {"id": 0, "type": "gpu", "name": "Fake A100", "uuid": "GPU-0", "utilization": 51.0,
           "memory": {"used": 17179869184, "total": 42949672960, "percentage": 40.0},
           "temperature": 40.0, "power": 101.5, "powerLimit": 400.0, "fanSpeed": None,
           "energy": 12.5, "clocks": {"sm": 1410, "smMax": 1410}, "treeMemory": 1024}
    return {"nodeId": node, "timestamp": 1_700_000_000_000,
            "cpu": {"overall": 37.5, "cores": [], "loadAverage": [1.5, 1.0, 0.5]},
            "memory": {"usage": 12.0, "used": 3_000_000_000, "total": 25_000_000_000,
                       "swap": {"used": 0, "total": 0, "percentage": 0.0}},
            "disk": {"usage": 22.0, "ioRead": 10.0, "ioWrite": 20.0, "iops": 3.0},
            "network": {"bytesIn": 100.0, "bytesOut": 200.0, "connections": 4},
            "accelerators": [gpu, {**gpu, "id": 1, "uuid": "GPU-1", "utilization": None,
                                   "temperature": 45.0}],
            "process": {"pid": 1, "count": 3, "cpu": 150.0, "rss": 123456789, "threads": 9}}


@pytest.fixture
def exporter() -> Iterator[Any]:
    pytest.importorskip("prometheus_client")
    from tracklab.sampling.prometheus import PrometheusExporter

    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("addr", "127.0.0.1")
        e = PrometheusExporter(kwargs.pop("run_id", "r1"), kwargs.pop("node", "n1"),
                               kwargs.pop("project", "proj"), 0, **kwargs)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def one(samples: dict[str, list[Any]], metric: str, /, **labels: str) -> float:
    hits = [s for s in samples.get(metric, [])
            if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (metric, labels, samples.get(metric))
    return float(hits[0].value)


def test_exposition_of_a_snapshot(exporter: Any) -> None:
    e = exporter()
    got = scrape(e.url)
    assert not any(k.startswith("tracklab_") for k in got)  # nothing sampled yet: no series
    e(snapshot())
    got = scrape(e.url)
    base = {"run_id": "r1", "node": "n1", "project": "proj"}
    for samples in got.values():
        for s in samples:
            if s.name.startswith("tracklab_"):
                assert {k: s.labels[k] for k in base} == base
    assert one(got, "tracklab_cpu_usage_percent") == 37.5
    assert one(got, "tracklab_cpu_load1") == 1.5
    assert one(got, "tracklab_memory_used_bytes") == 3e9
    assert one(got, "tracklab_memory_usage_percent") == 12.0
    assert one(got, "tracklab_process_cpu_percent") == 150.0
    assert one(got, "tracklab_process_rss_bytes") == 123456789
    assert one(got, "tracklab_sample_timestamp_seconds") == 1.7e9
    assert one(got, "tracklab_gpu_utilization_percent", gpu="0") == 51.0
    # a reading the GPU could not give is no sample at all, not a zero
    assert [s.labels["gpu"] for s in got["tracklab_gpu_utilization_percent"]] == ["0"]
    assert one(got, "tracklab_gpu_temperature_celsius", gpu="1") == 45.0
    assert one(got, "tracklab_gpu_memory_used_bytes", gpu="1") == 17179869184
    assert one(got, "tracklab_gpu_power_watts", gpu="0") == 101.5
    assert one(got, "tracklab_gpu_sm_clock_hertz", gpu="0") == 1.41e9
    assert one(got, "tracklab_gpu_info", gpu="1", name="Fake A100", uuid="GPU-1") == 1
    assert "tracklab_gpu_fan_speed_percent" not in got  # null on every GPU
    assert "tracklab_metric" not in got  # no store given


def test_training_metrics_from_the_store(exporter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracklab

    monkeypatch.setenv("RANK", "1")
    run = tracklab.init(project="proj")
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1), "ok": True})
    run.log({"bad": math.nan})
    run.finish()
    view = tracklab.open_run(run.id)
    (shard, row), = view.parts
    where = (shard.path, row["num"])
    view.close()
    e = exporter(run_id=run.id, store=lambda: where)
    e(snapshot())
    got = scrape(e.url)
    assert one(got, "tracklab_metric", key="loss", rank="1", run_id=run.id) == 0.2
    assert one(got, "tracklab_metric", key="ok", rank="1") == 1.0
    assert math.isnan(one(got, "tracklab_metric", key="bad", rank="1"))
    assert one(got, "tracklab_training_step", rank="1") == 5


def test_close_releases_the_port_and_from_env(exporter: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tracklab.errors import TracklabWarning
    from tracklab.sampling.prometheus import PrometheusExporter, from_env

    e = exporter()
    port = e.port
    with pytest.raises(OSError):
        PrometheusExporter("r", "n", None, port, "127.0.0.1")  # in use
    e.close()
    e.close()  # idempotent
    PrometheusExporter("r", "n", None, port, "127.0.0.1").close()  # the port is free again

    assert from_env("r", "n", None) is None  # TRACKLAB_PROMETHEUS_PORT unset
    monkeypatch.setenv("TRACKLAB_PROMETHEUS_PORT", "nope")
    with pytest.warns(TracklabWarning, match="not a port"):
        assert from_env("r", "n", None) is None
    monkeypatch.setenv("TRACKLAB_PROMETHEUS_PORT", "0")
    monkeypatch.setenv("TRACKLAB_PROMETHEUS_ADDR", "127.0.0.1")
    env_exporter = from_env("r", "n", "p")
    assert env_exporter is not None
    try:
        env_exporter(snapshot())
        assert one(scrape(env_exporter.url), "tracklab_cpu_usage_percent", project="p") == 37.5
    finally:
        env_exporter.close()


def test_missing_prometheus_client_is_one_line_exit_2() -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None; "
            "from tracklab_cli.__main__ import main; "
            "main(['run', '--prometheus-port', '9999', '--', 'true'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "pip install 'tracklab[prometheus]'" in r.stderr
    r = subprocess.run([*TRACKLAB, "run", "--prometheus-port", "70000", "--", "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--prometheus-port" in r.stderr


LONG_CHILD = r'''
import os, sys, time, tracklab
tracklab.init()
stop = sys.argv[1]
i = 0
deadline = time.time() + 120
while not os.path.exists(stop) and time.time() < deadline:
    tracklab.log({"loss": 1.0 / (i + 1)})
    i += 1
    time.sleep(0.05)
tracklab.finish()
'''


@pytest.fixture
def wrapper(tmp_path: Path) -> Iterator[Callable[..., tuple[int, str]]]:
    """Start a real ``tracklab run --prometheus-port`` with fake GPUs; stopped at teardown."""
    pytest.importorskip("prometheus_client")
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(run_id: str = "prom-run", node: str = "node7") -> tuple[int, str]:
        child = write_script(tmp_path, LONG_CHILD, "long.py")
        stop = tmp_path / f"stop-{len(started)}"
        port = free_port()
        p = subprocess.Popen(
            [*TRACKLAB, "run", "-q", "--interval", "0.5", "--project", "promproj",
             "--node-id", node, "--run-id", run_id, "--prometheus-port", str(port),
             "--prometheus-addr", "127.0.0.1", "--", sys.executable, str(child), str(stop)],
            env={**os.environ, **GPU_ENV, "RANK": "0"}, stderr=subprocess.PIPE, text=True)
        started.append((p, stop))
        return port, f"http://127.0.0.1:{port}/metrics"

    yield start
    for p, stop in started:
        stop.touch()
        try:
            _out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        assert p.returncode == 0, err
        assert "warning" not in err, err


def test_wrapper_serves_metrics(wrapper: Callable[..., tuple[int, str]]) -> None:
    _port, url = wrapper()

    def ready() -> dict[str, list[Any]] | None:
        got = scrape(url)
        return got if "tracklab_metric" in got and "tracklab_gpu_power_watts" in got else None

    got = wait_until(ready, "the wrapper's GPU and training series", 60, every=0.25,
                     ignore=NOT_UP)
    labels = {"run_id": "prom-run", "node": "node7", "project": "promproj"}
    assert sorted(s.labels["gpu"] for s in got["tracklab_gpu_utilization_percent"]) == ["0", "1"]
    for s in got["tracklab_gpu_utilization_percent"] + got["tracklab_cpu_usage_percent"]:
        assert {k: s.labels[k] for k in labels} == labels
    loss = one(got, "tracklab_metric", key="loss", rank="0", **labels)
    assert 0 < loss <= 1
    assert one(got, "tracklab_process_count") >= 1


def _prometheus_binary() -> str | None:
    return shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus", "/usr/local/bin/prometheus") if os.access(p, os.X_OK)),
        None)


def test_real_prometheus_scrapes_the_wrapper(tmp_path: Path,
                                             wrapper: Callable[..., tuple[int, str]]) -> None:
    binary = _prometheus_binary()
    if binary is None:
        pytest.skip("the Prometheus server is not installed (apt-get install prometheus)")
    port, url = wrapper()
    wait_until(lambda: "tracklab_cpu_usage_percent" in scrape(url), "the wrapper's endpoint", 60,
               every=0.25, ignore=NOT_UP)
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: tracklab\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n")
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{prom_port}"
    try:
        def query(expr: str) -> list[dict[str, Any]]:
            q = urllib.parse.urlencode({"query": expr})
            with urllib.request.urlopen(f"{api}/api/v1/query?{q}", timeout=5) as resp:
                body = json.load(resp)
            assert body["status"] == "success", body
            return list(body["data"]["result"])

        def gpus() -> list[dict[str, Any]] | None:
            if server.poll() is not None:
                pytest.fail(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()}")
            got = query('tracklab_gpu_utilization_percent{run_id="prom-run"}')
            return got if len(got) == 2 else None

        series = wait_until(gpus, "Prometheus to scrape the run's GPU series", 90, every=0.5,
                            ignore=NOT_UP)
        assert sorted(s["metric"]["gpu"] for s in series) == ["0", "1"]
        for s in series:
            m = s["metric"]
            assert (m["node"], m["project"], m["job"]) == ("node7", "promproj", "tracklab")
            assert 0 <= float(s["value"][1]) <= 100
        cpu = wait_until(
            lambda: query('tracklab_cpu_usage_percent{run_id="prom-run",node="node7"}'),
            "the CPU series", 30, every=0.25, ignore=NOT_UP)
        assert len(cpu) == 1
        wait_until(lambda: query('tracklab_metric{run_id="prom-run",key="loss",rank="0"}'),
                   "the training metric series", 30, every=0.25, ignore=NOT_UP)
        # every query of the shipped Grafana dashboard is valid PromQL for this server
        for expr in dashboard_queries():
            query(expr)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    subst = {"$run_id": "prom-run", "$node": ".*", "$project": ".*", "$key": ".*"}
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for k, v in subst.items():
                expr = expr.replace(k, v)
            out.append(expr)
    return out


def test_dashboard_uses_exported_metrics() -> None:
    """The shipped dashboard parses and names only series the exporter serves."""
    import re

    from tracklab.sampling.prometheus import GPU_GAUGES, SYSTEM_GAUGES

    served = {n for n, *_ in SYSTEM_GAUGES + GPU_GAUGES} | {
        "tracklab_sample_timestamp_seconds", "tracklab_gpu_info", "tracklab_metric",
        "tracklab_training_step"}
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "run_id", "node", "project", "key"} <= variables
    used = set()
    for expr in dashboard_queries() + [v["definition"] for v in board["templating"]["list"]
                                       if "definition" in v]:
        used |= set(re.findall(r"tracklab_[a-z0-9_]+", expr))
    assert used and used <= served, used - served
    import importlib.resources

    shipped = importlib.resources.files("tracklab") / "grafana" / "tracklab-dashboard.json"
    assert shipped.is_file()


def test_sdk_standalone_sampler_serves_on_env_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracklab

    port = free_port()
    monkeypatch.setenv("TRACKLAB_PROMETHEUS_PORT", str(port))
    monkeypatch.setenv("TRACKLAB_PROMETHEUS_ADDR", "127.0.0.1")
    run = tracklab.init(project="promsdk", system_monitor=True)
    try:
        deadline = time.monotonic() + 20
        body = ""
        while time.monotonic() < deadline and "tracklab_cpu" not in body:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=5).read().decode()
            except OSError:
                time.sleep(0.1)
        assert f'run_id="{run.id}"' in body and 'project="promsdk"' in body
    finally:
        run.finish()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
