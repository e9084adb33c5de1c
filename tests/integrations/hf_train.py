"""A Transformers fine-tuning written as the library's examples are, plus the tracklab line."""

import sys

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from tracklab.integrations.transformers import TracklabCallback


class Data(torch.utils.data.Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(n)
        self.ids = torch.randint(0, 50, (n, 6), generator=g)
        self.labels = (self.ids.sum(1) % 2).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


if __name__ == "__main__":
    # "callback" (the default), "report_to", or "report_to,tensorboard"
    how = sys.argv[1].split(",") if len(sys.argv) > 1 else ["callback"]
    by_name = how[0] == "report_to"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)
    args = TrainingArguments(
        output_dir="out", num_train_epochs=2, per_device_train_batch_size=4, logging_steps=1,
        eval_strategy="epoch", save_strategy="no", learning_rate=1e-3, use_cpu=True,
        disable_tqdm=True, report_to=["tracklab", *how[1:]] if by_name else "none")
    trainer = Trainer(model=model, args=args, train_dataset=Data(16), eval_dataset=Data(8),
                      callbacks=[] if by_name else [TracklabCallback()])
    trainer.train()
