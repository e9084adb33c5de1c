"""Writes one scalar with TensorBoard's own writer (file named with this host and pid), then
waits for the test to say "done" (a file), so the test can write files of its own meanwhile."""

import os
import sys
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


def write(logdir, tag, value, step=0):
    w = EventFileWriter(logdir)
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    w.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    w.close()


if __name__ == "__main__":
    write("runs/mine", "mine", 1.0)
    deadline = time.time() + 60
    while not os.path.exists(sys.argv[1]) and time.time() < deadline:
        time.sleep(0.1)
