"""Generates the shell completion scripts in ``completions/`` from the Typer app.

Run ``python -m tracklab_cli.completions`` after changing commands; a test checks freshness.
The scripts call back into ``tracklab`` for the actual candidates, so they stay correct as
options change, but their shape is still regenerated and compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHELLS = {"bash": "tracklab.bash", "zsh": "_tracklab", "fish": "tracklab.fish"}


def script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    from tracklab_cli.app import app  # noqa: F401 - the app must be importable for completion to work

    return get_completion_script(prog_name="tracklab", complete_var="_TRACKLAB_COMPLETE",
                                 shell=shell).rstrip() + "\n"


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for shell, name in SHELLS.items():
        path = folder / name
        path.write_text(script(shell))
        out.append(path)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "completions"
    for p in write(target):
        print(p)
