"""Lightning with its default logger (TensorBoard when installed; "csv": its CSVLogger), and no
tracklab line at all; "twice": the script also calls tracklab.log for the same values."""

import sys

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tracklab

how = sys.argv[1] if len(sys.argv) > 1 else "default"


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        if how == "twice":
            tracklab.log({"train_loss": loss.item()}, step=self.global_step)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if how == "twice":
    tracklab.init()
torch.manual_seed(0)
x = torch.randn(16, 3)
trainer = L.Trainer(max_epochs=2, accelerator="cpu", log_every_n_steps=1,
                    logger=CSVLogger(".") if how == "csv" else True,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Tiny(), DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4))
