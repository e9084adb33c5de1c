"""Issue 8's figure: a child's own run time with console capture vs ``--no-capture``.

The child prints N MB of 100-byte lines and times itself. "flood" prints as fast as it can;
"paced" does ~20 us of work per line (about 3 MB/s, a chatty training loop). Output goes to a
pipe drained by ``cat``, or to a pty drained by this process (as a terminal would be).

"training" puts the two in proportion: steps of 5 ms of work, each redrawing a tqdm-style
progress bar with ``\r`` on stderr, a log line on stdout every 50 steps.
"""

from __future__ import annotations

import os
import pty
import statistics
import subprocess
import sys

from ._util import PY, Ctx, Row, ratio_row

CHILD = r"""
import sys, time
n, paced, out = int(float(sys.argv[1]) * 1e6 / 100), sys.argv[2] == "paced", sys.argv[3]
line = "x" * 84
w = sys.stdout.write
t = time.perf_counter()
for i in range(n):
    if paced:
        end = time.perf_counter() + 2e-5
        while time.perf_counter() < end:
            pass
    w("step %9d %s\n" % (i, line))
sys.stdout.flush()
with open(out, "w") as f:
    f.write(str(time.perf_counter() - t))
"""

TRAINING = r"""
import sys, time
steps, out = int(sys.argv[1]), sys.argv[3]
t = time.perf_counter()
for i in range(steps):
    end = time.perf_counter() + 5e-3
    while time.perf_counter() < end:
        pass
    done = (i + 1) * 40 // steps
    sys.stderr.write("\r%3d%%|%s%s| %d/%d [loss 0.%04d]" % (
        (i + 1) * 100 // steps, "#" * done, " " * (40 - done), i + 1, steps, i))
    sys.stderr.flush()
    if i % 50 == 49:
        print("step %d  loss 0.%04d  lr 3e-4" % (i + 1, i), flush=True)
sys.stderr.write("\n")
with open(out, "w") as f:
    f.write(str(time.perf_counter() - t))
"""


def _once(capture: bool, kind: str, mode: str, tmp: str, size: float,
          env: dict[str, str]) -> float:
    script, out = os.path.join(tmp, "gen.py"), os.path.join(tmp, "t")
    with open(script, "w") as f:
        f.write(TRAINING if kind == "training" else CHILD)
    cmd = [PY, "-m", "tracklab_cli", "run", "-q", "-i", "1",
           *([] if capture else ["--no-capture"]), "--", PY, script, str(size), kind, out]
    if mode == "pipe":
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        sink = subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
        assert p.stdout is not None
        p.stdout.close()
        p.wait()
        sink.wait()
    else:
        pid, fd = pty.fork()
        if pid == 0:
            os.execvpe(cmd[0], cmd, env)
        while True:
            try:
                if not os.read(fd, 1 << 16):
                    break
            except OSError:
                break
        os.waitpid(pid, 0)
        os.close(fd)
    with open(out) as f:
        return float(f.read())


def bench(ctx: Ctx) -> list[Row]:
    mb, steps = ctx.scale(50, 2), ctx.scale(2000, 200)
    tmp = str(ctx.newdir("capture"))
    env = dict(os.environ, TRACKLAB_DIR=os.path.join(tmp, "store"))
    cases = [(kind, mode, mb, f"{mb:g} MB {kind} to a {mode}")
             for kind in ("paced", "flood") for mode in ("pipe", "pty")]
    cases += [("training", mode, steps, f"{steps} training steps of 5 ms with a progress bar, "
               f"to a {mode}") for mode in ("pipe", "pty")]
    rows = []
    for kind, mode, size, what in cases:
        ctx.log(f"capture: {what} x {ctx.reps}")
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(ctx.reps):
            for capture in (False, True):
                times[capture].append(_once(capture, kind, mode, tmp, size, env))
        on, off = statistics.median(times[True]), statistics.median(times[False])
        rows.append(ratio_row("capture", f"child run time, {what}, captured vs --no-capture",
                              on, off, 1.05, base_label="--no-capture"))
    return rows


if __name__ == "__main__":
    sys.exit("run through: python -m tests.benchmarks --only capture")
