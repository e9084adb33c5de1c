"""Fuzzing, bounded in time: hostile command lines and hostile store contents never end in a
traceback, and whatever a run holds reaches the terminal inert."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import tracklab
from tests.conftest import run_tracklab
from tracklab.textfmt import visible
from tracklab_cli.app import app
from tracklab_cli.commands import fastrun

# A few seconds per test in CI: a fixed budget of examples, the same ones every run (so a
# failure reproduces). TRACKLAB_FUZZ_EXAMPLES=2000 explores further, with new examples each time.
_DEEP = int(os.environ.get("TRACKLAB_FUZZ_EXAMPLES") or 0)
# No shrinking: a failing example is reported as found (shrinking a store can take minutes).
FUZZ = settings(max_examples=_DEEP or 60, deadline=None, database=None, derandomize=not _DEEP,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "-", "--", "latest", "nan", "inf", "-1", "1e309", "0x10", "\x1b[2J",
                     "\x1b]0;t\x07", "a" * 5000, "%s%n", "../../etc", "[bold]x[/]", "'\";--",
                     "\u202eabc", "\ud800".encode("utf-8", "surrogatepass").decode(
                         "utf-8", "replace"), "9" * 40, "2024-13-45", "30x"]),
)
OPTIONS = ["--json", "--dir", "-d", "--limit", "-n", "--status", "--tag", "--since", "--sort",
           "--reverse", "--project", "--tail", "--follow", "--stream", "--raw", "--what",
           "--format", "-o", "--once", "--interval", "--metric", "--step", "--yes", "--remove",
           "--help"]
COMMANDS = ["show", "ls", "logs", "compare", "export", "tag", "rm", "watch", "report"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def _no_traceback(result: Any) -> None:
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        import traceback

        raise AssertionError("".join(traceback.format_exception(*result.exc_info)))
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output


@FUZZ
@given(command=st.sampled_from(COMMANDS),
       words=st.lists(st.one_of(st.sampled_from(OPTIONS), hostile_text), max_size=6))
def test_cli_arguments_never_end_in_a_traceback(runner: CliRunner, command: str,
                                                words: list[str], tmp_path: Path, seeded: Path,
                                                store_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # -o FILE lands here
    if not (store_dir / seeded.name).exists():  # a run to find (until a fuzzed `rm` removes it)
        store_dir.mkdir(exist_ok=True)
        (store_dir / seeded.name).write_bytes(seeded.read_bytes())
    if command == "watch" and "--once" not in words:
        words = [*words, "--once"]  # a live watch would wait for Ctrl-C
    if command == "logs":
        words = [w for w in words if w not in ("--follow", "-f")]
    result = runner.invoke(app, [command, *words], input="n\n")
    _no_traceback(result)


@FUZZ
@given(words=st.lists(st.one_of(st.sampled_from(
    ["--interval", "--kill-after", "--name", "--tag", "--config", "--capture-limit",
     "--prometheus-port", "--carbon-intensity", "--run-id", "-q", "--no-capture", "--", "x"]),
    hostile_text), max_size=8))
def test_run_options_never_end_in_a_traceback(words: list[str]) -> None:
    parsed = fastrun.parse(words)  # what `tracklab run` does before it starts anything
    assert parsed is None or isinstance(parsed, (int, dict))


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8)
column_text = st.one_of(st.none(), hostile_text, json_value.map(json.dumps),
                        st.sampled_from(["{", "[1,", "null", "\"x\"", "{\"peaks\": 5}"]))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one real run to copy, so every example starts from a real shard."""
    store = tmp_path_factory.mktemp("seed")
    res = run_tracklab("run", "-q", "--dir", str(store), "--run-id", "seed", "--", sys.executable,
                       "-c", "import tracklab; tracklab.init().log({'loss': 1.0}); "
                       "print('hello'); raise SystemExit(1)")
    assert res.returncode == 1, res.stderr
    return next(store.glob("node-*.db"))


@FUZZ
@given(fields=st.fixed_dictionaries({
    "name": column_text, "project": column_text, "status": column_text, "tags": column_text,
    "config": column_text, "summary": column_text, "command": column_text, "notes": column_text,
    "context": column_text, "system": column_text, "node": column_text, "host": column_text,
    "exit_code": st.one_of(st.none(), st.integers(), hostile_text),
    "started_at": st.one_of(st.none(), st.floats(allow_nan=True), hostile_text),
}), console=st.lists(hostile_text, max_size=3), metric=hostile_text)
def test_hostile_store_contents_never_end_in_a_traceback(
        seeded: Path, tmp_path_factory: pytest.TempPathFactory, runner: CliRunner,
        fields: dict[str, Any], console: list[str], metric: str) -> None:
    store = tmp_path_factory.mktemp("fuzz")
    shard = store / seeded.name
    shard.write_bytes(seeded.read_bytes())
    conn = sqlite3.connect(shard)
    try:
        with conn:
            sets = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(f"UPDATE runs SET {sets}", tuple(fields.values()))
            conn.executemany("INSERT INTO console (run, time, stream, line) "
                             "VALUES (1, 1.0, ?, ?)", [("stdout", line) for line in console])
            conn.execute("UPDATE metric_stats SET key = ?", (metric,))
    except (sqlite3.IntegrityError, OverflowError):  # SQLite refuses it: nothing to read
        conn.close()
        reject()
    conn.close()
    for args in (["show", "seed"], ["show", "seed", "--json"], ["ls"], ["ls", "--json"],
                 ["logs", "seed"], ["compare", "seed", "seed"], ["watch", "seed", "--once"],
                 ["export", "seed", "--what", "metrics"]):
        result = runner.invoke(app, [*args, "--dir", str(store)])
        _no_traceback(result)
        if "--json" not in args and args[0] != "export":
            assert not UNSAFE.search(result.output), (args, result.output)
    try:  # the library: a TracklabError at most
        tracklab.list_runs(str(store))
    except tracklab.TracklabError:
        pass


@FUZZ
@given(text=st.text())
def test_visible_leaves_nothing_a_terminal_would_act_on(text: str) -> None:
    shown = visible(text)
    assert not UNSAFE.search(shown) and "\n" not in shown and "\t" not in shown
    assert visible(shown) == shown  # what it shows is printable: a second pass changes nothing
