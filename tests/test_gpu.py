"""The GPU collector against the fake NVML scenarios (tests/fakes.py), plus one real-GPU test."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import fakes
from tracklab.collectors._nvml import Nvml, driver_present
from tracklab.collectors.gpu import GpuCollector

ROOT = Path(__file__).resolve().parents[1]
NO_SUCH_PID = 2**22 + 1  # above Linux's largest pid_max, so never a live process

KEYS = {"id", "type", "name", "uuid", "pciBusId", "utilization", "memory", "temperature", "power",
        "powerLimit", "fanSpeed", "energy", "energySource", "clocks", "throttleReasons",
        "eccErrors", "pcieReplays", "visible", "processes", "treeMemory", "treeUtilization",
        "attribution", "memoryUtilization", "memoryTemperature", "pstate", "encoderUtilization",
        "decoderUtilization", "pcie", "nvlink", "retiredPages", "remappedRows", "gpm",
        "migDevices"}

Opener = Callable[..., GpuCollector]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CUDA_VISIBLE_DEVICES", "TRACKLAB_NVML_MODULE", fakes.ENV_SCENARIO,
                 fakes.ENV_PIDS):
        monkeypatch.delenv(name, raising=False)
    yield
    fakes.reset()


@pytest.fixture
def open_gpus() -> Iterator[Opener]:
    """``open_gpus(scenario, **opts)``: a collector over the fake, closed after the test."""
    made: list[GpuCollector] = []

    def make(scenario: str, **opts: Any) -> GpuCollector:
        fakes.use_scenario(scenario, **opts)
        nvml = Nvml.open(module=fakes)
        assert nvml is not None
        made.append(GpuCollector(nvml))
        return made[-1]

    yield make
    for c in made:
        c.close()


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` from the repo root, so ``tests.fakes`` imports as in CI."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=60, check=False)


def check_types(gpu: dict[str, Any]) -> None:
    """The documented types of one accelerator entry (values may be None where NVML says so)."""
    assert set(gpu) == KEYS
    assert isinstance(gpu["id"], int) and gpu["type"] == "gpu"
    assert isinstance(gpu["name"], str)
    for key in ("uuid", "pciBusId"):
        assert gpu[key] is None or isinstance(gpu[key], str)
    for key in ("utilization", "temperature", "power", "powerLimit", "fanSpeed", "energy",
                "memoryUtilization", "memoryTemperature", "encoderUtilization",
                "decoderUtilization"):
        assert gpu[key] is None or isinstance(gpu[key], float), key
    assert set(gpu["memory"]) == {"used", "total", "percentage"}
    assert gpu["memory"]["total"] is None or isinstance(gpu["memory"]["total"], int)
    assert gpu["energySource"] in (None, "counter", "power-integration")
    assert set(gpu["clocks"]) == {"sm", "smMax", "graphics", "memory", "memoryMax"}
    assert gpu["pstate"] is None or 0 <= gpu["pstate"] <= 15
    assert gpu["pcie"] is None or set(gpu["pcie"]) == {"txBytes", "rxBytes", "gen", "genMax",
                                                       "width", "widthMax"}
    assert gpu["nvlink"] is None or set(gpu["nvlink"]) == {
        "links", "txBytes", "rxBytes", "crcErrors", "replayErrors", "recoveryErrors"}
    assert gpu["gpm"] is None or set(gpu["gpm"]) == {
        "smActive", "smOccupancy", "tensorActive", "dramActive", "fp16Active", "fp32Active",
        "fp64Active"}
    assert gpu["throttleReasons"] is None or all(isinstance(r, str) for r in gpu["throttleReasons"])
    assert gpu["visible"] in (None, True, False)
    for p in gpu["processes"]:
        assert set(p) == {"pid", "memory", "utilization", "inTree"}
    assert gpu["attribution"] in (None, "pid", "unattributed")


# -- formats and units --------------------------------------------------------------------------


def test_two_gpus_format_and_units(open_gpus: Opener) -> None:
    c = open_gpus("two_gpus")
    gpus = c.collect()
    assert [g["id"] for g in gpus] == [0, 1]
    for g in gpus:
        check_types(g)
        i = g["id"]
        assert g["name"] == "NVIDIA A100-SXM4-40GB"
        assert g["uuid"].startswith("GPU-") and g["pciBusId"].startswith("00000000:")
        assert fakes.base_utilization(i) <= g["utilization"] <= fakes.base_utilization(i) + 2
        assert g["memory"] == {"used": 16 * fakes.GIB, "total": 40 * fakes.GIB,
                               "percentage": 40.0}
        assert g["temperature"] == 40.0 + 5 * i
        assert 100 + 20 * i <= g["power"] <= 104 + 20 * i  # watts, not NVML's milliwatts
        assert g["powerLimit"] == 400.0
        assert g["fanSpeed"] == 30.0 + i
        assert g["energy"] == 0.0 and g["energySource"] == "counter"
        assert g["clocks"] == {"sm": 1410 - 100 * i, "smMax": 1410, "graphics": 1410 - 100 * i,
                               "memory": 1593, "memoryMax": 1593}
        assert g["eccErrors"] == 0 and g["pcieReplays"] == i
        assert g["visible"] is None
        assert g["processes"] == [] and g["treeMemory"] is None and g["attribution"] is None
    assert gpus[0]["throttleReasons"] == [] and gpus[1]["throttleReasons"] == ["sw_power_cap"]


def test_static_fields_are_read_once(open_gpus: Opener) -> None:
    c = open_gpus("two_gpus")
    for _ in range(3):
        c.collect()
    for static in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo",
                   "nvmlDeviceGetEnforcedPowerLimit", "nvmlGpmQueryDeviceSupport",
                   "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkWidth"):
        assert fakes.calls[static] == 2, static
    assert fakes.calls["nvmlDeviceGetMaxClockInfo"] == 4  # SM and memory, per GPU
    assert fakes.calls["nvmlDeviceGetUtilizationRates"] == 6


def test_info_and_count(open_gpus: Opener) -> None:
    c = open_gpus("two_gpus")
    assert c.count() == 2
    info = c.info()
    assert [i["id"] for i in info] == [0, 1]
    assert info[0] == {"id": 0, "name": "NVIDIA A100-SXM4-40GB", "uuid": info[0]["uuid"],
                       "pciBusId": "00000000:17:00.0", "memoryTotal": 40 * fakes.GIB,
                       "driverVersion": "550.54.15", "cudaVersion": "12.4", "migMode": False}


def test_eight_gpus(open_gpus: Opener) -> None:
    c = open_gpus("eight_gpus")
    assert c.count() == 8
    gpus = c.collect()
    assert [g["id"] for g in gpus] == list(range(8))
    assert all("H100" in g["name"] and g["memory"]["total"] == 80 * fakes.GIB for g in gpus)
    assert len({g["uuid"] for g in gpus}) == 8
    assert all(0 <= g["utilization"] <= 100 for g in gpus)


# -- missing pieces -----------------------------------------------------------------------------


def test_no_driver_is_quiet(monkeypatch: pytest.MonkeyPatch,
                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fakes.use_scenario("no_driver")
    assert Nvml.open(module=fakes) is None
    monkeypatch.setenv("TRACKLAB_NVML_MODULE", "tests.fakes")
    c = GpuCollector()
    assert c.collect() == [] and c.count() == 0 and c.info() == []
    c.close()
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []


def test_no_driver_in_a_subprocess_prints_nothing() -> None:
    code = ("import logging; logging.basicConfig(level=logging.INFO)\n"
            "from tracklab.collectors.gpu import GpuCollector\n"
            "c = GpuCollector(); print(c.collect(), c.count())")
    r = run_python(code, TRACKLAB_NVML_MODULE="tests.fakes", TRACKLAB_FAKE_NVML="no_driver")
    assert (r.returncode, r.stdout, r.stderr) == (0, "[] 0\n", "")


def test_not_supported_fields_are_null_and_the_rest_kept(open_gpus: Opener) -> None:
    c = open_gpus("not_supported", pids={0: [(os.getpid(), 1000)]})
    gpus = c.collect({os.getpid()})
    assert len(gpus) == 2
    for g in gpus:
        check_types(g)
        assert g["fanSpeed"] is None and g["temperature"] is None
        assert g["utilization"] is not None and g["power"] is not None
        assert g["memory"]["percentage"] == 40.0
        assert g["energySource"] == "power-integration"
    assert gpus[0]["processes"] == [{"pid": os.getpid(), "memory": 1000, "utilization": None,
                                     "inTree": True}]
    assert gpus[0]["treeMemory"] == 1000 and gpus[0]["treeUtilization"] is None
    # a capability: asked once per GPU, not on every sample (each refusal is a driver call)
    asked = fakes.calls["nvmlDeviceGetFanSpeed"]
    again = c.collect({os.getpid()})
    assert fakes.calls["nvmlDeviceGetFanSpeed"] == asked and again[1]["fanSpeed"] is None
    assert again[0]["power"] is not None


def test_one_unreadable_field_does_not_cost_the_gpu(open_gpus: Opener,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    c = open_gpus("one_gpu")

    def denied(handle: Any) -> int:
        raise fakes.NVMLError(fakes.NVML_ERROR_NO_PERMISSION)

    def unknown(handle: Any, clock: int) -> int:
        raise fakes.NVMLError(999)  # NVML_ERROR_UNKNOWN

    def no_function(handle: Any) -> int:
        raise fakes.NVMLError(fakes.NVML_ERROR_FUNCTION_NOT_FOUND)  # driver older than 535

    monkeypatch.setattr(fakes, "nvmlDeviceGetFanSpeed", denied)
    monkeypatch.setattr(fakes, "nvmlDeviceGetClockInfo", unknown)
    monkeypatch.setattr(fakes, "nvmlDeviceGetCurrentClocksEventReasons", no_function)
    caplog.set_level(logging.DEBUG)
    first, second = c.collect()[0], c.collect()[0]
    for g in (first, second):
        assert g["fanSpeed"] is None and g["clocks"] == {"sm": None, "smMax": 1410,
                                                        "graphics": None, "memory": None,
                                                        "memoryMax": 1593}
        assert g["throttleReasons"] == []  # from the older ...ThrottleReasons getter
        assert g["utilization"] is not None
    logged = [r.getMessage() for r in caplog.records]
    assert sum("nvmlDeviceGetClockInfo" in m for m in logged) == 1  # once, at DEBUG
    assert not any("nvmlDeviceGetFanSpeed" in m for m in logged)
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_broken_driver_warns_once(monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    def mismatch() -> None:
        raise fakes.NVMLError(fakes.NVML_ERROR_LIB_RM_VERSION_MISMATCH)

    monkeypatch.setattr(fakes, "nvmlInit", mismatch)
    with caplog.at_level(logging.WARNING):
        assert Nvml.open(module=fakes) is None
    assert len(caplog.records) == 1 and "NVML failed" in caplog.records[0].getMessage()


def test_lost_gpu_is_reported_once_and_keeps_its_place(open_gpus: Opener,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    c = open_gpus("gpu_lost")
    with caplog.at_level(logging.WARNING):
        samples = [c.collect() for _ in range(6)]
    # Entry i stays GPU i (the store keys GPUs by position); a lost one reads null from then on.
    assert all([g["id"] for g in s] == [0, 1] for s in samples)
    seen = [[g.get("lost", False) for g in s] for s in samples]
    # GPU 1 answers three utilization calls; whatever the collector asks after that raises, so
    # it is lost in the third or fourth sample and never comes back.
    lost_at = seen.index([False, True])
    assert seen[:2] == [[False, False]] * 2 and lost_at in (2, 3)
    assert seen[lost_at:] == [[False, True]] * (6 - lost_at)
    assert all(s[1]["utilization"] is None for s in samples[lost_at:])
    assert all(s[0]["utilization"] is not None for s in samples)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "GPU 1" in warnings[0].getMessage() and "lost" in warnings[0].getMessage()
    assert c.count() == 1 and [i["id"] for i in c.info()] == [0]


# -- energy -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scenario", "source"), [("one_gpu", "counter"),
                                                   ("not_supported", "power-integration")])
def test_energy_since_first_reading(open_gpus: Opener, scenario: str, source: str) -> None:
    c = open_gpus(scenario)
    t0 = time.monotonic()
    first = c.collect()[0]
    time.sleep(0.2)
    second = c.collect()[0]
    elapsed = time.monotonic() - t0
    assert first["energy"] == 0.0 and first["energySource"] == source
    assert second["energySource"] == source
    # GPU 0 draws 100-104 W, so joules lie between 100 W x the sleep and 104 W x the wall time.
    assert 100 * 0.2 * 0.99 <= second["energy"] <= 104 * elapsed


# -- processes and attribution ------------------------------------------------------------------


def test_tree_processes_are_attributed_by_pid(open_gpus: Opener) -> None:
    me = os.getpid()
    c = open_gpus("one_gpu", pids={0: [(me, 500_000_000), (NO_SUCH_PID, 100)]})
    g = c.collect({me})[0]
    assert g["processes"] == [
        {"pid": me, "memory": 500_000_000, "utilization": float(fakes.PROCESS_SM), "inTree": True},
        {"pid": NO_SUCH_PID, "memory": 100, "utilization": float(fakes.PROCESS_SM),
         "inTree": False},
    ]
    assert g["attribution"] == "pid"
    assert g["treeMemory"] == 500_000_000
    assert g["treeUtilization"] == float(fakes.PROCESS_SM)


def test_without_tree_pids_nothing_is_attributed(open_gpus: Opener) -> None:
    c = open_gpus("one_gpu", pids={0: [(os.getpid(), 1000)]})
    g = c.collect()[0]
    assert g["processes"][0]["inTree"] is False
    assert (g["treeMemory"], g["treeUtilization"], g["attribution"]) == (None, None, None)


def test_tree_with_no_gpu_processes_uses_nothing(open_gpus: Opener) -> None:
    g = open_gpus("one_gpu").collect({os.getpid()})[0]
    assert (g["treeMemory"], g["treeUtilization"], g["attribution"]) == (0, 0.0, "pid")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc to test pids")
def test_host_pids_in_a_container_are_unattributed(open_gpus: Opener) -> None:
    c = open_gpus("one_gpu", pids={0: [(NO_SUCH_PID, 1000), (NO_SUCH_PID + 1, 2000)]})
    g = c.collect({os.getpid()})[0]
    assert g["attribution"] == "unattributed"
    assert g["treeMemory"] is None and g["treeUtilization"] is None
    assert [p["pid"] for p in g["processes"]] == [NO_SUCH_PID, NO_SUCH_PID + 1]
    assert not any(p["inTree"] for p in g["processes"])


def test_env_seam_with_a_real_child_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = ("import json, sys\n"
                "from tracklab.collectors.gpu import GpuCollector\n"
                "c = GpuCollector()\n"
                "print(json.dumps({'count': c.count(), 'gpus': c.collect({int(sys.argv[1])})}))\n"
                "c.close()")
        r = run_python(code, str(child.pid), TRACKLAB_NVML_MODULE="tests.fakes",
                       TRACKLAB_FAKE_NVML="two_gpus",
                       TRACKLAB_FAKE_NVML_PIDS=f"{child.pid}:123456789")
    finally:
        child.kill()
        child.wait()
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["count"] == 2
    gpu0, gpu1 = out["gpus"]
    assert gpu0["processes"] == [{"pid": child.pid, "memory": 123456789,
                                  "utilization": float(fakes.PROCESS_SM), "inTree": True}]
    assert gpu0["treeMemory"] == 123456789 and gpu0["attribution"] == "pid"
    assert gpu1["processes"] == [] and gpu1["treeMemory"] == 0


# -- CUDA_VISIBLE_DEVICES -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("1", [False, True]),
    ("0,1", [True, True]),
    ("{uuid1}", [False, True]),
    ("{uuid1_prefix}", [False, True]),
    ("", [False, False]),
    ("1,bogus,0", [False, True]),  # like CUDA, the list ends at the first invalid entry
    ("7", [False, False]),
    ("GPU-a0a0a0a", [False, False]),  # an ambiguous prefix names no GPU
])
def test_visible_devices(open_gpus: Opener, monkeypatch: pytest.MonkeyPatch, value: str,
                         expected: list[bool]) -> None:
    c = open_gpus("two_gpus")
    uuid1 = c.info()[1]["uuid"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES",
                       value.format(uuid1=uuid1, uuid1_prefix=uuid1[:12]))
    assert [g["visible"] for g in c.collect()] == expected


def test_mig_ids_make_their_parent_visible(open_gpus: Opener,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    c = open_gpus("mig")
    (info,) = c.info()
    assert info["migMode"] is True
    mig = fakes.nvmlDeviceGetUUID(fakes.nvmlDeviceGetMigDeviceHandleByIndex(
        fakes.nvmlDeviceGetHandleByIndex(0), 0))
    assert mig.startswith("MIG-")
    for value, visible in ((mig, True), (mig[:12], True), (f"MIG-{info['uuid']}/1/0", True),
                           ("MIG-00000000-0000-0000-0000-000000000000", False), ("0", True)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        (g,) = c.collect()
        assert g["visible"] is visible, value
    assert g["utilization"] is None  # NVML has no whole-GPU utilization in MIG mode


# -- lifecycle ----------------------------------------------------------------------------------


def test_lazy_open_happens_once_and_close_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLAB_NVML_MODULE", "tests.fakes")
    fakes.use_scenario("two_gpus")
    c = GpuCollector()
    assert fakes.calls["nvmlInit"] == 0
    assert c.count() == 2 and len(c.collect()) == 2 and len(c.info()) == 2
    assert fakes.calls["nvmlInit"] == 1
    c.close()
    c.close()
    assert fakes.calls["nvmlShutdown"] == 1
    assert c.collect() == [] and c.count() == 0 and c.info() == []


def test_hung_reading_does_not_hold_up_close(open_gpus: Opener) -> None:
    c = open_gpus("hang", hang_s=1.0)
    reader = threading.Thread(target=c.collect, daemon=True)
    reader.start()
    reader.join(0.2)
    assert reader.is_alive()  # stuck inside NVML
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 0.5  # not the 1 s the reading hangs for
    reader.join(10)
    assert not reader.is_alive()


def test_pynvml_is_imported_only_when_first_needed() -> None:
    code = ("import sys\n"
            "import tracklab, tracklab.collectors.gpu as gpu\n"
            "assert 'pynvml' not in sys.modules, 'imported by import'\n"
            "c = gpu.GpuCollector()\n"
            "assert 'pynvml' not in sys.modules, 'imported by the constructor'\n"
            "c.count()\n"
            "print('pynvml' in sys.modules)")
    # Naming the module explicitly skips the driver check, so count() must import it here.
    r = run_python(code, TRACKLAB_NVML_MODULE="pynvml")
    assert (r.returncode, r.stdout.strip()) == (0, "True"), r.stderr


@pytest.mark.skipif(driver_present(), reason="this machine has an NVIDIA driver")
def test_without_a_driver_pynvml_is_never_imported() -> None:
    code = ("import sys\n"
            "from tracklab.collectors.gpu import GpuCollector\n"
            "c = GpuCollector()\n"
            "print(c.count(), c.collect(), 'pynvml' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "TRACKLAB_NVML_MODULE"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert (r.returncode, r.stdout.strip()) == (0, "0 [] False"), r.stderr


# -- real hardware ------------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_nvml() -> None:
    nvml = Nvml.open()
    if nvml is None:
        pytest.skip("no NVIDIA driver or GPU on this machine (Nvml.open() returned None)")
    c = GpuCollector(nvml)
    try:
        gpus = c.collect({os.getpid()})
        time.sleep(0.2)
        gpus = c.collect({os.getpid()})
        assert len(gpus) == c.count() >= 1
        for g in gpus:
            check_types(g)
            assert g["memory"]["total"] and g["memory"]["total"] > 0
            assert g["energy"] is None or g["energy"] >= 0.0
        info = c.info()
        assert all(i["cudaVersion"] is None or i["cudaVersion"].count(".") == 1 for i in info)
    finally:
        c.close()


def test_a_gpu_lost_under_the_wrapper_is_one_tracklab_warning(tmp_path: Path) -> None:
    """Beside the training script's own output, the line must say it is tracklab's."""
    env = {**os.environ, "TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "gpu_lost"}
    res = subprocess.run([sys.executable, "-m", "tracklab_cli", "run", "-q", "--interval", "0.2",
                          "--", sys.executable, "-c", "import time; time.sleep(1.5)"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        "tracklab: warning: GPU 1 (GPU-a0a0a0a1-fa6e-4b1d-9c2e-000000000001) is lost: NVML "
        "reports GPU_IS_LOST (often Xid 79, fallen off the bus); its readings are null from now on"]
