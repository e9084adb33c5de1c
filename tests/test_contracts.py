"""Contracts: the public surface exists, the library stays light, every command documents
itself, the two `run` parsers agree, and generated completions are fresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracklab
from tests.conftest import ROOT


def test_every_public_name_exists() -> None:
    for name in tracklab.__all__:
        assert getattr(tracklab, name) is not None, name


def test_import_tracklab_is_light() -> None:
    code = ("import sys, tracklab; heavy = [m for m in ('typer', 'rich', 'sqlite_utils', "
            "'pynvml', 'click', 'numpy', 'torch', 'tracklab.integrations') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_library_never_imports_the_cli_stack() -> None:
    for path in (ROOT / "tracklab").rglob("*.py"):
        text = path.read_text()
        for banned in ("import typer", "from typer", "import rich", "from rich"):
            assert banned not in text, f"{path}: {banned}"


def test_every_command_has_help_with_an_example() -> None:
    import typer.main

    from tracklab_cli.app import app

    group = typer.main.get_command(app)
    assert group.commands
    for name, cmd in group.commands.items():
        assert cmd.help and "Example: tracklab" in cmd.help, name


def test_fast_run_parser_knows_exactly_the_typer_options() -> None:
    import typer.main

    from tracklab_cli.app import app
    from tracklab_cli.commands.options import RUN_OPTIONS

    run_cmd = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    typer_names = {n for p in run_cmd.params for n in getattr(p, "opts", [])
                   if n.startswith("-")} - {"--help"}
    fast_names = {n for o in RUN_OPTIONS for n in o.names}
    assert typer_names == fast_names


def test_completions_are_fresh(tmp_path: Path) -> None:
    from tracklab_cli.completions import SHELLS, write

    write(tmp_path)
    for name in SHELLS.values():
        assert (ROOT / "completions" / name).read_text() == (tmp_path / name).read_text(), (
            f"completions/{name} is stale: run python -m tracklab_cli.completions")


def test_bash_completion_offers_commands_and_options() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = dict(os.environ, _TRACKLAB_COMPLETE="complete_bash", COMP_WORDS=words,
                   COMP_CWORD=str(cword))
        res = subprocess.run([sys.executable, "-m", "tracklab_cli"], env=env,
                             capture_output=True, text=True, timeout=60)
        return res.stdout.split()

    assert {"run", "show", "ls"} <= set(complete("tracklab ", 1))
    assert "--interval" in complete("tracklab run --int", 2)


@pytest.mark.parametrize("family", ["cpu", "memory", "disk", "network", "process"])
def test_collectors_return_documented_types(family: str) -> None:
    from tracklab.collectors import SystemCollectors

    c = SystemCollectors("n", families=(family,))
    c.prime()
    snap = c.snapshot()
    assert snap["nodeId"] == "n" and isinstance(snap["timestamp"], int)
    section = snap[family]
    assert isinstance(section, dict)
    for key, value in section.items():
        assert value is None or isinstance(value, (int, float, list, dict)), (key, value)
    expected = {
        "cpu": {"overall", "cores", "loadAverage", "processes", "threads"},
        "memory": {"usage", "used", "total", "swap"},
        "disk": {"usage", "used", "total", "ioRead", "ioWrite", "iops"},
        "network": {"bytesIn", "bytesOut", "packetsIn", "packetsOut", "connections", "infiniband"},
        "process": {"pid", "count", "cpu", "rss", "uss", "threads", "readBytes", "writeBytes",
                    "openFiles", "pids"},
    }[family]
    assert expected <= set(section)


_EXCEPTIONS = {
    "not-found": ('RunNotFound("abc", "/store")', "ref", "abc"),
    "ambiguous": ('AmbiguousRun("a", ["a1", "a2"])', "candidates", ["a1", "a2"]),
    "store": ('StoreError("/store/n.db", "disk I/O error")', "reason", "disk I/O error"),
    "extra": ('MissingExtra("matplotlib", "plot")', "hint", "pip install 'tracklab[plot]'"),
}


@pytest.mark.parametrize("kind", sorted(_EXCEPTIONS))
def test_library_exceptions_cross_a_process_boundary_with_their_fields(kind: str) -> None:
    """Pickled in one interpreter and read back in another, as a DataLoader worker's or a
    process pool's exception is."""
    import pickle

    made, field, value = _EXCEPTIONS[kind]
    code = ("import pickle, sys; from tracklab.errors import *; "
            f"sys.stdout.buffer.write(pickle.dumps({made}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    exc = pickle.loads(out.stdout)
    assert isinstance(exc, tracklab.TracklabError) and getattr(exc, field) == value
    assert type(exc).__module__ == "tracklab" and getattr(tracklab, type(exc).__name__) is type(exc)


def test_json_payloads_have_the_documented_shape(tmp_path: Path) -> None:
    """show, ls, watch and compare --json print the fields their TypedDicts declare (the
    renderers read the same), and the README's "JSON output" section names each of them."""
    from typing import get_type_hints

    from tests.conftest import cli, run_tracklab, write_script
    from tracklab.read.payloads import CompareData, LiveFrame, RunInfo, ShowData

    script = write_script(tmp_path, "import tracklab\nrun = tracklab.init()\n"
                                    "run.log({'loss': 1.0})\nrun.finish()\n")
    for _ in range(2):
        r = run_tracklab("run", "-q", "--interval", "0.2", "--", sys.executable, str(script))
        assert r.returncode == 0, r.stderr
    ids = [json.loads(line)["id"] for line in cli("ls", "--json").stdout.splitlines()]
    payloads = {
        "show": (json.loads(cli("show", ids[0], "--json").stdout), ShowData),
        "ls": (json.loads(cli("ls", "--json").stdout.splitlines()[0]), RunInfo),
        "watch": (json.loads(cli("watch", ids[0], "--json", "--once").stdout), LiveFrame),
        "compare": (json.loads(cli("compare", *ids, "--json").stdout), CompareData),
    }
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## JSON output"):]
    section = section[:section.index("\n## ", 1)]
    for name, (payload, shape) in payloads.items():
        fields = set(get_type_hints(shape))
        assert set(payload) <= fields, (name, set(payload) - fields)
        assert set(payload) >= set(shape.__required_keys__), name
        for field in fields:
            assert f"`{field}`" in section, f"README's JSON output does not list {name}'s {field}"
