"""Ground layer: settings, the error family and logging. Imports nothing above it."""
