"""Entry point. ``tracklab run`` takes a fast path that skips importing typer and rich, so the
wrapper starts in a fraction of the time; everything else (and ``run --help``) goes to Typer."""

from __future__ import annotations

import sys
from typing import TextIO


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "run":
        from tracklab_cli.commands.fastrun import main_run

        code = main_run(args[1:])
        if code is not None:
            sys.exit(code)
    import warnings

    from tracklab.errors import TracklabWarning

    show = warnings.showwarning

    def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
        """The library's warnings to a user of the command line: one line, no source line."""
        if issubclass(category, TracklabWarning):
            sys.stderr.write(f"{message}\n")
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    from tracklab_cli.app import app

    app(args=args, prog_name="tracklab")


if __name__ == "__main__":
    main()
