"""Run context: code state, interpreter and packages, config, summary, tags and notes."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracklab
from tests.conftest import cli, run_tracklab, write_script
from tracklab.sampling.machine import code_state, package_versions, python_info
from tracklab.sdk.plain import to_plain


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("print('training')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_code_state_clean_dirty_untracked_detached(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    state = code_state(str(repo))
    assert state == {"repo": str(repo), "commit": head, "branch": "main", "dirty": False,
                     "diff_sha256": None, "diff_bytes": 0, "untracked": 0}
    (repo / "train.py").write_text("print('training harder')\n")
    (repo / "notes.txt").write_text("new\n")
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=repo, capture_output=True,
                          check=True).stdout
    state = code_state(str(repo / "."), save_diff=True)
    assert state["dirty"] is True and state["untracked"] == 1
    assert state["diff_bytes"] == len(diff)
    assert state["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    assert "training harder" in state["diff"]
    assert "diff" not in code_state(str(repo))  # the text only with save_diff
    git(repo, "checkout", "-q", "--detach")
    assert code_state(str(repo))["branch"] is None


def test_code_state_without_git_or_commits(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    state = code_state(str(empty))
    assert state["repo"] == str(empty) and state["branch"] == "main"
    assert state["commit"] is None and state["dirty"] is None
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert set(code_state(str(outside)).values()) == {None}
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all
    assert set(code_state(str(empty)).values()) == {None}


def test_package_versions_read_metadata_without_importing() -> None:
    code = ("import sys; from tracklab.sampling.machine import package_versions; "
            "v = package_versions(['numpy', 'pytest', 'no-such-package-xyz']); "
            "print(v['numpy'] is not None, v['pytest'] is not None, v['no-such-package-xyz'], "
            "'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True", "None", "False"]
    assert package_versions(["tracklab"]) == {"tracklab": tracklab.__version__}


def test_python_info_of_another_interpreter(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    exe = str(venv / "bin" / "python")
    py, packages = python_info([exe, "train.py"], dict(os.environ), ["pytest"])
    assert py["executable"] == exe and py["source"] == "command"
    assert packages == {"pytest": None}  # the other venv has no pytest: asked, not assumed
    script = tmp_path / "tool"
    script.write_text(f"#!{exe}\nprint('hi')\n")
    script.chmod(0o755)
    py, _ = python_info([str(script)], dict(os.environ), [])
    assert py["executable"] == exe
    py, _ = python_info(["sh", "-c", "true"], dict(os.environ), [])
    assert py["source"] == "wrapper" and py["executable"] == sys.executable


def test_wrapper_records_code_python_packages(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLAB_PACKAGES", "pytest, no-such-package-xyz")
    (repo / "train.py").write_text("print('changed')\n")
    res = run_tracklab("run", "-q", "--run-id", "ctx", "--save-diff", "--", sys.executable,
                       "train.py", cwd=repo)
    assert res.returncode == 0 and res.stdout == "changed\n"
    ctx = tracklab.open_run("ctx").info["context"]
    assert ctx["code"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert ctx["code"]["dirty"] is True and "changed" in ctx["code"]["diff"]
    assert ctx["python"]["executable"] == sys.executable
    assert ctx["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert set(ctx["packages"]) == {"torch", "numpy", "tracklab", "pytest",
                                    "no-such-package-xyz"}
    assert ctx["packages"]["pytest"] == pytest.__version__
    # words, not lines: the table wraps a long interpreter path at the terminal's width
    text = " ".join(cli("show", "ctx").stdout.split())
    assert ctx["code"]["commit"][:12] in text and "on main, dirty" in text
    assert f"pytest {pytest.__version__}" in text


def test_script_run_from_elsewhere_uses_the_scripts_repository(repo: Path,
                                                               tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_tracklab("run", "-q", "--run-id", "far", "--", sys.executable,
                       str(repo / "train.py"), cwd=elsewhere)
    assert res.returncode == 0
    assert tracklab.open_run("far").info["context"]["code"]["repo"] == str(repo)


@dataclasses.dataclass
class Optim:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 3
    optim: Optim = dataclasses.field(default_factory=Optim)
    path: Path = Path("/data")


def test_config_kinds_are_stored_plain() -> None:
    ns = argparse.Namespace(lr=0.1, layers=[64, 64], name="x")
    assert to_plain(ns) == {"lr": 0.1, "layers": [64, 64], "name": "x"}
    assert to_plain(TrainConfig()) == {"epochs": 3, "path": "/data",
                                       "optim": {"lr": 3e-4, "betas": [0.9, 0.999]}}
    run = tracklab.init(config=TrainConfig())
    run.config.update(ns, extra={"nested": {"deep": True}})
    run.config.update({"epochs": 5})
    run.finish()
    cfg = tracklab.open_run(run.id).info["config"]
    assert cfg["optim"] == {"lr": 3e-4, "betas": [0.9, 0.999]}
    assert cfg["epochs"] == 5 and cfg["lr"] == 0.1 and cfg["extra"] == {"nested": {"deep": True}}
    text = cli("show", run.id).stdout
    assert "optim.lr=0.0003" in text and "extra.nested.deep=True" in text


def test_omegaconf_config_when_installed() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"model": {"dim": 8}, "lr": "${model.dim}"})
    assert to_plain(cfg) == {"model": {"dim": 8}, "lr": 8}


def test_summary_of_an_attached_run_merges_with_the_wrappers(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
import tracklab
run = tracklab.init()
for step in range(5):
    tracklab.log({"acc": step / 10, "loss": 1.0 / (step + 1)})
run.summary["best_acc"] = 0.93
run.summary["loss"] = 0.01
run.finish()
""")
    res = run_tracklab("run", "-q", "--run-id", "sum", "--config", "lr=0.1", "--", sys.executable,
                       str(script))
    assert res.returncode == 0, res.stderr
    info = tracklab.open_run("sum").info
    assert info["summary"]["user"] == {"best_acc": 0.93, "loss": 0.01}
    assert "peaks" in info["summary"] and info["summary"]["console"]["captured"]
    data = json.loads(cli("show", "sum", "--json").stdout)
    assert data["summary"] == {"acc": 0.4, "loss": 0.01, "best_acc": 0.93}  # user's wins
    text = cli("show", "sum").stdout
    assert "best_acc=0.93" in text and "lr=0.1" in text


def test_summary_of_an_owned_run() -> None:
    run = tracklab.init()
    tracklab.log({"x": 2.0})
    run.summary["best"] = 1.5
    run.finish()
    info = tracklab.open_run(run.id).info
    assert info["status"] == "finished" and info["summary"]["user"] == {"best": 1.5}


def test_sdk_run_records_its_context(repo: Path) -> None:
    script = write_script(repo, """
import time, tracklab
run = tracklab.init()
tracklab.log({"x": 1.0})
for _ in range(200):  # the description is written off-thread; give it time
    if tracklab.open_run(run.id).info["context"]:
        break
    time.sleep(0.05)
run.finish()
print(run.id)
""", name="sdk_run.py")
    res = subprocess.run([sys.executable, str(script)], cwd=repo, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    ctx = tracklab.open_run(res.stdout.strip()).info["context"]
    assert ctx["code"]["repo"] == str(repo) and ctx["code"]["untracked"] == 1
    assert ctx["python"]["executable"] == sys.executable


def test_tags_and_notes() -> None:
    res = run_tracklab("run", "-q", "--run-id", "tagged", "--tag", "baseline", "--notes",
                       "first try", "--", sys.executable, "-c", "pass")
    assert res.returncode == 0
    res = cli("tag", "tagged", "lr-sweep", "baseline", "best")
    assert res.returncode == 0 and res.stdout == "baseline, lr-sweep, best\n"
    assert [r["id"] for r in tracklab.list_runs(tag="lr-sweep")] == ["tagged"]
    res = cli("tag", "tagged", "--remove", "baseline")
    assert res.stdout == "lr-sweep, best\n"
    assert tracklab.list_runs(tag="baseline") == []
    assert "tagged" in cli("ls", "--tag", "best").stdout
    text = cli("show", "tagged").stdout
    assert "first try" in text and "lr-sweep, best" in text
    assert cli("tag", "no-such-run", "x").returncode == 1
    assert cli("tag", "tagged", " ").returncode == 2


def test_run_tags_are_checked_and_deduplicated_as_tag_does() -> None:
    for empty in ("", "  "):
        res = run_tracklab("run", "-q", "--tag", "ok", "--tag", empty, "--", sys.executable,
                           "-c", "pass")
        assert res.returncode == 2 and "a tag cannot be empty" in res.stderr
    assert tracklab.list_runs() == []  # a usage error starts no run
    res = run_tracklab("run", "-q", "--run-id", "dup", "--tag", "a", "--tag", "b", "--tag", "a",
                       "--", sys.executable, "-c", "pass")
    assert res.returncode == 0
    assert tracklab.open_run("dup").info["tags"] == ["a", "b"]


def test_ls_tag_matches_exactly() -> None:
    for run_id, tag in (("umlaut", "ü n"), ("quote", 'a"b'), ("pct", "100%"),
                        ("under", "a_b"), ("plain", "axb")):
        assert run_tracklab("run", "-q", "--run-id", run_id, "--tag", tag, "--", sys.executable,
                            "-c", "pass").returncode == 0
    for tag, expect in (("ü n", ["umlaut"]), ('a"b', ["quote"]), ("100%", ["pct"]),
                        ("%", []), ("a_b", ["under"]), ("AXB", []), ("x", [])):
        assert [r["id"] for r in tracklab.list_runs(tag=tag)] == expect, tag
    res = cli("ls", "--tag", "ü n", "--json")
    assert [json.loads(line)["id"] for line in res.stdout.splitlines()] == ["umlaut"]
