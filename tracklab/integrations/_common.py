"""What the framework hooks share: joining the run this process already has (or starting one,
attached when under ``tracklab run``), and the rank a launcher gave the process."""

from __future__ import annotations

from typing import Any


def missing(framework: str, package: str) -> ImportError:
    return ImportError(f"tracklab.integrations.{framework} needs {package}: pip install {package}")


def join_run(rank: int | None = None, **init_kwargs: Any) -> Any:
    """The process's live run when the script started one itself, else a new one (attached to
    the wrapper's run under ``tracklab run``). ``rank`` is recorded when the launcher set no
    ``RANK`` (Lightning's and Accelerate's own launchers)."""
    import tracklab
    from tracklab import _env
    from tracklab.sdk import current

    run = current.run
    if run is not None and not run._closed:
        return run
    if _env.disabled():
        return tracklab.init(**init_kwargs)
    env_rank, local = _env.rank_env()
    if env_rank is None and rank is not None:
        # the hook knows the rank better than the environment does
        init_kwargs["_rank"] = (rank, local)
    return tracklab.init(**init_kwargs)
