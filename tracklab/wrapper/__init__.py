"""What `tracklab run` does: start the child, forward signals, capture its console, record how
it ended."""
