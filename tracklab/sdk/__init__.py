"""What runs inside the training process: init/log/finish, the writer thread and its queue,
making the user's values storable, and the monitor_* API of the user's document."""
