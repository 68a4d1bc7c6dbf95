"""The Alembic migrations build exactly the schema the models declare, on both engines."""

from __future__ import annotations

from alembic import command

from adbtd.db.migrate import alembic_config


def test_migrations_match_the_models(database_url: str) -> None:
    """``alembic check`` compares the migrated database with the models: any column, index,
    constraint or table a model has and no migration makes (or the reverse) fails here."""
    command.check(alembic_config(database_url))
