"""The real CUDA workload of device_check.sh: ``matmul`` (bf16 matrix products, then a spinning
one-thread kernel: busy by NVML's utilization, SMs idle) or ``train`` (a small network fed by
DataLoader workers). Beside the work, a thread records what ``torch.cuda`` reports every 0.5 s
into ``<out>/torch_<mode>.json`` with the phases' start and end (Unix seconds)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import torch

PERIOD_S = 0.5


def _read(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - an older torch lacks one reading: it is left null
        return None


class Recorder(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.rows: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(PERIOD_S):
            free_total = _read(torch.cuda.mem_get_info)
            self.rows.append({
                "t": time.time(),
                "utilization": _read(torch.cuda.utilization),  # NVML utilization.gpu, %
                "power_mw": _read(torch.cuda.power_draw),
                "reserved": torch.cuda.memory_reserved(),  # the caching allocator's, bytes
                "allocated": torch.cuda.memory_allocated(),
                "device_used": None if free_total is None else free_total[1] - free_total[0],
            })


def matmul(phases: list[dict[str, Any]]) -> None:
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    start = time.time()
    while time.time() - start < 12.0:
        for _ in range(20):
            c = a @ b
        torch.cuda.synchronize()
    phases.append({"name": "matmul", "start": start, "end": time.time()})
    del c
    # one thread spinning for ~50 ms per launch: NVML reads 100 %, GPM sees one SM of 132
    start = time.time()
    while time.time() - start < 14.0:
        torch.cuda._sleep(100_000_000)
        torch.cuda.synchronize()
    phases.append({"name": "spin", "start": start, "end": time.time()})


class Images(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Random images made on the CPU in the workers, like decoding and augmentation."""

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(i)
        x = torch.rand(3, 64, 64, generator=g)
        return x.flip(2) * 2 - 1, i % 10


def train(phases: list[dict[str, Any]], recorder: Recorder) -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(128 * 16 * 16, 10)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(Images(), batch_size=256, num_workers=4,
                                         pin_memory=True, persistent_workers=True)
    batches = iter(loader)
    next(batches)  # the workers are forked before the recorder thread starts
    recorder.start()
    start = time.time()
    steps = 0
    while time.time() - start < 16.0:
        x, y = next(batches)
        x, y = x.cuda(non_blocking=True), y.cuda(non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    torch.cuda.synchronize()
    phases.append({"name": "train", "start": start, "end": time.time(), "steps": steps})


def main() -> int:
    mode, out = sys.argv[1], sys.argv[2]
    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the CUDA context, before anything is timed
    recorder = Recorder()
    phases: list[dict[str, Any]] = []
    if mode == "matmul":
        recorder.start()
        matmul(phases)
    else:
        train(phases, recorder)
    recorder.stop.set()
    recorder.join()
    with open(os.path.join(out, f"torch_{mode}.json"), "w") as f:
        json.dump({"pid": os.getpid(), "device": torch.cuda.get_device_name(),
                   "phases": phases, "rows": recorder.rows}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
