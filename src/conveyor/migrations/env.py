"""Alembic environment: always handed a live connection by MetadataStore.upgrade().

Every layer's table module is imported here so `Base.metadata` holds all tables.
"""

from alembic import context

import conveyor.data.records  # noqa: F401  (registers the dataset tables)
from conveyor.compute import records as compute_records  # noqa: F401  (job tables)
from conveyor.monitoring import records as monitoring_records  # noqa: F401  (alert events)
from conveyor.registry import records as registry_records  # noqa: F401  (registry tables)
from conveyor.serving import records as serving_records  # noqa: F401  (keys, prediction log)
from conveyor.storage.tables import Base
from conveyor.tracking import records as tracking_records  # noqa: F401  (tracking tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
