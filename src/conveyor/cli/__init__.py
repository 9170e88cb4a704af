"""Faces: the `conveyor` command. Thin over the services; imports heavy modules lazily."""
