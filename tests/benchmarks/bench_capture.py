"""Issue 8's figure: a child's own run time with console capture vs ``--no-capture``.

The child prints N MB of 100-byte lines and times itself. "flood" prints as fast as it can;
"paced" does ~20 us of work per line (about 3 MB/s, a chatty training loop). Output goes to a
pipe drained by ``cat``, or to a pty drained by this process (as a terminal would be).
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


def _once(capture: bool, kind: str, mode: str, tmp: str, mb: float, env: dict[str, str]) -> float:
    script, out = os.path.join(tmp, "gen.py"), os.path.join(tmp, "t")
    with open(script, "w") as f:
        f.write(CHILD)
    cmd = [PY, "-m", "tracklab_cli", "run", "-q", "-i", "1",
           *([] if capture else ["--no-capture"]), "--", PY, script, str(mb), kind, out]
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
    mb = ctx.scale(50, 2)
    tmp = str(ctx.newdir("capture"))
    env = dict(os.environ, TRACKLAB_DIR=os.path.join(tmp, "store"))
    rows = []
    for kind in ("paced", "flood"):
        for mode in ("pipe", "pty"):
            ctx.log(f"capture: {kind} {mode}, {mb} MB x {ctx.reps}")
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(ctx.reps):
                for capture in (False, True):
                    times[capture].append(_once(capture, kind, mode, tmp, mb, env))
            on, off = statistics.median(times[True]), statistics.median(times[False])
            rows.append(ratio_row("capture", f"child run time, {mb:g} MB {kind} to a {mode}, "
                                  "captured vs --no-capture", on, off, 1.05,
                                  base_label="--no-capture"))
    return rows


if __name__ == "__main__":
    sys.exit("run through: python -m tests.benchmarks --only capture")
