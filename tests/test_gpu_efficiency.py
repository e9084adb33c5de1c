"""The efficiency fields of a GPU reading (GPM, PCIe, NVLink, memory health) against the fake
NVML scenarios, plus their real-GPU check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import fakes
from tests.test_gpu import check_types
from tracklab.collectors import gpu_efficiency
from tracklab.collectors._nvml import Nvml
from tracklab.collectors.gpu import GpuCollector

GPM_WAIT_S = 0.12  # past the 100 ms GPM needs between two samples


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    fakes.reset()


@pytest.fixture
def every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the slow fields and counters on every sample, as if seconds had passed."""
    monkeypatch.setattr(gpu_efficiency, "SLOW_EVERY_S", 0.0)
    monkeypatch.setattr(gpu_efficiency, "COUNTERS_EVERY_S", 0.0)


def open_gpus(scenario: str) -> GpuCollector:
    fakes.use_scenario(scenario)
    nvml = Nvml.open(module=fakes)
    assert nvml is not None
    return GpuCollector(nvml)


def two_readings(scenario: str) -> list[dict[str, Any]]:
    c = open_gpus(scenario)
    try:
        c.collect()
        time.sleep(GPM_WAIT_S)
        gpus = c.collect()
    finally:
        c.close()
    for g in gpus:
        check_types(g)
    return gpus


def test_hopper_gives_gpm_and_counter_rates() -> None:
    g = two_readings("hopper")[0]
    assert g["gpm"] == {"smActive": 72.0, "smOccupancy": 41.0, "tensorActive": 38.0,
                        "dramActive": 35.0, "fp16Active": 6.0, "fp32Active": 12.0,
                        "fp64Active": 0.0}
    assert g["pcie"] == {"txBytes": fakes.PCIE_TX, "rxBytes": fakes.PCIE_RX, "gen": 5,
                         "genMax": 5, "width": 16, "widthMax": 16}  # bytes/s, not GPM's MiB/s
    assert g["nvlink"]["links"] == 18 and g["nvlink"]["txBytes"] == fakes.NVLINK_BPS
    assert g["nvlink"]["crcErrors"] == 0
    assert (g["memoryUtilization"], g["memoryTemperature"], g["pstate"]) == (30.0, 60.0, 0)
    assert (g["encoderUtilization"], g["decoderUtilization"]) == (0.0, 5.0)
    assert g["clocks"]["memory"] == g["clocks"]["memoryMax"] == 2619
    assert g["remappedRows"] == {"correctable": 0, "uncorrectable": 0, "pending": False,
                                 "failed": False}
    assert g["retiredPages"] is None and g["migDevices"] is None
    assert fakes.calls["nvmlDeviceGetPcieThroughput"] == 0  # counters: never the 20 ms call


def test_ampere_without_gpm_or_nvlink() -> None:
    g = two_readings("ampere")[0]
    assert g["gpm"] is None and g["nvlink"] is None
    assert fakes.calls["nvmlGpmSampleGet"] == 0 and fakes.calls["nvmlGpmSampleAlloc"] == 0
    # no byte counters: NVML's 20 ms throughput sample, once per COUNTERS_EVERY_S (both ways)
    assert (g["pcie"]["txBytes"], g["pcie"]["rxBytes"]) == (fakes.PCIE_TX, fakes.PCIE_RX)
    assert fakes.calls["nvmlDeviceGetPcieThroughput"] == 2


def test_nvlink_rate_from_field_counters_without_gpm() -> None:
    g = two_readings("one_gpu")[0]
    assert g["gpm"] is None and g["nvlink"]["links"] == 12
    assert g["nvlink"]["txBytes"] == pytest.approx(fakes.NVLINK_BPS, rel=0.05)


def test_first_reading_has_no_rates_and_no_gpm_window() -> None:
    c = open_gpus("hopper")
    try:
        assert c.count() == 1  # discovery takes GPM's first sample
        time.sleep(GPM_WAIT_S)
        g = c.collect()[0]
    finally:
        c.close()
    assert g["gpm"] is not None and g["gpm"]["smActive"] == 72.0
    assert g["nvlink"]["txBytes"] == fakes.NVLINK_BPS  # from GPM, not the first counter value


def test_gpm_sampled_faster_than_100_ms_repeats_its_window() -> None:
    c = open_gpus("hopper")
    try:
        time.sleep(GPM_WAIT_S)
        first = c.collect()[0]["gpm"]
        taken = fakes.calls["nvmlGpmSampleGet"]
        again = [c.collect()[0]["gpm"] for _ in range(3)]
    finally:
        c.close()
    assert again == [first] * 3
    assert fakes.calls["nvmlGpmSampleGet"] == taken  # no new sample inside the window


@pytest.mark.usefixtures("every_time")
def test_not_supported_is_null_and_asked_once() -> None:
    c = open_gpus("not_supported")
    try:
        readings = [c.collect()[0] for _ in range(3)]
    finally:
        c.close()
    for g in readings:
        check_types(g)
        assert g["gpm"] is None and g["nvlink"] is None and g["pstate"] is None
        assert g["memoryTemperature"] is None and g["remappedRows"] is None
        assert g["pcie"] == dict.fromkeys(("txBytes", "rxBytes", "gen", "genMax", "width",
                                           "widthMax"))
        assert g["utilization"] is not None  # the rest is kept
    for getter in ("nvmlDeviceGetPerformanceState", "nvmlDeviceGetEncoderUtilization",
                   "nvmlDeviceGetCurrPcieLinkGeneration", "nvmlDeviceGetRemappedRows",
                   "nvmlDeviceGetFieldValues", "nvmlGpmQueryDeviceSupport"):
        assert fakes.calls[getter] == 2, getter  # once per GPU
    # one per counter (TX, RX) and GPU, each asked once
    assert fakes.calls["nvmlDeviceGetPcieThroughput"] == 4


@pytest.mark.usefixtures("every_time")
def test_a_field_not_supported_is_dropped_from_the_next_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[int]] = []
    real = fakes.nvmlDeviceGetFieldValues

    def spy(handle: Any, ids: list[int]) -> Any:
        asked.append(list(ids))
        return real(handle, ids)

    monkeypatch.setattr(fakes, "nvmlDeviceGetFieldValues", spy)
    c = open_gpus("one_gpu")  # an A100: no PCIe byte counters
    try:
        for _ in range(3):
            c.collect()
    finally:
        c.close()
    fast = [ids for ids in asked if fakes.NVML_FI_DEV_MEMORY_TEMP in ids]
    assert fakes.NVML_FI_DEV_PCIE_COUNT_TX_BYTES in fast[0]
    assert all(fakes.NVML_FI_DEV_PCIE_COUNT_TX_BYTES not in ids for ids in fast[1:])
    assert all(fakes.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX in ids for ids in fast)


@pytest.mark.usefixtures("every_time")
def test_an_unsupported_clock_does_not_cost_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fakes.nvmlDeviceGetClockInfo
    asked: list[int] = []

    def no_memory_clock(handle: Any, clock: int) -> int:
        asked.append(clock)
        if clock == fakes.NVML_CLOCK_MEM:
            raise fakes.NVMLError(fakes.NVML_ERROR_NOT_SUPPORTED)
        return real(handle, clock)

    monkeypatch.setattr(fakes, "nvmlDeviceGetClockInfo", no_memory_clock)
    c = open_gpus("one_gpu")
    try:
        readings = [c.collect()[0]["clocks"] for _ in range(3)]
    finally:
        c.close()
    assert all(r["sm"] == 1410 and r["graphics"] == 1410 and r["memory"] is None
               for r in readings)
    assert asked.count(fakes.NVML_CLOCK_MEM) == 1
    assert asked.count(fakes.NVML_CLOCK_SM) == 3


@pytest.mark.usefixtures("every_time")
def test_nvlink_errors_rise() -> None:
    c = open_gpus("nvlink_errors")
    try:
        crc = [c.collect()[0]["nvlink"]["crcErrors"] for _ in range(3)]
    finally:
        c.close()
    assert crc == [5, 10, 15]


def test_nccl_hang_and_downtrained_link_shapes() -> None:
    hang = two_readings("nccl_hang")[0]
    assert hang["utilization"] == 100.0 and hang["gpm"]["smActive"] == 3.0
    assert hang["gpm"]["tensorActive"] == 0.0
    link = two_readings("pcie_downtrained")[0]["pcie"]
    assert (link["gen"], link["genMax"], link["width"], link["widthMax"]) == (3, 5, 8, 16)


def test_mig_gpu_instances_get_their_own_gpm() -> None:
    g = two_readings("hopper_mig")[0]
    assert g["utilization"] is None  # NVML gives no whole-GPU utilization in MIG mode
    assert [(m["uuid"], m["gpuInstanceId"]) for m in g["migDevices"]] == [
        ("MIG-1a2b3c4d-0000-5e8a-9b4c-1f2e3d4c5b6a", 1),
        ("MIG-1a2b3c4d-1111-5e8a-9b4c-1f2e3d4c5b6a", 2)]
    assert all(m["smActive"] == 36.0 and m["tensorActive"] == 38.0 for m in g["migDevices"])
    assert fakes.calls["nvmlGpmMigSampleGet"] >= 4


def test_a_failing_gpm_window_is_null_and_the_gpu_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(req: Any) -> Any:
        raise fakes.NVMLError(999)  # NVML_ERROR_UNKNOWN

    monkeypatch.setattr(fakes, "nvmlGpmMetricsGet", broken)
    g = two_readings("hopper")[0]
    assert g["gpm"] is None and g["utilization"] is not None
    assert g["nvlink"]["txBytes"] is not None  # from the field counters instead


def test_close_frees_the_gpm_samples() -> None:
    c = open_gpus("eight_gpus")
    c.collect()
    c.close()
    assert fakes.calls["nvmlGpmSampleFree"] == fakes.calls["nvmlGpmSampleAlloc"] == 16


def test_a_lost_gpu_keeps_the_efficiency_keys() -> None:
    c = open_gpus("gpu_lost")
    try:
        for _ in range(5):
            gpus = c.collect()
    finally:
        c.close()
    lost = gpus[1]
    assert lost["lost"] is True
    assert lost["gpm"] is None and lost["pcie"] is None and lost["nvlink"] is None


# -- real hardware ------------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_efficiency_fields() -> None:
    nvml = Nvml.open()
    if nvml is None:
        pytest.skip("no NVIDIA driver or GPU on this machine (Nvml.open() returned None)")
    c = GpuCollector(nvml)
    try:
        c.collect()
        time.sleep(0.3)
        gpus = c.collect()
    finally:
        c.close()
    for g in gpus:
        check_types(g)
        assert g["memoryUtilization"] is None or 0 <= g["memoryUtilization"] <= 100
        pcie = g["pcie"] or {}
        if pcie.get("gen") is not None and pcie.get("genMax") is not None:
            assert 1 <= pcie["gen"] <= pcie["genMax"]
        if g["gpm"] is not None:  # Hopper and newer
            assert all(v is None or 0 <= v <= 100 for v in g["gpm"].values()), g["gpm"]
        if "H100" in (g["name"] or "") or "H200" in (g["name"] or ""):
            assert g["gpm"] is not None, "a Hopper GPU gives GPM metrics"
