"""Points 11-12: bad values, bad names and bad command lines get clear, documented answers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import tracklab
from tests.conftest import cli, run_tracklab
from tracklab.errors import TracklabWarning
from tracklab.sdk import writer
from tracklab.sdk.writer import MAX_KEY_LENGTH


def _points(run_id: str, key: str) -> list[dict]:
    return [p for p in tracklab.open_run(run_id).metrics() if p["key"] == key]


def test_values_round_trip_exactly() -> None:
    run = tracklab.init()
    values = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "huge": 2**70,
              "neg": -(2**63), "t": True, "f": False, "int": 7, "tiny": 5e-324,
              "np32": np.float32(0.1), "np64": np.float64(1 / 3), "npint": np.int64(2**40),
              "npbool": np.bool_(True)}
    tracklab.log(values)
    run.finish()
    got = {p["key"]: p["value"] for p in tracklab.open_run(run.id).metrics()}
    assert math.isnan(got.pop("nan"))
    expect = dict(values, np32=float(np.float32(0.1)), np64=1 / 3, npint=2**40, npbool=True)
    expect.pop("nan")
    assert got == expect
    assert type(got["t"]) is bool and type(got["huge"]) is int and type(got["int"]) is int


def test_nan_and_inf_in_summary() -> None:
    run = tracklab.init()
    for v in (1.0, math.nan, math.inf, -2.0):
        tracklab.log({"x": v})
    run.finish()
    s = tracklab.open_run(run.id).metric_summary()["x"]
    assert s["count"] == 4 and s["nans"] == 1
    assert s["min"] == -2.0 and s["max"] == math.inf and s["last"] == -2.0


def test_non_numeric_value_warns_with_its_name_and_keeps_the_rest() -> None:
    run = tracklab.init()
    with pytest.warns(TracklabWarning, match="'label'"):
        tracklab.log({"loss": 0.5, "label": "cat", "acc": 0.9})
    with pytest.warns(TracklabWarning, match="'none'"):
        tracklab.log({"none": None, "loss": 0.4})
    run.finish()
    assert [p["value"] for p in _points(run.id, "loss")] == [0.5, 0.4]
    assert [p["value"] for p in _points(run.id, "acc")] == [0.9]
    assert not _points(run.id, "label")


def test_metric_names_are_stored_as_given() -> None:
    names = ["損失/训练", "it's \"quoted\"", "x'); DROP TABLE points; --", "a.b c", "😀"]
    run = tracklab.init()
    tracklab.log({n: float(i) for i, n in enumerate(names)})
    run.finish()
    got = {p["key"]: p["value"] for p in tracklab.open_run(run.id).metrics()}
    assert got == {n: float(i) for i, n in enumerate(names)}


def test_too_long_name_is_refused_clearly(caplog: pytest.LogCaptureFixture) -> None:
    run = tracklab.init()
    tracklab.log({"k" * (MAX_KEY_LENGTH + 1): 1.0, "ok": 2.0})
    run.finish()
    assert "longer than 256" in caplog.text
    assert {p["key"] for p in tracklab.open_run(run.id).metrics()} == {"ok"}


@pytest.mark.parametrize("args", [
    ["run", "--interval", "0", "--", "true"],
    ["run", "--interval", "-1", "--", "true"],
    ["run", "--interval", "abc", "--", "true"],
    ["run", "--interval", "0.05", "--", "true"],
    ["run", "--capture-limit", "1" + "0" * 400, "--", "true"],  # a float infinity
    ["run", "--capture-limit", "1" + "0" * 300 + "GiB", "--", "true"],
    ["run", "--bogus", "--", "true"],
    ["run"],
    ["run", "--"],
    ["ls", "--limit", "0"],
    ["watch", "--interval", "inf"],  # time.sleep() raised an OverflowError on a live run
    ["watch", "--interval", "1e10"],
    ["show"],
])
def test_usage_errors_exit_2_with_one_message(args: list[str]) -> None:
    res = run_tracklab(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "Error" in res.stderr


def test_unknown_and_ambiguous_runs_exit_1(store_dir: Path) -> None:
    res = cli("show", "nope")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "no run matches 'nope'" in res.stderr
    for name in ("aa1", "aa2"):
        run = tracklab.init(name=name)
        run.finish()
    ids = [r["id"] for r in tracklab.list_runs()]
    res = cli("show", "")  # the empty prefix matches every run
    assert res.returncode == 1 and all(i in res.stderr for i in ids)


def test_too_many_distinct_keys_are_refused_clearly(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(writer, "MAX_KEYS_PER_RUN", 5)
    run = tracklab.init()
    for i in range(8):
        tracklab.log({f"k{i}": float(i)})
    run.finish()
    assert "more than 5 distinct metric names" in caplog.text
    assert caplog.text.count("distinct metric names") == 1
    assert {p["key"] for p in tracklab.open_run(run.id).metrics()} == {f"k{i}" for i in range(5)}


def test_torch_scalars_round_trip() -> None:
    torch = pytest.importorskip("torch")
    run = tracklab.init()
    tracklab.log({"t": torch.tensor(0.25), "i": torch.tensor(3), "b": torch.tensor(True)})
    run.finish()
    got = {p["key"]: p["value"] for p in tracklab.open_run(run.id).metrics()}
    assert got == {"t": 0.25, "i": 3, "b": True}


def test_a_count_beyond_64_bits_means_all() -> None:
    # `ls --limit` and `logs --tail` took it, then SQLite refused the LIMIT: "run store: datatype
    # mismatch" (exit 1) from ls, a traceback from logs
    res = run_tracklab("run", "-q", "--name", "two-lines", "--", sys.executable, "-c",
                       "print('a'); print('b')")
    assert res.returncode == 0, res.stderr
    huge = str(10**20)
    ls = cli("ls", "--limit", huge)
    assert ls.returncode == 0 and "two-lines" in ls.stdout, ls.stderr
    logs = cli("logs", "two-lines", "--tail", huge)
    assert logs.returncode == 0 and logs.stdout == "a\nb\n", logs.stderr


def test_an_interval_beyond_what_a_wait_takes_still_samples() -> None:
    # the sampling thread died with an OverflowError traceback, and the end sample was lost
    res = run_tracklab("run", "--interval", "1e10", "--", sys.executable, "-c",
                       "import time; time.sleep(1); print('ok')")  # the thread waits by then
    assert res.returncode == 0 and res.stdout == "ok\n"
    assert "Traceback" not in res.stderr, res.stderr
    assert tracklab.open_run("latest").sample_count() == 2  # at start and at the end
