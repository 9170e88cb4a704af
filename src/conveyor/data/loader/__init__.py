"""The streaming loader: a dataset version into a PyTorch training loop (see LOADER.md)."""
