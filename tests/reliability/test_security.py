"""Points 13-14: no shell, no secrets in the store or in show, private files."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import tracklab
from tests.conftest import cli, python_child, run_tracklab
from tests.reliability.helpers import env_with

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


# (printed by the child, what must not be stored, what is stored instead)
PRINTED_SECRETS = [
    ("export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789AB",
     "abcdefghijklmnopqrstuvwxyz0123456789AB", "export GITHUB_TOKEN=***"),
    ("calling api with --api-key sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2",
     "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2", "calling api with --api-key ***"),
    ("db login password=hunter2-correct-horse", "hunter2-correct-horse", "db login password=***"),
    ("aws: AKIAIOSFODNN7EXAMPLE in use", "IOSFODNN7EXAMPLE", "aws: AKIA*** in use"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl",
     "eyJzdWIiOiIxIn0", "Authorization: ***"),
    ('{"hf_token": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"}', "AbCdEfGhIjKlMnOpQrStUv",
     '{"hf_token": "***"}'),
    ("clone https://alice:s3cretpass@git.example.org/repo.git", "s3cretpass",
     "clone https://alice:***@git.example.org/repo.git"),
    ("a token in the middle: ghp_abcdefghijklmnopqrstuvwxyz0123456789AB.",
     "abcdefghijklmnopqrstuvwxyz0123456789AB", "a token in the middle: ghp_***."),
]
# ordinary training output that looks a little like the above: stored as printed
ORDINARY = ["loss=0.5 lr=3e-4 monkey=3 num_keys=10 keyboard=us", "tokens/s: 1234.5",
            "sort key: epoch", "authors = 3", "task-1234567890abcdefghijk done",
            "tokenizer=bert-base-uncased"]


def test_printed_secrets_are_redacted_in_the_store_not_on_the_terminal(
        tmp_path: Path, store_dir: Path) -> None:
    lines = [p for p, _, _ in PRINTED_SECRETS] + ORDINARY
    script = tmp_path / "lines.txt"
    script.write_text("\n".join(lines) + "\n")
    cmd = python_child(tmp_path, f"import sys; sys.stdout.write(open({str(script)!r}).read())")
    res = run_tracklab("run", "-q", "--run-id", "printed", "--", *cmd)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "\n".join(lines) + "\n"  # the terminal sees the bytes unchanged
    for path in store_dir.iterdir():
        blob = path.read_bytes()
        for _, secret, _ in PRINTED_SECRETS:
            assert secret.encode() not in blob, (secret, path.name)
    stored = run_tracklab("logs", "printed", "--raw").stdout.splitlines()
    assert stored == [shown for _, _, shown in PRINTED_SECRETS] + ORDINARY
