import sys

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tracklab.integrations.lightning import TracklabLogger


class Tiny(L.LightningModule):
    def __init__(self, lr=0.1, hidden=4):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


if __name__ == "__main__":
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    strategy = sys.argv[1] if len(sys.argv) > 1 else "auto"
    devices = 2 if strategy == "ddp" else 1
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=devices, strategy=strategy,
                        logger=[TracklabLogger(), CSVLogger("csv")], log_every_n_steps=1,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=8))
