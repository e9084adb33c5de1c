"""``tracklab run``'s defaults, defined once: the library's RunOptions, console capture, and both
of the CLI's parsers (the fast one and Typer's, for ``--help``) take them from here."""

INTERVAL_S = 5.0  # between samples
MIN_INTERVAL_S = 0.1  # a shorter interval costs the run more than it shows
KILL_AFTER_S = 10.0  # a child's grace after SIGTERM before SIGKILL
CAPTURE_LIMIT = 10 * 1024 * 1024  # bytes of console output stored per run (head + tail)
PROMETHEUS_ADDR = "0.0.0.0"  # where --prometheus-port binds: scraped from other hosts
