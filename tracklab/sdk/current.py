"""The process's current run: the latest ``tracklab.init()`` run that has not finished.

Kept apart from the SDK so that the monitors, which write for that run, can find it without
importing the SDK that starts them.
"""

from __future__ import annotations

from typing import Any

run: Any = None  # a tracklab.Run; Any keeps this module free of the SDK's import
