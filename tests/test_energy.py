"""RAPL on recorded powercap trees (wrap-around, unreadable counters), power integration, kWh, CO2."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tracklab.collectors import energy
from tracklab.collectors.energy import (
    RaplReader,
    co2_grams,
    integrate_power,
    joules_to_kwh,
)

MAX_RANGE = 262143328850  # max_energy_range_uj of a real Xeon package


def powercap(root: Path, energies: dict[str, int], max_range: int | None = MAX_RANGE) -> None:
    """A powercap tree like a two-socket Intel machine's, with the given energy_uj counters."""
    for domain, uj in energies.items():
        d = root / domain
        d.mkdir(parents=True, exist_ok=True)
        (d / "energy_uj").write_text(f"{uj}\n")
        if max_range is not None:
            (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        (d / "name").write_text("core\n" if domain.count(":") == 2 else
                                f"package-{domain.split(':')[1]}\n")
    (root / "intel-rapl").mkdir(exist_ok=True)  # the control type folder, not a domain
    (root / "intel-rapl" / "enabled").write_text("1\n")


def test_sums_packages_since_construction(tmp_path: Path) -> None:
    powercap(tmp_path, {"intel-rapl:0": 1_000_000, "intel-rapl:1": 5_000_000,
                        "intel-rapl:0:0": 400_000})  # a core domain: part of package 0
    reader = RaplReader(str(tmp_path))
    assert reader.available and reader.packages == ["package-0", "package-1"]
    assert reader.read() == 0.0
    powercap(tmp_path, {"intel-rapl:0": 3_000_000, "intel-rapl:1": 6_000_000,
                        "intel-rapl:0:0": 2_400_000})
    assert reader.read() == pytest.approx(3.0)
    powercap(tmp_path, {"intel-rapl:0": 3_500_000, "intel-rapl:1": 6_000_000})
    assert reader.read() == pytest.approx(3.5)


def test_wrap_around(tmp_path: Path) -> None:
    powercap(tmp_path, {"intel-rapl:0": MAX_RANGE - 1_000_000})
    reader = RaplReader(str(tmp_path))
    powercap(tmp_path, {"intel-rapl:0": MAX_RANGE - 250_000})
    assert reader.read() == pytest.approx(0.75)
    powercap(tmp_path, {"intel-rapl:0": 500_000})  # 0.25 J to the top, then 0.5 J after 0
    assert reader.read() == pytest.approx(1.5)
    powercap(tmp_path, {"intel-rapl:0": 1_500_000})
    assert reader.read() == pytest.approx(2.5)


def test_wrap_without_range_counts_a_lower_bound(tmp_path: Path) -> None:
    powercap(tmp_path, {"intel-rapl:0": 9_000_000}, max_range=None)
    reader = RaplReader(str(tmp_path))
    powercap(tmp_path, {"intel-rapl:0": 2_000_000}, max_range=None)
    assert reader.read() == pytest.approx(2.0)


def test_no_powercap_is_none(tmp_path: Path) -> None:
    reader = RaplReader(str(tmp_path / "absent"))
    assert not reader.available and reader.packages == [] and reader.read() is None
    (tmp_path / "empty").mkdir()
    assert RaplReader(str(tmp_path / "empty")).read() is None


def test_root_only_counter_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # energy_uj is mode 0400 since CVE-2020-8694; tests may run as root, so refuse the open
    powercap(tmp_path, {"intel-rapl:0": 1_000_000})
    real_open = open

    def refuse(path: str, *args: object, **kwargs: object) -> object:
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(energy, "open", refuse, raising=False)
    reader = RaplReader(str(tmp_path))
    assert not reader.available and reader.read() is None


def test_counter_failing_mid_run_keeps_its_baseline(tmp_path: Path) -> None:
    powercap(tmp_path, {"intel-rapl:0": 1_000_000, "intel-rapl:1": 1_000_000})
    reader = RaplReader(str(tmp_path))
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("garbage\n")
    powercap(tmp_path, {"intel-rapl:0": 2_000_000})
    assert reader.read() is None
    powercap(tmp_path, {"intel-rapl:0": 2_000_000, "intel-rapl:1": 3_000_000})
    assert reader.read() == pytest.approx(3.0)


def test_this_machine() -> None:
    reader = RaplReader()
    value = reader.read()
    assert value is None or value >= 0.0
    assert reader.available == (value is not None)


# --- integration and conversions --------------------------------------------------------------


def test_constant_power() -> None:
    series = [(float(t), 100.0) for t in range(11)]  # 100 W for 10 s, sampled every second
    assert integrate_power(series) == pytest.approx(1000.0)
    assert integrate_power([(0.0, 100.0), (10.0, 100.0)]) == pytest.approx(1000.0)


def test_ramp_is_trapezoidal() -> None:
    assert integrate_power([(0.0, 0.0), (10.0, 100.0)]) == pytest.approx(500.0)
    # a recorded GPU warm-up: 0.5 s steps, uneven
    series = [(0.0, 60.0), (0.5, 120.0), (1.0, 240.0), (2.0, 250.0), (2.5, 250.0)]
    assert integrate_power(series) == pytest.approx(45 + 90 + 245 + 125)


def test_gaps_are_left_out() -> None:
    series = [(0.0, 100.0), (1.0, 100.0), (2.0, None), (3.0, 100.0), (4.0, 100.0)]
    assert integrate_power(series) == pytest.approx(200.0)
    series = [(0.0, 100.0), (1.0, math.nan), (2.0, 100.0), (3.0, 100.0)]
    assert integrate_power(series) == pytest.approx(100.0)


def test_too_few_usable_samples_is_none() -> None:
    assert integrate_power([]) is None
    assert integrate_power([(0.0, 100.0)]) is None
    assert integrate_power([(0.0, None), (1.0, None)]) is None
    assert integrate_power([(0.0, 100.0), (1.0, None), (2.0, 100.0)]) is None
    assert integrate_power([(5.0, 100.0), (5.0, 100.0)]) is None  # no time passed


def test_kwh_and_co2() -> None:
    assert joules_to_kwh(3.6e6) == pytest.approx(1.0)
    assert joules_to_kwh(1000.0) == pytest.approx(1000 / 3.6e6)
    assert joules_to_kwh(None) is None
    assert co2_grams(2.0, 400.0) == pytest.approx(800.0)
    assert co2_grams(None, 400.0) is None
    # a 300 W GPU for 24 h on a 475 g/kWh grid
    joules = integrate_power([(0.0, 300.0), (86400.0, 300.0)])
    assert co2_grams(joules_to_kwh(joules), 475.0) == pytest.approx(7.2 * 475.0)
