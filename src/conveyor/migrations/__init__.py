"""Alembic migrations for every table in the metadata store; run by MetadataStore.upgrade()."""
