"""tracklab's performance benchmark suite (issue 5). Run it with ``python -m tests.benchmarks``.

Not part of the normal test run (``norecursedirs`` in pyproject.toml). See README.md here.
"""
