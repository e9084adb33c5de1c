"""tensorboardX's SummaryWriter as Keras's TensorBoard callback lays its files out: the same tags
under train/ and validation/; "plain": one writer in runs/, as tensorboardX's examples do."""

import sys

from tensorboardX import SummaryWriter

if len(sys.argv) > 1 and sys.argv[1] == "plain":
    w = SummaryWriter("runs/exp")
    for step in range(5):
        w.add_scalar("loss", 1.0 / (step + 1), step)
        w.add_text("note", "not a number", step)
    w.close()
else:
    writers = {part: SummaryWriter(f"logs/{part}") for part in ("train", "validation")}
    for epoch in range(2):
        for part, w in writers.items():
            w.add_scalar("epoch_loss", epoch + (0.5 if part == "validation" else 0.0), epoch)
    for w in writers.values():
        w.close()
