"""InfiniBand/RoCE port rates and counters from a fake /sys/class/infiniband tree."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fakes_infiniband import FakeInfiniband
from tracklab.collectors import infiniband
from tracklab.collectors.infiniband import InfinibandCollector, find_ports
from tracklab.collectors.network import NetworkCollector

GB = 10**9


def test_no_infiniband_is_none(tmp_path: Path) -> None:
    assert InfinibandCollector(str(tmp_path / "missing")).collect() is None
    assert NetworkCollector(str(tmp_path / "missing")).collect()["infiniband"] is None


def test_ports_are_found_in_order(tmp_path: Path) -> None:
    FakeInfiniband(tmp_path, [("mlx5_1", 1, "Ethernet"), ("mlx5_0", 2, "InfiniBand"),
                              ("mlx5_0", 1, "InfiniBand")])
    assert [(d, p) for d, p, _ in find_ports(str(tmp_path))] == [
        ("mlx5_0", "1"), ("mlx5_0", "2"), ("mlx5_1", "1")]


def test_rates_in_bytes_per_second_and_counters(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infiniband, "SLOW_EVERY_S", 0.0)
    ib = FakeInfiniband(tmp_path, [("mlx5_0", 1, "InfiniBand"), ("mlx5_1", 1, "Ethernet")])
    t0 = time.monotonic()  # before the collector's first reading: the rates' interval is inside
    c = InfinibandCollector(str(tmp_path))
    # 1 GB out and 2 GB in on the IB port: the data counters count 4-byte words
    ib.add("mlx5_0", 1, "port_xmit_data", GB // 4)
    ib.add("mlx5_0", 1, "port_rcv_data", 2 * GB // 4)
    ib.add("mlx5_0", 1, "port_xmit_wait", 1000)
    ib.set("mlx5_0", 1, "link_downed", 1)
    ib.set("mlx5_0", 1, "symbol_error", 7)
    time.sleep(0.2)
    ports = c.collect()
    elapsed = time.monotonic() - t0
    c.close()
    assert ports is not None and len(ports) == 2
    a, b = ports
    assert (a["device"], a["port"], a["linkLayer"], a["state"], a["rateGbps"]) == (
        "mlx5_0", 1, "InfiniBand", "active", 400.0)
    assert b["linkLayer"] == "Ethernet"  # RoCE
    assert GB / elapsed <= a["txBytes"] <= GB / 0.2
    assert 2 * GB / elapsed <= a["rxBytes"] <= 2 * GB / 0.2
    assert 1000 / elapsed <= a["txWait"] <= 1000 / 0.2
    assert (a["linkDowned"], a["symbolErrors"]) == (1, 7)
    assert (b["txBytes"], b["rxBytes"], b["txWait"]) == (0.0, 0.0, 0.0)


def test_a_counter_that_went_back_or_vanished_is_null(tmp_path: Path) -> None:
    ib = FakeInfiniband(tmp_path, [("mlx5_0", 1, "InfiniBand")])
    ib.set("mlx5_0", 1, "port_xmit_data", 10**6)
    c = InfinibandCollector(str(tmp_path))
    ib.set("mlx5_0", 1, "port_xmit_data", 5)  # the driver reloaded: counters restart
    (ib.port_dir("mlx5_0", 1) / "counters" / "port_rcv_data").write_text("garbage\n")
    time.sleep(0.01)
    port = c.collect()[0]  # type: ignore[index]
    assert port["txBytes"] is None and port["rxBytes"] is None
    time.sleep(0.01)
    ib.set("mlx5_0", 1, "port_xmit_data", 5 + 250)
    assert c.collect()[0]["txBytes"] > 0  # type: ignore[index]
    c.close()


def test_network_section_carries_the_ports(tmp_path: Path) -> None:
    FakeInfiniband(tmp_path, [("mlx5_0", 1, "InfiniBand")])
    net = NetworkCollector(str(tmp_path))
    time.sleep(0.01)
    section = net.collect()
    net.close()
    assert [p["device"] for p in section["infiniband"]] == ["mlx5_0"]
    assert section["infiniband"][0]["txBytes"] == 0.0
