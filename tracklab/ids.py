"""Run ids: short, random, lowercase base36, easy to type as a prefix."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id(length: int = 8) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
