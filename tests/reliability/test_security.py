"""Points 13-14: no shell, no secrets in the store or in show, private files."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import tracklab
from tests.conftest import cli, run_tracklab
from tests.reliability.helpers import env_with, python_child

SECRETS = ["s3cr3t-env-value", "s3cr3t-flag-value", "s3cr3t-next-value", "s3cr3t-pw-value"]


def test_command_is_never_run_through_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    res = run_tracklab("run", "-q", "--", "echo", f"$HOME; touch {marker}")
    assert res.stdout == f"$HOME; touch {marker}\n"
    assert not marker.exists()


def test_secrets_reach_neither_the_store_nor_show(tmp_path: Path, store_dir: Path) -> None:
    cmd = python_child(tmp_path, """
import sys, tracklab
run = tracklab.init(config={"lr": 0.1})
tracklab.log({"loss": 1.0})
run.finish()
""")
    res = run_tracklab("run", "-q", "--name", "sec", "--config", "batch=8", "--", *cmd,
                       f"--api-key={SECRETS[1]}", "--token", SECRETS[2],
                       f"PASSWORD={SECRETS[3]}",
                       env=env_with(MY_API_TOKEN=SECRETS[0], WANDB_API_KEY=SECRETS[0]))
    assert res.returncode == 0, res.stderr
    standalone = python_child(tmp_path, """
import tracklab
tracklab.init(name="sec2").finish()
""", "standalone.py")
    import subprocess

    subprocess.run([*standalone, f"--api-key={SECRETS[1]}", "--password", SECRETS[3]],
                   check=True, timeout=60, env=env_with(MY_API_TOKEN=SECRETS[0]))
    for path in store_dir.iterdir():
        blob = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in blob, (secret, path.name)
    for ref in ("sec", "sec2"):
        shown = cli("show", ref).stdout + cli("show", ref, "--json").stdout
        assert "***" in shown
        for secret in SECRETS:
            assert secret not in shown
    cmdline = tracklab.open_run("sec").info["command"]
    assert "--api-key=***" in cmdline and "***" in cmdline


def test_new_store_is_private(store_dir: Path) -> None:
    old = os.umask(0o022)  # a permissive umask must not widen the store's modes
    try:
        assert run_tracklab("run", "-q", "--", sys.executable, "-c", "pass").returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    names = {p.name for p in store_dir.iterdir()}
    assert any(n.endswith(".db-wal") for n in names) or any(n.endswith(".db") for n in names)
    for p in store_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
