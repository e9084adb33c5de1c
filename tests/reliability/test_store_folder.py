"""A store folder others may write (world-writable, another user's) is used with one warning that
names the fix; a symlinked one is followed with a warning; a team's group-shared one just works."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

import tracklab
from tests.conftest import python_child, run_tracklab

ATTACHING_CHILD = """
import tracklab
run = tracklab.init()
tracklab.log({"x": 1.0})
run.finish()
"""
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files away")
TEAM_GID = 4242


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line.lower()]


def test_world_writable_store_warns_once_with_the_fix(tmp_path: Path) -> None:
    store = tmp_path / "open"
    store.mkdir()
    store.chmod(0o777)
    cmd = python_child(tmp_path, ATTACHING_CHILD)
    res = run_tracklab("run", "-q", "--dir", str(store), "--", *cmd)
    assert res.returncode == 0, res.stderr
    lines = _warnings(res.stderr)
    assert len(lines) == 1, lines  # the wrapper says it; its child's SDK does not repeat it
    assert "every user" in lines[0] and f"chmod 700 {store}" in lines[0]
    assert tracklab.open_run("latest", str(store)).info["status"] == "finished"
    assert stat.S_IMODE(store.stat().st_mode) == 0o777  # someone else's choice: left alone


def test_world_writable_store_warns_in_the_sdk_too(tmp_path: Path) -> None:
    store = tmp_path / "open"
    store.mkdir()
    store.chmod(0o777)
    script = python_child(tmp_path, ATTACHING_CHILD)
    import subprocess

    res = subprocess.run(script, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, TRACKLAB_DIR=str(store)))
    assert res.returncode == 0, res.stderr
    assert len(_warnings(res.stderr)) == 1 and "chmod 700" in res.stderr, res.stderr


@root_only
def test_store_owned_by_another_user_warns(tmp_path: Path) -> None:
    store = tmp_path / "theirs"
    store.mkdir(mode=0o755)
    os.chown(store, 65534, 65534)
    res = run_tracklab("run", "-q", "--dir", str(store), "--", sys.executable, "-c", "pass")
    assert res.returncode == 0, res.stderr
    lines = _warnings(res.stderr)
    assert len(lines) == 1 and "belongs to" in lines[0], lines
    assert "65534" in lines[0] or "nobody" in lines[0]


def test_symlinked_store_is_followed_with_a_warning(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    res = run_tracklab("run", "-q", "--dir", str(link), "--", sys.executable, "-c", "pass")
    assert res.returncode == 0, res.stderr
    lines = _warnings(res.stderr)
    assert len(lines) == 1 and "symlink" in lines[0] and str(real) in lines[0], lines
    assert list(real.glob("node-*.db"))  # followed: the shard is in the real folder


@root_only
def test_group_shared_store_works_for_every_member(request: pytest.FixtureRequest) -> None:
    """The documented team set-up: a folder of the team's group, setgid, 2770. No warning, and
    a shard one member created can be written by another."""
    import shutil
    import tempfile

    outer = Path(tempfile.mkdtemp(prefix="team-"))  # pytest's folders are root's alone
    outer.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(outer, ignore_errors=True))
    store = outer / "team"
    store.mkdir()
    os.chown(store, 65534, TEAM_GID)  # made by one member, for the group
    store.chmod(0o2770)
    res = run_tracklab("run", "-q", "--dir", str(store), "--node-id", "n1", "--run-id", "first",
                       "--", sys.executable, "-c", "pass")
    assert res.returncode == 0, res.stderr
    assert not _warnings(res.stderr), res.stderr
    shard = store / "node-n1.db"
    st = shard.stat()
    assert st.st_gid == TEAM_GID and stat.S_IMODE(st.st_mode) == 0o660
    # another member (not the owner, not root: only the group lets them in) adds a run
    from tracklab import store as store_pkg
    from tracklab.store import codec  # noqa: F401 - imported before giving up root

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([TEAM_GID])
            os.setgid(TEAM_GID)
            os.setuid(65533)
            s = store_pkg.open_shard(str(store), "n1")
            s.insert_run({"id": "second", "name": "second", "project": "team",
                          "status": "finished", "started_at": 1.0, "ended_at": 2.0})
            s.close()
            code = 0
        except BaseException:  # noqa: BLE001 - shown in the test output, then exit 1
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ids = {r["id"] for r in tracklab.list_runs(str(store))}
    assert ids == {"first", "second"}
