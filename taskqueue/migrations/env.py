"""Alembic's entry for the run store: it runs on the connection `taskqueue.schema` hands it (inside the migration
lock), or, from the `alembic` command line (developers: `alembic revision --autogenerate`), on DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from taskqueue.store import metadata


def run_on(connection: Connection) -> None:
    # render_as_batch: SQLite alters a table by copying it, so autogenerate writes batch_alter_table blocks that
    # work on both databases; transactional_ddl: SQLite can roll DDL back too, so a failed upgrade leaves nothing.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      transactional_ddl=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_from_command_line() -> None:
    from pipeline.settings import get_settings
    from taskqueue.schema import migration_lock
    from taskqueue.store import make_engine

    # `alembic -x url=... <command>` for another database than DATABASE_URL (there is no alembic.ini to hold one)
    url = context.get_x_argument(as_dictionary=True).get("url") or get_settings().sqlalchemy_url
    if context.is_offline_mode():  # `alembic upgrade head --sql`: the SQL for a DBA to read or run
        context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with migration_lock(engine), engine.connect().execution_options(write=True) as connection:
            run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run_on(given)
else:
    run_from_command_line()
