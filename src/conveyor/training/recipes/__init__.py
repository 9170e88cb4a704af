"""Recipes: training that needs no user code (`conveyor train image-classifier ...`).

Each recipe builds a small model for a dataset version, trains it with `fit` on the
version's train split, evaluates on val (or test), tracks and checkpoints the run and
returns a `RecipeReport`. Models: image.py (CNN), tabular.py (MLP), text.py (MiniLM + head).
"""
