"""Run ids: short, random, lowercase base36, easy to type as a prefix."""

from __future__ import annotations

import os

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_run_id(length: int = 8) -> str:
    # os.urandom, not `secrets`: that module costs ~20 ms of imports at every `tracklab run`.
    # The modulo bias (256 % 36) is irrelevant for ids that only need to be unlikely to collide.
    return "".join(_ALPHABET[b % 36] for b in os.urandom(length))
