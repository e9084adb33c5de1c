"""Entry point. ``tracklab run`` takes a fast path that skips importing typer and rich, so the
wrapper starts in a fraction of the time; everything else (and ``run --help``) goes to Typer."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "run":
        from .fastrun import main_run

        code = main_run(args[1:])
        if code is not None:
            sys.exit(code)
    from .app import app

    app(args=args, prog_name="tracklab")


if __name__ == "__main__":
    main()
