"""Alembic environment: migrations run from `linli.storage.migrate` or the alembic CLI."""

from alembic import context
from sqlalchemy import pool

from linli.storage.db import make_engine
from linli.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    if not url.startswith("sqlite"):
        engine = engine.execution_options()
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
    _ = pool


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
