"""The GPU-efficiency diagnosis rules, positive and negative, on built sample series; then on
a stored run (the bounded sample read keeps the fields they need)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.test_diagnose import N, gpu, info, only, rules, series, snap, store_run
from tracklab.read.diagnose import diagnose

TRAINING = {"smActive": 72.0, "smOccupancy": 41.0, "tensorActive": 38.0, "dramActive": 35.0,
            "fp16Active": 6.0, "fp32Active": 12.0, "fp64Active": 0.0}
LINK = {"gen": 5, "genMax": 5, "width": 16, "widthMax": 16, "txBytes": 1e9, "rxBytes": 1e9}


def hgpu(i: int = 0, util: float = 95.0, gpm: dict[str, Any] | None = None,
         pcie: dict[str, Any] | None = None, nvlink_crc: int = 0, memory_util: float = 30.0,
         visible: bool | None = None) -> dict[str, Any]:
    g = gpu(i, util=util, visible=visible)
    g.update({"gpm": dict(TRAINING, **(gpm or {})), "pcie": dict(LINK, **(pcie or {})),
              "memoryUtilization": memory_util,
              "nvlink": {"links": 18, "txBytes": 0.0, "rxBytes": 0.0, "crcErrors": nvlink_crc,
                         "replayErrors": 0, "recoveryErrors": 0}})
    return g


def run(make: Any) -> list[dict[str, Any]]:
    return diagnose(info(), None, series(lambda i: snap(i, [make(i)])))


def test_a_healthy_hopper_run_has_no_findings() -> None:
    assert run(lambda i: hgpu()) == []


# -- gpu-busy-sm-idle -----------------------------------------------------------------------------


def test_busy_sm_idle_positive_the_nccl_hang_shape() -> None:
    # trains for the first 60 %, then one rank hangs in a collective: 100 %, SMs at 3 %
    found = run(lambda i: hgpu(util=100.0, gpm={"smActive": 3.0, "tensorActive": 0.0})
                if i >= 0.6 * N else hgpu())
    f = only(found, "gpu-busy-sm-idle")
    assert f["severity"] == "warning" and f["figures"]["share"] == 40.0
    assert f["figures"]["sm_active_median"] == 3.0
    assert "20 of 50" in f["evidence"] and "NCCL" in f["evidence"]


def test_busy_sm_idle_negative() -> None:
    # idle SMs at low utilization is an idle GPU, not this rule; nor a brief stall (20 %)
    assert "gpu-busy-sm-idle" not in rules(run(lambda i: hgpu(util=5.0, gpm={"smActive": 1.0})))
    assert "gpu-busy-sm-idle" not in rules(run(
        lambda i: hgpu(util=100.0, gpm={"smActive": 3.0}) if i % 5 == 0 else hgpu()))
    # without GPM (Ampere) it cannot tell, and says nothing
    assert "gpu-busy-sm-idle" not in rules(run(lambda i: gpu(0, util=100.0)))
    # a GPU not given to the run is not its concern
    assert "gpu-busy-sm-idle" not in rules(run(
        lambda i: hgpu(util=100.0, gpm={"smActive": 3.0}, visible=False)))


# -- tensor-cores-unused --------------------------------------------------------------------------


def test_tensor_cores_unused_positive() -> None:
    found = run(lambda i: hgpu(gpm={"smActive": 85.0, "tensorActive": 0.4, "fp32Active": 60.0}))
    f = only(found, "tensor-cores-unused")
    assert f["severity"] == "info" and f["figures"]["tensor_active_median"] == 0.4
    assert "FP32 pipe's 60%" in f["evidence"] and "autocast" in f["evidence"]


def test_tensor_cores_unused_negative() -> None:
    assert "tensor-cores-unused" not in rules(run(lambda i: hgpu(gpm={"smActive": 85.0})))
    # SMs mostly quiet: nothing to say about what pipes they would use
    assert "tensor-cores-unused" not in rules(run(
        lambda i: hgpu(gpm={"smActive": 85.0 if i % 10 == 0 else 10.0, "tensorActive": 0.0})))


# -- pcie-downtrained ------------------------------------------------------------------------------


def test_pcie_downtrained_positive() -> None:
    found = run(lambda i: hgpu(pcie={"gen": 3, "width": 8}))
    f = only(found, "pcie-downtrained")
    assert f["severity"] == "warning"
    assert "Gen3 x8 of Gen5 x16" in f["message"] and "12% of its bandwidth" in f["evidence"]
    assert (f["figures"]["gen"], f["figures"]["width_max"]) == (3, 16)


def test_pcie_downtrained_negative_an_idle_gpu_lowers_its_generation() -> None:
    assert "pcie-downtrained" not in rules(run(lambda i: hgpu(util=0.0, pcie={"gen": 1})))
    assert "pcie-downtrained" not in rules(run(lambda i: hgpu()))
    # a link that dropped once while busy, not for most of the run
    assert "pcie-downtrained" not in rules(run(
        lambda i: hgpu(pcie={"gen": 4}) if i == 10 else hgpu()))


# -- nvlink-errors ---------------------------------------------------------------------------------


def test_nvlink_errors_positive() -> None:
    found = run(lambda i: hgpu(nvlink_crc=100 + 5 * i))
    f = only(found, "nvlink-errors")
    assert f["severity"] == "warning" and f["figures"]["CRC_errors"] == 5 * (N - 1)
    assert f"CRC errors 100 to {100 + 5 * (N - 1)}" in f["evidence"]


def test_nvlink_errors_negative() -> None:
    # errors from before the run, standing still, are not "rising"
    assert "nvlink-errors" not in rules(run(lambda i: hgpu(nvlink_crc=100)))
    assert "nvlink-errors" not in rules(run(lambda i: hgpu(nvlink_crc=i, visible=False)))


# -- memory-bandwidth-bound ------------------------------------------------------------------------


def test_memory_bandwidth_bound_positive_gpm_and_without() -> None:
    f = only(run(lambda i: hgpu(gpm={"dramActive": 88.0, "tensorActive": 10.0})),
             "memory-bandwidth-bound")
    assert f["severity"] == "info" and f["figures"]["source"] == "gpm"
    assert "median 88%" in f["evidence"]
    ampere = run(lambda i: gpu(0, util=97.0) | {"memoryUtilization": 91.0})
    f = only(ampere, "memory-bandwidth-bound")
    assert f["figures"]["source"] == "utilization.memory"
    assert "utilization.memory" in f["evidence"]


def test_memory_bandwidth_bound_negative() -> None:
    # DRAM busy while the tensor cores are too: a well-fed matmul, not a memory-bound one
    assert "memory-bandwidth-bound" not in rules(run(
        lambda i: hgpu(gpm={"dramActive": 88.0, "tensorActive": 70.0})))
    assert "memory-bandwidth-bound" not in rules(run(lambda i: hgpu(memory_util=95.0, util=5.0)))
    assert "memory-bandwidth-bound" not in rules(run(lambda i: hgpu()))


# -- a stored run ----------------------------------------------------------------------------------


def test_stored_run_keeps_what_the_rules_read(isolated_env: Path) -> None:
    import tracklab

    store_run(isolated_env, series(lambda i: snap(i, [hgpu(
        util=100.0, gpm={"smActive": 3.0, "tensorActive": 0.0}, pcie={"gen": 3, "width": 8},
        nvlink_crc=i)])))
    view = tracklab.open_run("diag1")
    try:
        found = diagnose(view)
    finally:
        view.close()
    assert {"gpu-busy-sm-idle", "pcie-downtrained", "nvlink-errors"} <= set(rules(found))
