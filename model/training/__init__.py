"""Progressive adaptation: the training loop and the pieces of one step."""
