"""Every Python block of the user's document runs as written, and does what its text says.

The blocks are read from ``system-monitoring.zh.md`` itself (never copied here). Each one runs in
a fresh interpreter with a temporary ``TRACKLAB_DIR``; the names it uses without defining them
(``train_epoch``, ``model``, ``run_id``...) are defined by a prelude, and nothing else is. Some
blocks only define something (a class, a function); an epilogue then uses it the way the text
describes. Afterwards the check of each block reads back what it stored, with and without
(fake) GPUs.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import platform
import re
import subprocess
import symtable
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from markdown_it import MarkdownIt

import tracklab
from tracklab.store.codec import flatten

ROOT = Path(__file__).resolve().parents[1]
# The document ships in docs/ once copied into the repository; until then, beside the checkout.
DOC_CANDIDATES = [ROOT / "docs" / "system-monitoring.zh.md",
                  ROOT.parent / "shared" / "spec" / "system-monitoring.zh.md"]
DOC = next((p for p in DOC_CANDIDATES if p.is_file()), DOC_CANDIDATES[-1])
pytestmark = pytest.mark.skipif(not DOC.is_file(), reason=f"the user's document is not at {DOC}")

GPU_MODES = {"no_gpu": ("no_driver", 0), "two_gpus": ("two_gpus", 2)}
FAKE_GPU_NAME = "NVIDIA A100-SXM4-40GB"


# -- reading the document ---------------------------------------------------------------------


@dataclass
class Block:
    id: str
    heading: str
    line: int  # 1-based line of the opening fence
    code: str


# Each heading of the document that has Python blocks, and the id its blocks get (several blocks
# under one heading are numbered). A block under a heading missing here fails the test suite.
HEADINGS = {
    "基础使用": "basic", "手动监控": "manual", "🖥️ GPU监控": "gpu", "🔥 CPU监控": "cpu",
    "💾 内存监控": "memory", "🔧 综合监控": "hardware", "GPU使用监控": "gpu-usage-context",
    "硬件监控": "hardware-context", "记录自定义系统指标": "custom-metric",
    "系统信息": "system-info", "自动集成": "integrate-auto", "手动集成": "integrate-manual",
    "监控间隔": "interval", "节点标识": "node-id", "回调函数": "callback",
    "系统指标格式": "data-format", "常见问题": "troubleshooting", "调试模式": "debug",
    "1. 自动监控": "best-auto", "2. 异常处理": "best-exceptions",
    "3. 性能监控": "best-performance", "4. 分布式环境": "best-distributed",
}


def read_blocks(path: Path = DOC) -> list[Block]:
    """The document's ```python fences (also those indented inside list items), in order."""
    if not path.is_file():
        return []
    tokens = MarkdownIt().parse(path.read_text(encoding="utf-8"))
    heading = ""
    seen: dict[str, int] = {}
    blocks = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            heading = tokens[i + 1].content.strip()
        elif tok.type == "fence" and tok.info.strip().lower() in ("python", "py"):
            base = HEADINGS.get(heading, "unknown:" + heading)
            seen[base] = seen.get(base, 0) + 1
            blocks.append(Block(base, heading, tok.map[0] + 1 if tok.map else 0, tok.content))
    numbered: dict[str, int] = {}
    for b in blocks:
        if seen[b.id] > 1:
            numbered[b.id] = numbered.get(b.id, 0) + 1
            b.id = f"{b.id}-{numbered[b.id]}"
    return blocks


def free_names(code: str) -> set[str]:
    """Names a block reads without binding them first (module level or in its functions)."""
    top = symtable.symtable(code, "<block>", "exec")
    bound: set[str] = set()
    free: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for sym in table.get_symbols():
            name = sym.get_name()
            if table.get_type() == "module":
                if sym.is_assigned() or sym.is_imported():
                    bound.add(name)
                elif sym.is_referenced():
                    free.add(name)
            elif sym.is_global() and sym.is_referenced():
                free.add(name)
        for child in table.get_children():
            walk(child)

    walk(top)
    free -= bound
    # A module-level name read before its first binding (``model.train()`` ... then
    # ``model = nn.DataParallel(model)``) is free too.
    tree = ast.parse(code)
    # The value of an assignment is read before its targets are bound (``x = f(x)`` reads x):
    # a target counts from the end of its statement.
    bind_at: dict[int, tuple[int, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            end = (node.end_lineno or node.lineno, node.end_col_offset or 0)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    bind_at[id(sub)] = end
    events: list[tuple[tuple[int, int], str, bool]] = []  # (position, name, is a read)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            read = isinstance(node.ctx, ast.Load)
            pos = bind_at.get(id(node), (node.lineno, node.col_offset)) if not read else (
                node.lineno, node.col_offset)
            events.append((pos, node.id, read))
        elif isinstance(node, ast.alias):
            events.append(((node.lineno, node.col_offset),
                           (node.asname or node.name).split(".")[0], False))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or (
                isinstance(node, ast.ExceptHandler) and node.name):
            events.append(((node.lineno, node.col_offset), str(node.name), False))
    first: dict[str, bool] = {}
    for _pos, name, read in sorted(events, key=lambda e: e[0]):
        first.setdefault(name, read)
    free |= {n for n in bound if first.get(n)}
    return {n for n in free if not hasattr(builtins, n)}


BLOCKS = read_blocks()


# -- running one block ------------------------------------------------------------------------

HEADER = '''\
import atexit as _atexit, json as _json, os as _os, time as _time
_doc = {"calls": {}, "block_start": None, "block_end": None}
def _doc_call(name):
    _doc["calls"][name] = _doc["calls"].get(name, 0) + 1
    return _doc["calls"][name]
def _doc_report():  # registered first, so it runs after every tracklab exit handler
    _doc["exit_at"] = _time.time()
    with open(_os.environ["DOC_REPORT"], "w") as _f:
        _json.dump(_doc, _f)
_atexit.register(_doc_report)
'''

# The prelude's definition of each name a block may use without defining it.
STUBS = {
    "tracklab": "import tracklab\n",
    "train_epoch": (
        "def train_epoch():\n"
        "    return round(1.0 / _doc_call('train_epoch'), 6)\n"),
    "validate_epoch": (
        "def validate_epoch():\n"
        "    _doc_call('validate_epoch')\n"
        "    return 0.5\n"),
    "train_model": (
        "def train_model():\n"
        "    _doc_call('train_model')\n"
        "    _time.sleep(0.5)\n"),
    "model": (
        "class _Model:\n"
        "    def train(self):\n"
        "        _doc_call('model.train')\n"
        "        return self\n"
        "    def cuda(self, device=None):\n"
        "        _doc_call(f'model.cuda({device})')\n"
        "        return self\n"
        "model = _Model()\n"),
    "nn": (
        "import types as _types\n"
        "def _data_parallel(module):\n"
        "    _doc_call('nn.DataParallel')\n"
        "    return module\n"
        "nn = _types.SimpleNamespace(DataParallel=_data_parallel)\n"),
    "epochs": "epochs = 3\n",
    "run_id": "run_id = 'my-run'\n",
    "project": "project = 'my-project'\n",
    "run": "import tracklab as _tracklab\nrun = _tracklab.init(project='my-project')\n",
    "logger": "import logging as _logging\nlogger = _logging.getLogger('training')\n",
}
STUB_ORDER = list(STUBS)


@dataclass
class Result:
    block: Block
    gpus: int
    store: Path
    stdout: str
    stderr: str
    report: dict[str, Any]

    @property
    def calls(self) -> dict[str, int]:
        return self.report.get("calls", {})

    def runs(self) -> list[dict[str, Any]]:
        return tracklab.list_runs(dir=str(self.store), limit=None)

    def one_run(self, ref: str | None = None) -> dict[str, Any]:
        runs = self.runs() if ref is None else [r for r in self.runs() if r["id"] == ref]
        assert len(runs) == 1, f"expected one run{f' {ref}' if ref else ''}, found {runs}"
        return runs[0]

    def view(self, ref: str) -> Any:
        return tracklab.open_run(ref, dir=str(self.store))

    def samples(self, ref: str) -> list[dict[str, Any]]:
        v = self.view(ref)
        try:
            return v.samples()
        finally:
            v.close()

    def exit_delay(self) -> float:
        """Seconds from the end of the block (and epilogue) to the interpreter's exit."""
        return float(self.report["exit_at"] - self.report["block_end"])

    def block_time(self) -> float:
        return float(self.report["block_end"] - self.report["block_start"])


def build_script(block: Block, epilogue: str = "") -> str:
    names = free_names(block.code)
    unknown = names - set(STUBS)
    assert not unknown, (f"block {block.id} (line {block.line}) uses {sorted(unknown)} without "
                         "defining them: add a stub to STUBS")
    prelude = "".join(STUBS[n] for n in STUB_ORDER if n in names)
    return (f"{HEADER}{prelude}\n_doc['block_start'] = _time.time()\n"
            f"# ---- the document's block (line {block.line}) ----\n{block.code}"
            f"# ---- end of block ----\n{epilogue}\n_doc['block_end'] = _time.time()\n")


def run_block(block: Block, mode: str, tmp_path: Path, store: Path,
              epilogue: str = "") -> Result:
    scenario, gpus = GPU_MODES[mode]
    script = tmp_path / f"block_{block.id}.py"
    script.write_text(build_script(block, epilogue), encoding="utf-8")
    report = tmp_path / "report.json"
    env = dict(os.environ, DOC_REPORT=str(report), TRACKLAB_DIR=str(store),
               TRACKLAB_NVML_MODULE="tests.fakes", TRACKLAB_FAKE_NVML=scenario)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, (f"block {block.id} (line {block.line}) failed with "
                                  f"{proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return Result(block, gpus, store, proc.stdout, proc.stderr, json.loads(report.read_text()))


# -- what each block must have done ------------------------------------------------------------

FULL = {"cpu", "memory", "disk", "network", "accelerators"}


def full_samples(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in samples if set(s) >= FULL]


def assert_sane(sample: dict[str, Any], gpus: int) -> None:
    assert 0 <= sample["cpu"]["overall"] <= 100
    assert 0 <= sample["memory"]["usage"] <= 100
    assert 0 < sample["memory"]["used"] <= sample["memory"]["total"]
    assert len(sample["accelerators"]) == gpus


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return float(m.group(1))


def printed(pattern: str, text: str) -> Any:
    """The Python literal a block printed after ``pattern``'s prefix."""
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return ast.literal_eval(m.group(1))


def check_basic(r: Result) -> None:
    run = r.one_run()
    assert (run["project"], run["status"]) == ("my-project", "finished")
    v = r.view(run["id"])
    try:
        points = v.metrics()
        loss = [p["value"] for p in points if p["key"] == "loss"]
        assert loss == [round(1.0 / n, 6) for n in range(1, 101)]
        assert [p["value"] for p in points if p["key"] == "epoch"] == list(range(100))
        samples = full_samples(v.samples())
    finally:
        v.close()
    assert samples, "system_monitor=True recorded no system sample"
    for s in samples:
        assert_sane(s, r.gpus)


def check_manual(r: Result) -> None:
    assert f"GPU count: {r.gpus}\n" in r.stdout
    assert 0 <= number(r"CPU usage: ([\d.]+)%", r.stdout) <= 100
    run = r.one_run()
    samples = r.samples(run["id"])
    assert len(samples) == 1 and set(samples[0]) >= FULL, samples  # log_all_metrics()
    assert_sane(samples[0], r.gpus)


def check_gpu(r: Result) -> None:
    assert r.calls == {"model.train": 1}
    samples = r.samples(r.one_run()["id"])
    assert all(set(s) == {"nodeId", "timestamp", "accelerators"} for s in samples)
    assert all(len(s["accelerators"]) == r.gpus for s in samples)
    # with GPUs: entry and exit of monitor_gpu_usage(), then log_gpu_metrics()
    assert len(samples) >= 3 if r.gpus else len(samples) == 1
    if not r.gpus:
        assert "no NVIDIA GPU on this machine" in r.stderr


def check_cpu(r: Result) -> None:
    cores = psutil.cpu_count()
    assert f"CPU cores: {cores}\n" in r.stdout
    load = printed(r"Load average: (.*)", r.stdout)
    assert len(load) == 3 and all(x >= 0 for x in load)
    per_core = printed(r"Per-core usage: (.*)", r.stdout)
    assert len(per_core) == cores and all(0 <= x <= 100 for x in per_core)
    samples = r.samples(r.one_run()["id"])
    assert [set(s) for s in samples] == [{"nodeId", "timestamp", "cpu"}]


def check_memory(r: Result) -> None:
    assert 0 < number(r"Memory usage: ([\d.]+)%", r.stdout) <= 100
    used = number(r"Used memory: ([\d.]+) GB", r.stdout)
    total = number(r"Total memory: ([\d.]+) GB", r.stdout)
    assert 0 < used <= total
    assert total == round(psutil.virtual_memory().total / 1024**3, 1)
    samples = r.samples(r.one_run()["id"])
    assert [set(s) for s in samples] == [{"nodeId", "timestamp", "memory"}]


def check_hardware(r: Result) -> None:
    assert r.calls == {"train_model": 1}
    # log_interval=30 must not hold the end of a 0.5 s block
    assert r.block_time() < 15, r.block_time()
    samples = full_samples(r.samples(r.one_run()["id"]))
    assert len(samples) == 3  # entry and exit of the block, then log_all_metrics()
    for s in samples:
        assert_sane(s, r.gpus)


def check_gpu_usage_context(r: Result) -> None:
    assert r.calls == {"model.cuda(0)": 1, "model.train": 2, "nn.DataParallel": 1}
    run = r.one_run()
    samples = r.samples(run["id"])
    if r.gpus:
        assert len(samples) >= 4  # entry and exit of each block
        assert all(len(s["accelerators"]) == r.gpus for s in samples)
    else:
        assert samples == []
        assert "no NVIDIA GPU on this machine: monitor_gpu_usage(gpu_id=0)" in r.stderr


def check_hardware_context(r: Result) -> None:
    assert r.calls == {"train_epoch": 3, "validate_epoch": 3}
    samples = full_samples(r.samples(r.one_run()["id"]))
    assert len(samples) >= 2
    for s in samples:
        assert_sane(s, r.gpus)


def check_custom_metric(r: Result) -> None:
    run = r.one_run()
    v = r.view(run["id"])
    try:
        stats = v.system_summary()
        samples = v.samples()
    finally:
        v.close()
    assert stats["custom.temperature"]["last"] == 65.5
    assert stats["custom.power_consumption"]["last"] == 250.0
    assert stats["custom.fan_speed"]["last"] == 75.0
    assert [s["custom"] for s in samples if "custom" in s] == [
        {"temperature": 65.5}, {"power_consumption": 250.0}, {"fan_speed": 75.0}]
    assert len(full_samples(samples)) == 1  # get_current_metrics() took one


def check_system_info(r: Result) -> None:
    assert f"Platform: {platform.platform()}\n" in r.stdout
    assert re.search(r"CPU: \S", r.stdout)
    names = [FAKE_GPU_NAME] * r.gpus
    assert f"GPU: {names}\n" in r.stdout
    assert number(r"Memory: ([\d.]+) GB", r.stdout) == round(
        psutil.virtual_memory().total / 1024**3, 1)


def check_integrate_auto(r: Result) -> None:
    run = r.one_run()
    assert (run["project"], run["status"]) == ("my-project", "finished")
    samples = full_samples(r.samples(run["id"]))
    assert samples, "the decorated class started no monitoring"
    assert r.exit_delay() < 8


def check_integrate_manual(r: Result) -> None:
    run = r.one_run()
    assert (run["project"], run["status"]) == ("my-project", "finished")
    assert len(full_samples(r.samples(run["id"]))) >= 2  # start() and stop()


def check_nothing_stored(r: Result) -> None:
    assert r.runs() == []
    assert r.exit_delay() < 8


def check_node_id(r: Result) -> None:
    run = r.one_run("my-run")
    assert run["nodes"] == ["node-01"]
    samples = r.samples("my-run")
    assert samples and {s["nodeId"] for s in samples} == {"node-01"}


def check_callback(r: Result) -> None:
    cpu_lines = re.findall(r"^CPU: ([\d.]+)%$", r.stdout, re.M)
    assert cpu_lines and all(0 <= float(x) <= 100 for x in cpu_lines)
    if r.gpus:
        assert re.findall(r"^GPU: ([\d.]+)%$", r.stdout, re.M)
        assert "raised" not in r.stderr
    else:
        # metrics['accelerators'][0] raises IndexError without a GPU: logged once, with the
        # traceback, and sampling goes on to the last sample.
        assert r.stderr.count("callback on_metrics_update raised") == 1, r.stderr
        assert "IndexError" in r.stderr
    run = r.one_run("my-run")
    assert run["status"] == "finished"
    assert len(full_samples(r.samples("my-run"))) == len(cpu_lines)
    assert r.exit_delay() < 8, "a started, never stopped monitor held up the exit"


def check_data_format(r: Result) -> None:
    assert r.stdout == "" and r.runs() == []


def check_troubleshooting_1(r: Result) -> None:
    assert f"Available GPUs: {r.gpus}\n" in r.stdout
    assert r.runs() == []


def check_troubleshooting_2(r: Result) -> None:
    info = ast.literal_eval(r.stdout.strip())
    assert info["gpu_count"] == r.gpus and info["memory_total"] > 0
    assert info["platform"] == platform.platform()
    assert r.runs() == []


def check_debug(r: Result) -> None:
    assert "DEBUG:tracklab.sdk.system_monitor:monitor for run my-run" in r.stderr
    assert "DEBUG:tracklab.sampling.sampler:sample 1 taken" in r.stderr
    assert "DEBUG:tracklab.sampling.recorder:sample written" in r.stderr
    assert len(full_samples(r.samples("my-run"))) == 2


def check_best_auto(r: Result) -> None:
    run = r.one_run()
    assert run["status"] == "finished"
    assert full_samples(r.samples(run["id"]))
    assert r.exit_delay() < 8


def check_best_exceptions(r: Result) -> None:
    assert r.calls == {"train_model": 1}
    assert r.block_time() < 15, r.block_time()  # log_interval=30 by default
    run = r.one_run()
    assert run["status"] == "finished"
    assert len(full_samples(r.samples(run["id"]))) == 2  # entry and exit


def check_best_performance(r: Result) -> None:
    # check_performance() ran: at most the block's own warnings (a shared test machine may
    # well be above 90 % CPU), nothing from tracklab
    assert set(r.stderr.splitlines()) <= {"High CPU usage detected", "High memory usage detected"}
    assert r.samples(r.one_run()["id"]) == []


def check_best_distributed(r: Result) -> None:
    run = r.one_run()
    assert "localhost" in run["nodes"]
    samples = r.samples(run["id"])
    assert {s["nodeId"] for s in samples} == {"localhost"}


@dataclass
class Check:
    verify: Callable[[Result], None]
    epilogue: str = ""  # uses what the block defined, the way its text describes


START_STOP = "system_monitor.start()\nsystem_monitor.stop()\n"
CHECKS: dict[str, Check] = {
    "basic": Check(check_basic),
    "manual": Check(check_manual),
    "gpu": Check(check_gpu),
    "cpu": Check(check_cpu),
    "memory": Check(check_memory),
    "hardware": Check(check_hardware),
    "gpu-usage-context": Check(check_gpu_usage_context),
    "hardware-context": Check(check_hardware_context),
    "custom-metric": Check(check_custom_metric),
    "system-info": Check(check_system_info),
    "integrate-auto": Check(check_integrate_auto),
    "integrate-manual": Check(check_integrate_manual, "loop = MyTrainingLoop('my-project')\n"
                                                      "loop.train()\nloop.cleanup()\n"),
    # creating a monitor writes nothing: "my-run" appears on the first write
    "interval": Check(check_nothing_stored,
                      "assert system_monitor.collect_interval == 10\n"),
    "node-id": Check(check_node_id, START_STOP),
    "callback": Check(check_callback),
    "data-format": Check(check_data_format),
    "troubleshooting-1": Check(check_troubleshooting_1),
    "troubleshooting-2": Check(check_troubleshooting_2),
    "troubleshooting-3": Check(check_nothing_stored),
    "debug": Check(check_debug, START_STOP),
    "best-auto": Check(check_best_auto),
    "best-exceptions": Check(check_best_exceptions),
    "best-performance": Check(check_best_performance, "check_performance()\n"),
    "best-distributed": Check(check_best_distributed, START_STOP),
}


# -- the tests -----------------------------------------------------------------------------------


def test_every_python_block_is_found_and_checked() -> None:
    text = DOC.read_text(encoding="utf-8")
    fences = re.findall(r"^[ \t]*```python[ \t]*$", text, re.M)
    assert len(BLOCKS) == len(fences) > 20
    assert sorted(b.id for b in BLOCKS) == sorted(CHECKS)


@pytest.mark.parametrize("mode", list(GPU_MODES))
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_runs_as_written(block: Block, mode: str, tmp_path: Path,
                               isolated_env: Path) -> None:
    check = CHECKS[block.id]
    result = run_block(block, mode, tmp_path, isolated_env, check.epilogue)
    check.verify(result)


def test_free_names_are_only_the_ones_the_block_does_not_define() -> None:
    code = ("import tracklab\nrun = tracklab.init()\nmodel.train()\nmodel = wrap(model)\n"
            "def f(x):\n    return x + offset\nfor i in range(3):\n    y = i\nprint(y)\n"
            "try:\n    pass\nexcept Exception as e:\n    print(e)\nz = z + 1\n")
    assert free_names(code) == {"model", "wrap", "offset", "z"}


def test_the_document_data_format_is_what_snapshots_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key of the document's example snapshot exists, with a value of the same kind."""
    from tests import fakes
    from tracklab.collectors import SystemCollectors

    block = next(b for b in BLOCKS if b.id == "data-format")
    example = ast.literal_eval(block.code)
    monkeypatch.setenv("TRACKLAB_NVML_MODULE", "tests.fakes")
    fakes.use_scenario("two_gpus")
    collectors = SystemCollectors("localhost")
    try:
        collectors.prime()
        time.sleep(0.1)
        snap = collectors.snapshot()
    finally:
        collectors.close()
        fakes.reset()

    def kinds(tree: dict[str, Any]) -> dict[str, str]:
        paths, values = flatten(tree)
        return {re.sub(r"\.\d+(?=\.|$)", ".N", p): "number" if isinstance(v, (int, float))
                else type(v).__name__ for p, v in zip(paths, values)}

    ours, theirs = kinds(snap), kinds(example)
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"keys of the document's format missing from snapshots: {missing}"
    # a number may be null where this machine cannot give it (CPU temperature in a VM)
    wrong = {p: (k, ours[p]) for p, k in theirs.items() if ours[p] not in (k, "NoneType")}
    assert not wrong
