"""Pieces of the training step that are not the model: batch streams, loss maths, preservation losses,
validation loss, timing. Each module is small and tested on its own; the trainer wires them together."""
