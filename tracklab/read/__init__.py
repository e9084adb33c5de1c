"""What reads runs back: open_run, show's data, trends and charts, compare, diagnosis, console,
export, report, tags. It imports neither the SDK nor the wrapper."""
