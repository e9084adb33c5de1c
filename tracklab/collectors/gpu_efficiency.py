"""How well a GPU is used: the fields of one GPU's reading beyond utilization.

Per sample: memory-controller busy %, memory temperature, NVLink and PCIe rates (from NVML's
byte counters or GPM), and on GPM-capable GPUs (Hopper and newer) SM activity, occupancy,
tensor, DRAM and FP pipe activity, per MIG GPU instance too. Every ``SLOW_EVERY_S``: P-state,
graphics and memory clocks, encoder/decoder utilization, the PCIe link's generation and width.
Every ``COUNTERS_EVERY_S``: NVLink error counters, retired pages, remapped rows, and PCIe
throughput where no counter gives it (NVML samples that one for 20 ms per call).

Rates are bytes per second over the interval since the previous reading; a counter that went
back (driver reloaded) gives ``None`` once. A field the GPU does not give is ``None``, and one
it answers NOT_SUPPORTED for is not asked again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tracklab.collectors._nvml import Nvml
from tracklab.collectors._nvml_efficiency import (
    FAST_FIELDS,
    GPM_MIN_WINDOW_S,
    GPM_PERCENTS,
    NVLINK_ERROR_FIELDS,
    GpmState,
)

SLOW_EVERY_S = 2.0
COUNTERS_EVERY_S = 10.0
_FAST_KEYS = ("nvlinkTx", "nvlinkRx", "pcieTx", "pcieRx", "memoryTemperature")


@dataclass
class State:
    """What one GPU's efficiency readings carry between samples."""

    fields: dict[int, str] = field(default_factory=dict)  # fast field id -> key, while supported
    error_fields: dict[int, str] = field(default_factory=dict)  # NVLink error id -> kind
    nvlinks: int | None = None
    link_max: tuple[int | None, int | None] = (None, None)
    memory_clock_max: int | None = None
    gpm: GpmState | None = None
    mig: list[tuple[str, GpmState]] = field(default_factory=list)
    counts: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (value, t)
    slow: dict[str, Any] = field(default_factory=dict)
    slow_at: float = float("-inf")
    counters: dict[str, Any] = field(default_factory=dict)
    counters_at: float = float("-inf")
    throughput: tuple[float | None, float | None] = (None, None)  # PCIe B/s, without counters
    throughput_at: float = float("-inf")


def discover(nvml: Nvml, handle: Any, mig: list[tuple[str, Any]]) -> State:
    """Static facts and the first GPM samples of one GPU (so the first reading has a window).

    Args:
        mig: ``(uuid, handle)`` of each MIG device of the GPU (empty without MIG mode).
    """
    st = State()
    st.nvlinks = nvml.nvlink_count(handle)
    keys = dict(zip(FAST_FIELDS, _FAST_KEYS))
    for name, fid in zip(FAST_FIELDS, nvml.field_ids(FAST_FIELDS)):
        if fid is not None and (st.nvlinks or "NVLINK" not in name):
            st.fields[fid] = keys[name]
    if st.nvlinks:
        names = tuple(n for _, n in NVLINK_ERROR_FIELDS)
        for (kind, _), fid in zip(NVLINK_ERROR_FIELDS, nvml.field_ids(names)):
            if fid is not None:
                st.error_fields[fid] = kind
    st.link_max = nvml.pcie_link(handle, maximum=True)
    st.memory_clock_max = nvml.clock(handle, "memory", maximum=True)
    if nvml.gpm_supported(handle):
        st.gpm = _gpm_start(nvml, handle, None)
        for uuid, mig_handle in mig:
            gi = nvml.gpu_instance_id(mig_handle)
            state = None if gi is None else _gpm_start(nvml, handle, gi)
            if state is not None:
                st.mig.append((uuid, state))
    return st


def _gpm_start(nvml: Nvml, handle: Any, gi: int | None) -> GpmState | None:
    state = nvml.gpm_open(gi)
    if state is None:
        return None
    if not nvml.gpm_sample(handle, state, state.samples[0]):
        nvml.gpm_close(state)
        return None
    state.prev, state.prev_t = state.samples[0], time.monotonic()
    return state


def close(nvml: Nvml, st: State) -> None:
    """Free the GPU's GPM sample buffers."""
    for state in [st.gpm, *(s for _, s in st.mig)]:
        if state is not None:
            nvml.gpm_close(state)
    st.gpm, st.mig = None, []


def _gpm_read(nvml: Nvml, handle: Any, state: GpmState, now: float
              ) -> dict[str, float | None] | None:
    """The metrics over the window since the previous GPM sample, which needs at least
    GPM_MIN_WINDOW_S: sampled faster, the last window's metrics are given again."""
    if now - state.prev_t < GPM_MIN_WINDOW_S:
        return state.values
    spare = state.samples[1] if state.prev is state.samples[0] else state.samples[0]
    if not nvml.gpm_sample(handle, state, spare):
        state.values = None
        return None
    state.values = nvml.gpm_metrics(state, state.prev, spare)
    state.prev, state.prev_t = spare, now
    return state.values


def _rate(st: State, key: str, value: float | int | None, now: float, unit: float
          ) -> float | None:
    """Bytes per second of a counter (in ``unit`` bytes) since its previous reading."""
    if value is None:
        st.counts.pop(key, None)
        return None
    last = st.counts.get(key)
    st.counts[key] = (float(value), now)
    if last is None or now <= last[1] or value < last[0]:
        return None
    return round((value - last[0]) * unit / (now - last[1]), 1)


def read(nvml: Nvml, handle: Any, st: State, now: float) -> dict[str, Any]:
    """The efficiency fields of one GPU's reading (see the module doc); ``clocks`` holds the
    graphics and memory clocks for the caller to merge with the SM clock."""
    fast: dict[str, Any] = {}
    if st.fields:
        ids = list(st.fields)
        got = nvml.field_values(handle, ids)
        if got is not None:
            values, unsupported = got
            fast = {st.fields[fid]: v for fid, v in zip(ids, values)}
            for fid in unsupported:
                del st.fields[fid]
    gpm = None if st.gpm is None else _gpm_read(nvml, handle, st.gpm, now)
    gpm_pcie = gpm is not None and gpm.get("pcieTx") is not None
    if gpm_pcie and len(st.fields) > 1:
        # GPM gives PCIe and NVLink rates: their byte counters are no longer worth a read
        st.fields = {fid: key for fid, key in st.fields.items() if key == "memoryTemperature"}
    if now - st.slow_at >= SLOW_EVERY_S:
        st.slow_at = now
        enc, dec = nvml.media_utilization(handle)
        gen, width = nvml.pcie_link(handle)
        st.slow = {"pstate": nvml.pstate(handle), "encoder": enc, "decoder": dec,
                   "gen": gen, "width": width, "graphics": nvml.clock(handle, "graphics"),
                   "memory": nvml.clock(handle, "memory")}
    if gpm is not None and gpm_pcie:
        pcie_tx, pcie_rx = gpm["pcieTx"], gpm.get("pcieRx")
    else:
        pcie_tx = _rate(st, "pcieTx", fast.get("pcieTx"), now, 1.0)
        pcie_rx = _rate(st, "pcieRx", fast.get("pcieRx"), now, 1.0)
    if now - st.counters_at >= COUNTERS_EVERY_S:
        st.counters_at = now
        st.counters = _counters(nvml, handle, st)
    if not gpm_pcie and fast.get("pcieTx") is None:
        # no counter gives PCIe traffic: NVML's 20 ms sample, seldom (it blocks)
        if now - st.throughput_at >= COUNTERS_EVERY_S:
            st.throughput_at = now
            st.throughput = nvml.pcie_throughput(handle)
        pcie_tx, pcie_rx = st.throughput
    s = st.slow
    out: dict[str, Any] = {
        "memoryTemperature": _float(fast.get("memoryTemperature")),
        "pstate": s.get("pstate"),
        "encoderUtilization": s.get("encoder"),
        "decoderUtilization": s.get("decoder"),
        "clocks": {"graphics": s.get("graphics"), "memory": s.get("memory"),
                   "memoryMax": st.memory_clock_max},
        "pcie": {"txBytes": pcie_tx, "rxBytes": pcie_rx, "gen": s.get("gen"),
                 "genMax": st.link_max[0], "width": s.get("width"), "widthMax": st.link_max[1]},
        "nvlink": None,
        "retiredPages": st.counters.get("retiredPages"),
        "remappedRows": st.counters.get("remappedRows"),
        "gpm": None if gpm is None else {k: gpm.get(k) for k in GPM_PERCENTS},  # a copy
        "migDevices": None,
    }
    if st.nvlinks:
        if gpm is not None and gpm.get("nvlinkTx") is not None:
            tx, rx = gpm["nvlinkTx"], gpm.get("nvlinkRx")
        else:
            tx = _rate(st, "nvlinkTx", fast.get("nvlinkTx"), now, 1024.0)  # KiB counters
            rx = _rate(st, "nvlinkRx", fast.get("nvlinkRx"), now, 1024.0)
        out["nvlink"] = {"links": st.nvlinks, "txBytes": tx, "rxBytes": rx,
                         "crcErrors": st.counters.get("crc"),
                         "replayErrors": st.counters.get("replay"),
                         "recoveryErrors": st.counters.get("recovery")}
    if st.mig:
        out["migDevices"] = [
            {"uuid": uuid, "gpuInstanceId": state.gpu_instance,
             **{k: (m or {}).get(k) for k in GPM_PERCENTS}}
            for uuid, state in st.mig
            for m in (_gpm_read(nvml, handle, state, now),)]
    return out


def _counters(nvml: Nvml, handle: Any, st: State) -> dict[str, Any]:
    out: dict[str, Any] = {"retiredPages": nvml.retired_pages(handle),
                           "remappedRows": nvml.remapped_rows(handle)}
    if st.error_fields:
        ids = list(st.error_fields)
        got = nvml.field_values(handle, ids)
        if got is not None:
            values, unsupported = got
            for fid, v in zip(ids, values):
                kind = st.error_fields[fid]
                if v is not None:
                    out[kind] = out.get(kind, 0) + int(v)
            for fid in unsupported:
                del st.error_fields[fid]
    return out


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def empty() -> dict[str, Any]:
    """The efficiency fields of a GPU with no reading (lost)."""
    return {"memoryTemperature": None, "pstate": None, "encoderUtilization": None,
            "decoderUtilization": None, "pcie": None, "nvlink": None, "retiredPages": None,
            "remappedRows": None, "gpm": None, "migDevices": None}
