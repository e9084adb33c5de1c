"""``tracklab ui``: serve the live dashboard until Ctrl-C."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tracklab_cli.commands.common import fail


def ui(
    dir: Annotated[str | None, typer.Option("--dir", "-d", help="Store folder.")] = None,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8177,
    host: Annotated[str, typer.Option(
        help="Address to bind. Anything but loopback requires the token in the printed URL."
    )] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the URL in a browser.")] = False,
) -> None:
    """Serve a live web dashboard of the store's runs (read-only) until Ctrl-C.

    Runs table, charts of the selected runs (training metrics and system panels on one x
    axis), run pages. Loopback by default; any other --host prints a URL with a token, and a
    request without it gets 401. Needs the chart library: pip install 'tracklab[ui]'.

    Example: tracklab ui --dir /shared/tracklab   (on a node: ssh -N -L 8177:127.0.0.1:8177 node)
    """
    from tracklab import _env
    from tracklab.errors import MissingExtra

    if not 0 <= port <= 65535:
        raise fail(f"--port must be 0 to 65535, not {port}", 2)
    try:
        from tracklab.ui.server import Dashboard, serve

        server = Dashboard(_env.store_dir(dir), host, port)
    except MissingExtra as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sys.stdout.write(f"tracklab ui: serving {server.store_dir}\n  {server.url}\n"
                     "  (Ctrl-C to stop)\n")
    sys.stdout.flush()
    if open_browser:
        _open(server.url)
    serve(server)
    sys.stdout.write("tracklab ui: stopped\n")


def _open(url: str) -> None:
    """Open ``url`` in the desktop's browser. Without a display (a cluster node over SSH) the
    standard library would fall back to a text browser that takes over this terminal, so it
    says where to open the URL instead."""
    import os

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        sys.stdout.write("  (no display here for --open: open the URL above in your browser)\n")
        sys.stdout.flush()
        return
    import threading
    import webbrowser

    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
