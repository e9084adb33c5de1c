"""A fake /sys/class/infiniband tree: HCA ports whose counters a test sets and advances."""

from __future__ import annotations

from pathlib import Path

COUNTERS = ("port_xmit_data", "port_rcv_data", "port_xmit_wait", "link_downed", "symbol_error")


class FakeInfiniband:
    """``root`` holds ``<device>/ports/<n>/{link_layer,state,rate,counters/*}`` like sysfs.

    Args:
        root: the folder to build the tree in (a test's tmp_path).
        ports: ``(device, port, link layer)``, e.g. ``("mlx5_0", 1, "InfiniBand")``; RoCE
            ports say ``"Ethernet"``.
    """

    def __init__(self, root: Path, ports: list[tuple[str, int, str]]) -> None:
        self.root = root
        self.ports = ports
        for dev, port, layer in ports:
            d = self.port_dir(dev, port)
            (d / "counters").mkdir(parents=True)
            (d / "link_layer").write_text(layer + "\n")
            (d / "state").write_text("4: ACTIVE\n")
            (d / "rate").write_text("400 Gb/sec (4X NDR)\n")
            for name in COUNTERS:
                self.set(dev, port, name, 0)

    def port_dir(self, dev: str, port: int) -> Path:
        return self.root / dev / "ports" / str(port)

    def set(self, dev: str, port: int, counter: str, value: int) -> None:
        (self.port_dir(dev, port) / "counters" / counter).write_text(f"{value}\n")

    def get(self, dev: str, port: int, counter: str) -> int:
        return int((self.port_dir(dev, port) / "counters" / counter).read_text())

    def add(self, dev: str, port: int, counter: str, delta: int) -> None:
        self.set(dev, port, counter, self.get(dev, port, counter) + delta)
