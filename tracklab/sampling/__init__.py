"""Sampling: the sampler thread, the recorder and its running statistics, the machine's
description, the Prometheus exporter."""
