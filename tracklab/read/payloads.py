"""The shapes the readers return: what ``show --json``, ``ls --json``, ``compare --json`` and
``watch --json`` print, what the CLI's renderers (and the HTML report) read, and what a user of
:func:`tracklab.open_run` gets. The README's "JSON output" section lists the same fields.

Values are in base units (bytes, seconds, percent, watts, joules); a missing value is ``None``.
"""

from __future__ import annotations

from typing import Any, TypedDict


class _RunInfoFields(TypedDict):
    id: str
    name: str
    project: str | None
    status: str  # running, finished, failed, crashed, killed, oom-killed, interrupted, terminated
    exit_code: int | None
    signal: int | None
    command: Any  # the argv list the wrapper ran, or the SDK's script and arguments
    cwd: str | None
    host: str | None
    nodes: list[str]
    owner: str  # "wrapper" (tracklab run) or "sdk" (tracklab.init without a wrapper)
    pid: int | None
    interval: float | None  # seconds between samples
    started_at: float  # Unix time, seconds
    ended_at: float | None
    heartbeat_at: float | None
    duration: float | None  # seconds; a running run's so far
    config: dict[str, Any]
    system: dict[str, Any]  # the machine: platform, CPUs, memory, GPUs
    summary: dict[str, Any]  # peaks (see RunView.peaks), user (run.summary), console
    tags: list[str]
    notes: str | None
    context: dict[str, Any]  # code (git), python, packages


class RunInfo(_RunInfoFields, total=False):
    """A run's record, merged over its nodes: ``RunView.info`` and each line of ``ls --json``."""

    node_status: dict[str, str]  # a run across nodes: each node's own status


class StatRow(TypedDict, total=False):
    """One figure over the run: a row of ``show``'s system or GPU table."""

    path: str  # the sample's flattened path: cpu.overall, accelerators.0.utilization...
    label: str
    unit: str  # "%", "B", "B/s", "1/s", "°C", "W", "J", "MHz" or "" (a count)
    min: float
    max: float
    mean: float | None
    last: Any
    count: int
    trend: list[Any]  # `columns` values on the shared time axis (None where nothing was sampled)


class GpuTable(TypedDict):
    id: int
    name: str | None
    rows: list[StatRow]


class MetricSummary(TypedDict, total=False):
    """A training metric over the run (``RunView.metric_summary()``)."""

    count: int
    nans: int
    min: float | None
    max: float | None
    mean: float | None
    last: Any
    last_step: int | None
    last_time: float | None
    trend: list[Any] | None


class TrendWindow(TypedDict):
    start: float
    end: float
    columns: int


class ShowData(TypedDict, total=False):
    """``tracklab show --json``: everything ``show`` prints, as data."""

    info: RunInfo
    samples: int
    peaks: dict[str, Any]  # the headline figures (see tracklab.sampling.stats.peaks)
    system: list[StatRow]
    gpus: list[GpuTable]
    metrics: dict[str, MetricSummary]
    summary: dict[str, Any]  # each metric's last value, overridden by run.summary
    # the last lines of output when the run did not finish well: {line, stream, time, node}
    last_lines: list[dict[str, Any]]
    diagnosis: list[dict[str, Any]]  # findings: rule, severity, message, evidence
    resources: dict[str, Any]  # what the percentages are of, which GPUs the run was given
    energy: dict[str, Any] | None  # None until the run has ended
    fleet: dict[str, Any] | None  # a run across nodes: node rows, summary, stragglers
    trend_window: TrendWindow
    # parts of a damaged shard that could not be read ("samples", "training metrics", ...)
    unreadable: list[str]


class LiveFrame(TypedDict):
    """``tracklab watch --json``: one frame of a live run."""

    info: RunInfo
    now: float
    window: tuple[float, float]
    last: dict[str, Any] | None  # the newest sample (API.md's snapshot format)
    samples: int
    trends: dict[str, list[Any]]
    metrics: dict[str, MetricSummary]
    metric_trends: dict[str, list[Any]]


class CompareRow(TypedDict):
    label: str
    unit: str
    values: list[Any]  # one per run, in the order of CompareData.runs
    marked: bool  # the values differ (numbers: spread by more than the tolerance)


class _CompareSectionFields(TypedDict):
    title: str
    rows: list[CompareRow]


class CompareSection(_CompareSectionFields, total=False):
    note: str | None


class CompareRun(TypedDict):
    id: str
    name: str
    started_at: float


class CompareData(TypedDict):
    """``tracklab compare --json``: runs side by side."""

    runs: list[CompareRun]
    sections: list[CompareSection]
