"""A Keras 3 training written as Keras's examples are, plus the tracklab line."""

import json
import sys

import keras
import numpy as np

from tracklab.integrations.keras import TracklabCallback

log_freq = sys.argv[1] if len(sys.argv) > 1 else "epoch"
keras.utils.set_random_seed(0)
x = np.random.rand(32, 3).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
          callbacks=[TracklabCallback(log_freq=log_freq if log_freq == "epoch" else int(log_freq))])
with open("history.json", "w") as f:  # Keras's own record, for the test to compare with
    json.dump(history.history, f)
