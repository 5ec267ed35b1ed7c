"""Alembic environment: runs on the connection `db.migrate` hands over."""

from __future__ import annotations

from alembic import context

from damselfly.database import Base
from damselfly.jobs import models as _jobs  # noqa: F401 (registers the tables)
from damselfly.manager import models as _manager  # noqa: F401
from damselfly.media import models as _media  # noqa: F401

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
