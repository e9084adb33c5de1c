"""The dashboard's HTTP server: the standard library's threading server, a JSON API and one
static page. Read-only: every request opens the store afresh, reads and closes it.

Loopback by default. Bound to any other address, every request must carry the token (``?token=``
in the printed URL; the page then keeps it in a same-site cookie), else it gets 401. On loopback
the ``Host`` header must name a loopback host, so a web page the user visits cannot read the API
through a DNS name rebound to 127.0.0.1.
"""

from __future__ import annotations

import hmac
import importlib.util
import ipaddress
import json
import os
import secrets
import sys
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tracklab.errors import AmbiguousRun, MissingExtra, RunNotFound, StoreError
from tracklab.ui import data

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
# The chart library's files, served from the installed uplot-python package.
VENDOR_FILES = {"uPlot.iife.js": "uPlot.iife.js", "uPlot.min.css": "uPlot.min.css"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")
MAX_WIDTH = 4000
MAX_RUNS = 50
MAX_KEYS = 400


def vendor_dir() -> str:
    """The folder of the uPlot bundle the ``ui`` extra installs. Raises MissingExtra."""
    spec = importlib.util.find_spec("uplot")  # finds the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        folder = os.path.join(loc, "static")
        if os.path.isfile(os.path.join(folder, "uPlot.iife.js")):
            return folder
    raise MissingExtra("uplot-python (the dashboard's chart library)", "ui")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Dashboard(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store_dir: str, host: str = "127.0.0.1", port: int = 8177,
                 token: str | None = None) -> None:
        self.store_dir = store_dir
        self.vendor = vendor_dir()
        self.loopback = is_loopback(host)
        self.token = token if token is not None else (None if self.loopback
                                                      else secrets.token_urlsafe(24))
        if ":" in host and not host.startswith("["):
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/" + (f"?token={self.token}" if self.token else "")


class Handler(BaseHTTPRequestHandler):
    server: Dashboard
    protocol_version = "HTTP/1.1"
    server_version = "tracklab-ui"
    sys_version = ""
    timeout = 60  # an idle kept-alive connection lets its thread go after a minute

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a dashboard polled every 2 s would flood the terminal

    # -- plumbing ---------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(data.clean(obj), separators=(",", ":"), default=str,
                          allow_nan=False).encode()
        self._send(status, body, "application/json", extra)

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message, "status": status}, status)

    def _authorized(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, token came in the query): the query's token or the cookie's."""
        token = self.server.token
        if token is None:
            return True, False
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True, True
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        morsel = cookie.get("tracklab_token")
        return bool(morsel and hmac.compare_digest(morsel.value.encode(), token.encode())), False

    def _host_ok(self) -> bool:
        if not self.server.loopback:
            return True  # the token stands in for the Host check
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name.strip("[]"))

    # -- routes -----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._error(405, "the dashboard is read-only")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001  (one bad request must not take the dashboard down)
            try:
                self._error(500, f"internal error: {type(exc).__name__}: {exc}")
            except OSError:
                pass

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = unquote(parts.path)
        if not self._host_ok():
            self._error(403, "this dashboard answers only to a loopback host name")
            return
        allowed, via_query = self._authorized(query)
        if not allowed:
            self._error(401, "a token is needed: open the URL that 'tracklab ui' printed")
            return
        extra = {}
        if via_query:
            extra["Set-Cookie"] = (f"tracklab_token={self.server.token}; Path=/; HttpOnly; "
                                   "SameSite=Strict")
        if path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        elif path in ("/", "/index.html"):
            self._file(STATIC_DIR, "index.html", extra)
        elif path.startswith("/static/"):
            self._file(STATIC_DIR, path[len("/static/"):], extra)
        elif path.startswith("/vendor/"):
            name = VENDOR_FILES.get(path[len("/vendor/"):])
            if name is None:
                self._error(404, "no such file")
            else:
                self._file(self.server.vendor, name, extra)
        elif path.startswith("/api/"):
            self._api(path[len("/api/"):], query)
        else:
            self._error(404, f"no such page: {path}")

    def _file(self, folder: str, name: str, extra: dict[str, str]) -> None:
        # only plain names of files in the folder itself: no '..', no separators, no dotfiles
        if (not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name
                or name not in os.listdir(folder)):
            self._error(404, "no such file")
            return
        full = os.path.join(folder, name)
        if not os.path.isfile(full):
            self._error(404, "no such file")
            return
        with open(full, "rb") as f:
            body = f.read()
        self._send(200, body, _TYPES.get(os.path.splitext(name)[1], "application/octet-stream"),
                   extra)

    def _api(self, route: str, q: dict[str, list[str]]) -> None:
        store = self.server.store_dir
        warns: list[str] = []

        def arg(name: str, default: str | None = None) -> str | None:
            got = q.get(name)
            return got[0] if got else default

        try:
            if route == "runs":
                runs = data.read(lambda: data.runs_table(store), warns)
                self._json({"runs": runs, "warnings": warns, "store": store})
            elif route.startswith("run/"):
                rest = route[len("run/"):]
                if rest.endswith("/console"):
                    ref = rest[: -len("/console")]
                    text = data.read(lambda: data.console_text(store, ref), warns)
                    self._send(200, text.encode("utf-8", "replace"), "text/plain; charset=utf-8")
                else:
                    page = data.read(lambda: data.run_page(store, rest), warns)
                    page["warnings"] = warns
                    self._json(page)
            elif route == "keys":
                refs = _list(q.get("run"), MAX_RUNS)
                self._json(data.read(lambda: data.keys_of(store, refs), warns)
                           | {"warnings": warns})
            elif route == "series":
                refs = _list(q.get("run"), MAX_RUNS)
                keys = _list(q.get("key"), MAX_KEYS)
                rel = arg("rel") == "1"
                axis = arg("axis", "step")
                if axis not in ("step", "time"):
                    self._error(400, "axis is 'step' or 'time'")
                    return
                width = max(10, min(MAX_WIDTH, int(arg("width", "800") or 800)))
                lo, hi = _float(arg("lo")), _float(arg("hi"))
                self._json(data.read(
                    lambda: data.chart_series(store, refs, keys, axis, lo, hi, width, rel), warns)
                    | {"warnings": warns})
            else:
                self._error(404, f"no such API: /api/{route}")
        except RunNotFound as exc:
            self._error(404, str(exc))
        except AmbiguousRun as exc:
            self._error(404, str(exc))
        except StoreError as exc:
            self._error(503, str(exc))
        except ValueError as exc:
            self._error(400, f"bad request: {exc}")


def _list(values: list[str] | None, most: int) -> list[str]:
    items = [v for v in values or [] if v]
    if len(items) > most:
        raise ValueError(f"at most {most} items")
    return items


def _float(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    v = float(text)
    if v != v:
        raise ValueError("NaN bound")
    return v


def serve(server: Dashboard) -> None:
    """Serve until KeyboardInterrupt (Ctrl-C), then close the socket."""
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()
