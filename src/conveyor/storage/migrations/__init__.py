"""Alembic migrations for the metadata schema; run by MetadataStore.upgrade()."""
