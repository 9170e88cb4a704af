"""Ground layer: the object store (bytes) and the metadata store (the index over them)."""
