"""``tracklab run``'s pickup of the metric files a training script writes: TensorBoard event
files (``events.out.tfevents.*``: torch.utils.tensorboard, tensorboardX, Lightning's default
logger, Transformers' ``report_to="tensorboard"``, Keras's TensorBoard callback) and Lightning's
CSVLogger files (``version_*/metrics.csv``), found under the command's working folder.

Their scalars become the run's training metrics, with the files' steps (and, for event files,
times), written as the wrapper's own process. Nothing is counted twice: a name the script also
logs through ``tracklab.log()`` (or a tracklab logger or callback) is left to it, and a name two
files both write is taken from the first file that had it. Event files are read with
TensorBoard's own loader (``tracklab[tensorboard]``); without it, one warning says so.

Only files changed since the run started are read, so earlier runs' logs in the same folder are
left alone. Scanning is cheap and bounded: hidden folders, virtual environments and the store are
skipped, at most MAX_DEPTH folders down and MAX_ENTRIES entries a scan.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

SCAN_EVERY_S = 2.0
HOLD_S = 3.0  # a value is stored once it is this old: the script's own log() of it lands first
MAX_DEPTH = 6
MAX_ENTRIES = 20_000
SKIP_DIRS = frozenset(("node_modules", "__pycache__", "site-packages", "venv", "wandb"))
EVENT_PREFIX = "events.out.tfevents."
# Keras's TensorBoard callback writes its train and validation values under the same tags, in
# sibling folders: those folders' names go in front of the tag, as TensorBoard shows them
SPLIT_DIRS = frozenset(("train", "validation", "val", "eval", "test"))
MISSING = ("TensorBoard event files were found but not read: install tracklab[tensorboard] "
           "(the tensorboard package) to store their scalars")

Point = tuple[str, int, float, float]  # name, step, time, value


class MetricFilesWatcher:
    """Finds and reads the files in its own thread; :meth:`stop` reads what is left."""

    def __init__(self, shard_path: str, num: int, root: str, started: float, skip: list[str],
                 warn: Callable[[str], None], child_pid: int | None = None) -> None:
        self.shard_path = shard_path
        self.child_pid = child_pid
        self.pids: set[int] = {child_pid} if child_pid else set()  # the command's tree, as seen
        self.num = num
        self.root = os.path.abspath(root)
        self.started = started
        self.skip = {os.path.abspath(p) for p in skip}
        self.warn = warn
        self.readers: dict[str, Any] = {}
        self.owner: dict[str, str] = {}  # metric name -> the file it is taken from
        self.held: list[tuple[str, Point]] = []
        self.writer: Any = None
        self.stored = 0
        self._said: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tracklab-tensorboard",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """After the command has exited: read the files to their end, store every value (the
        script's own points are in the store by now), and close."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return  # a hung filesystem: what was stored stays, the wrapper goes on
        try:
            self._pass(final=True)
        except Exception as exc:  # noqa: BLE001 - a file's trouble never costs the run's end
            self._say("error", f"could not read the run's metric files ({exc})")
        if self.writer is not None:
            self.writer.close(timeout=2.0)

    def _loop(self) -> None:
        while not self._stop.wait(SCAN_EVERY_S):
            try:
                self._pass(final=False)
            except Exception as exc:  # noqa: BLE001 - monitoring never harms the run
                self._say("error", f"could not read the run's metric files ({exc})")

    # -- one pass --------------------------------------------------------------------------------

    def _pass(self, final: bool) -> None:
        self._see_tree()
        for path in self._find():
            if path not in self.readers and self._ours(path):
                reader = self._reader(path)
                if reader is None:
                    continue
                self.readers[path] = reader
        for path, reader in list(self.readers.items()):
            try:
                self.held.extend((path, p) for p in reader.read())
            except OSError:
                continue  # being rotated or removed: the next pass tries again
        if not self.held:
            return
        cutoff = float("inf") if final else time.time() - HOLD_S
        ready = [h for h in self.held if h[1][2] <= cutoff]
        if not ready:
            return
        self.held = [h for h in self.held if h[1][2] > cutoff]
        self._store(ready)

    def _find(self) -> Iterator[str]:
        seen = 0
        stack = [(self.root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                seen += 1
                if seen > MAX_ENTRIES:
                    self._say("entries", f"stopped looking for TensorBoard/CSVLogger files "
                              f"after {MAX_ENTRIES} entries under {self.root}")
                    return
                name = entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if (depth < MAX_DEPTH and not name.startswith(".")
                                and name not in SKIP_DIRS and entry.path not in self.skip):
                            stack.append((entry.path, depth + 1))
                    elif _wanted(name, folder) and (
                            entry.path in self.readers or entry.stat().st_mtime >= self.started - 1):
                        yield entry.path
                except OSError:
                    continue

    def _see_tree(self) -> None:
        if self.child_pid is None:
            return
        import psutil

        try:
            self.pids.update(p.pid for p in psutil.Process(self.child_pid).children(recursive=True))
        except psutil.Error:
            pass  # exited: the pids seen so far stand

    def _ours(self, path: str) -> bool:
        """An event file names the host and (TensorBoard's writer) the pid that wrote it: one from
        another machine on a shared filesystem, or another run in the same folder (a sweep), is
        not this run's. tensorboardX's names carry no pid, CSVLogger's files neither: taken."""
        name = os.path.basename(path)
        if not name.startswith(EVENT_PREFIX):
            return True
        from tracklab import _env

        host = _env.hostname()  # socket.gethostname(), as the writers name their files
        rest = name[len(EVENT_PREFIX):].partition(".")[2]  # after the timestamp
        after = rest[len(host):len(host) + 1]
        if not rest.startswith(host) or after.isalnum() or after == "-":
            return False  # written on another machine
        fields = rest[len(host) + 1:].split(".")
        if after == "." and len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[0]) in self.pids
        return True

    def _reader(self, path: str) -> Any:
        if os.path.basename(path) == "metrics.csv":
            return CsvReader(path)
        try:
            return EventReader(path, self._prefix(path))
        except ImportError:
            self._say("missing", MISSING)
            return None

    def _prefix(self, path: str) -> str:
        folder = os.path.basename(os.path.dirname(path))
        return f"{folder}/" if folder in SPLIT_DIRS else ""

    # -- storing -----------------------------------------------------------------------------------

    def _store(self, ready: list[tuple[str, Point]]) -> None:
        from tracklab.store.codec import encode_values

        own = self._script_keys()
        for path, (name, step, t, value) in ready:
            if name in own:
                continue  # the script logs it itself
            if self.owner.setdefault(name, path) != path:
                continue  # another file had it first
            writer = self.writer or self._open_writer()
            if writer is None:
                return
            fmt, blob = encode_values((value,))
            writer.queue.put((name,), fmt, _header(step, t) + blob)
            self.stored += 1

    def _script_keys(self) -> set[str]:
        """Names that processes other than this one have logged to the run."""
        from tracklab.store import Shard

        shard = Shard(self.shard_path, create=False, readonly=True)
        try:
            mine = self.writer.proc_num if self.writer is not None else None
            return {key for proc, key, *_ in shard.metric_stats(self.num) if proc != mine}
        finally:
            shard.close()

    def _open_writer(self) -> Any:
        from tracklab import _env
        from tracklab.errors import StoreError
        from tracklab.sdk.writer import PAGE_CACHE_KIB, PointWriter
        from tracklab.store import Shard

        try:
            shard = Shard(self.shard_path)
            try:
                proc = shard.add_proc(self.num, os.getpid(), None, None, _env.hostname(),
                                      time.time())
            finally:
                shard.close()
        except StoreError as exc:
            self._say("store", f"TensorBoard/CSVLogger values not stored ({exc})")
            return None
        path = self.shard_path
        self.writer = PointWriter(lambda: Shard(path, cache_kib=PAGE_CACHE_KIB), self.num, proc,
                                  shard_path=path)
        return self.writer

    def _say(self, what: str, message: str) -> None:
        if what not in self._said:
            self._said.add(what)
            self.warn(message)


def _wanted(name: str, folder: str) -> bool:
    return name.startswith(EVENT_PREFIX) or (
        name == "metrics.csv" and os.path.basename(folder).startswith("version_"))


def _header(step: int, t: float) -> bytes:
    from tracklab.sdk.pointqueue import HEADER

    return HEADER.pack(step, t)


class EventReader:
    """One event file, read on from where the last read stopped (TensorBoard's own loader:
    a record still being written is left for the next read)."""

    def __init__(self, path: str, prefix: str) -> None:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.util import tensor_util

        self.loader = EventFileLoader(path)
        self.prefix = prefix
        self.scalar = summary_pb2.DATA_CLASS_SCALAR
        self.to_array = tensor_util.make_ndarray

    def read(self) -> Iterator[Point]:
        for event in self.loader.Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                number = self._number(value)
                if number is not None:
                    yield (self.prefix + value.tag, max(0, int(event.step)),
                           float(event.wall_time), number)

    def _number(self, value: Any) -> float | None:
        if value.HasField("simple_value"):
            return float(value.simple_value)
        meta = value.metadata
        if not value.HasField("tensor") or not (meta.data_class == self.scalar
                                                or meta.plugin_data.plugin_name == "scalars"):
            return None
        try:
            array = self.to_array(value.tensor)
            return float(array.item()) if array.size == 1 else None
        except (ValueError, TypeError):
            return None


class CsvReader:
    """Lightning's CSVLogger file: a header line, then one line per logging call (``step``,
    ``epoch`` and the metrics' columns, empty where a call had no value). The logger rewrites it
    whole when a new column appears, so it is read whole and the lines already taken skipped."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = 0
        self.size = -1

    def read(self) -> Iterator[Point]:
        import csv

        size = os.path.getsize(self.path)
        if size == self.size:
            return
        with open(self.path, newline="") as f:
            text = f.read()
        if not text.endswith("\n"):
            return  # caught mid-write: the next pass reads it whole
        self.size = size
        rows = list(csv.DictReader(text.splitlines()))
        now = time.time()
        for row in rows[self.done:]:
            try:
                step = int(float(row.get("step") or 0))
            except ValueError:
                continue
            for key, raw in row.items():
                if key in ("step", None) or raw in ("", None):
                    continue
                try:
                    yield key, max(0, step), now, float(raw)
                except ValueError:
                    continue
        self.done = len(rows)
