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
    import warnings

    from tracklab.errors import TracklabWarning

    # the library's warnings to a user of the command line: one line each, without a source line
    show = warnings.showwarning
    warnings.showwarning = lambda message, category, *rest: (
        sys.stderr.write(f"{message}\n") if issubclass(category, TracklabWarning)
        else show(message, category, *rest))
    from .app import app

    app(args=args, prog_name="tracklab")


if __name__ == "__main__":
    main()
