"""Alembic environment: always runs on a connection handed in by `cfl_graph.migrate`."""

from __future__ import annotations

from alembic import context

from cfl_graph.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `cfl-graph db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
