"""Whether NVML may answer here, told without importing the NVML layer (:mod:`._nvml`): every
sampler asks once, and a machine without an NVIDIA driver then never loads it."""

from __future__ import annotations

import os
import sys

ENV_MODULE = "TRACKLAB_NVML_MODULE"

# Any of these exists when a driver is loaded (/dev/dxg: WSL2's GPU paravirtualisation).
_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg")


def driver_present() -> bool:
    """Whether an NVIDIA driver may be loaded; only Linux can tell cheaply, others say True."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in _DRIVER_PATHS)
