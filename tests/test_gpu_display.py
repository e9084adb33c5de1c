"""The efficiency figures and InfiniBand ports as a user sees them: show, watch, report, and
Prometheus, from a stored run of built Hopper samples with two IB ports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.test_diagnose import series, snap, store_run
from tests.test_diagnose_gpu import hgpu


def ports(i: int) -> list[dict[str, Any]]:
    return [{"device": "mlx5_0", "port": 1, "linkLayer": "InfiniBand", "state": "active",
             "rateGbps": 400.0, "txBytes": 1e9 + i, "rxBytes": 2e9, "txWait": 10.0,
             "linkDowned": 0, "symbolErrors": 0},
            {"device": "mlx5_1\x1b[31m", "port": 1, "linkLayer": "Ethernet", "state": "active",
             "rateGbps": 200.0, "txBytes": 5e8, "rxBytes": 5e8, "txWait": 0.0,
             "linkDowned": 0, "symbolErrors": 3}]


def sample(i: int) -> dict[str, Any]:
    s = snap(i, [hgpu(util=100.0, gpm={"smActive": 3.0, "tensorActive": 0.0})])
    s["network"] = {"bytesIn": 1.0, "bytesOut": 2.0, "connections": 3, "infiniband": ports(i)}
    return s


@pytest.fixture
def stored(isolated_env: Path) -> str:
    return store_run(isolated_env, series(sample), status="running")


def cli(*args: str) -> Any:
    from tracklab_cli.app import app

    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res


def test_show_lists_the_efficiency_rows_and_the_ports(stored: str) -> None:
    data = json.loads(cli("show", stored, "--json").stdout)
    labels = {r["label"]: r for g in data["gpus"] for r in g["rows"]}
    assert labels["SM active (GPM)"]["mean"] == 3.0
    assert labels["PCIe link generation, max"]["max"] == 5
    assert labels["NVLink out"]["unit"] == "B/s"
    system = {r["label"]: r for r in data["system"]}
    assert system["InfiniBand/RoCE port 0 out"]["last"] == 1e9 + 49
    assert system["InfiniBand/RoCE port 1 symbol errors"]["max"] == 3
    text = cli("show", stored).stdout
    assert "tensor pipes active (GPM)" in text and "InfiniBand/RoCE port 1 in" in text
    assert "GPU 0 busy but its SMs idle" in text


def test_watch_shows_sm_activity_and_the_ports(stored: str) -> None:
    text = cli("watch", stored, "--once").stdout
    assert "SM active" in text and "tensor 0% DRAM 35%" in text
    assert "IB mlx5_0/1 out" in text
    assert "IB mlx5_131m/1 in" in text and "\x1b" not in text  # a device name is kept plain


def test_report_has_the_panels_and_rows(stored: str) -> None:
    import tracklab
    from tracklab.read.report import report_html

    view = tracklab.open_run(stored)
    try:
        html = report_html(view, n=50)
    finally:
        view.close()
    for text in ("GPU SM, tensor and DRAM activity (GPM)", "GPU PCIe and NVLink",
                 "InfiniBand / RoCE", "SM active (GPM)", "InfiniBand/RoCE port 0 out"):
        assert text in html, text


def test_prometheus_exports_the_new_figures() -> None:
    pytest.importorskip("prometheus_client")
    from tests.test_prometheus import one, scrape
    from tracklab.sampling.prometheus import PrometheusExporter

    e = PrometheusExporter("r1", "n1", "proj", 0, addr="127.0.0.1")
    try:
        e(sample(0))
        got = scrape(e.url)
    finally:
        e.close()
    assert one(got, "tracklab_gpu_sm_active_percent", gpu="0") == 3.0
    assert one(got, "tracklab_gpu_pcie_link_generation_max", gpu="0") == 5.0
    assert one(got, "tracklab_gpu_nvlink_crc_errors", gpu="0") == 0.0
    assert one(got, "tracklab_infiniband_transmit_bytes_per_second", device="mlx5_0",
               port="1") == 1e9
    assert one(got, "tracklab_infiniband_symbol_errors", device="mlx5_1\x1b[31m",
               port="1") == 3.0


def test_the_dashboard_charts_the_efficiency_figures_and_the_ports(stored: str,
                                                                   isolated_env: Path) -> None:
    pytest.importorskip("uplot", reason="the ui extra (uplot-python) is not installed")
    from tracklab.ui.data import chart_series, keys_of

    charts = {c["title"]: c for c in keys_of(str(isolated_env), [stored])["system"]}
    for title, unit in [("GPU 0 SM active (GPM)", "%"), ("GPU 0 tensor pipes active (GPM)", "%"),
                        ("GPU 0 PCIe out", "B/s"), ("GPU 0 NVLink in", "B/s"),
                        ("InfiniBand/RoCE port 0 out", "B/s"), ("InfiniBand/RoCE port 1 in", "B/s")]:
        assert charts[title]["unit"] == unit, title
    path = charts["GPU 0 SM active (GPM)"]["path"]
    got = chart_series(str(isolated_env), [stored], [f"sys:{path}"], "time", None, None, 100)
    ys = [y for y in _ys(got) if y is not None]
    assert ys and set(ys) == {3.0}


def _ys(got: Any) -> list[Any]:
    """Every y value of a chart_series answer, wherever its runs and keys put them."""
    out: list[Any] = []
    if isinstance(got, dict):
        for k, v in got.items():
            out += v if k == "y" and isinstance(v, list) else _ys(v)
    elif isinstance(got, list):
        for v in got:
            out += _ys(v)
    return out
