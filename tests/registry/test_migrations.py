"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from registry import all_models, migrate
from registry.database import make_engine
from registry.errors import DatabaseOutOfDate
from registry.superweights.models import MIGRATION_ONLY_INDEXES, compared_by_autogenerate

TABLES = {"model_revisions", "super_weights"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": compared_by_autogenerate,
                },
            )
            return compare_metadata(context, all_models.metadata)
    finally:
        engine.dispose()


def test_history_starts_at_0001():
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_base() == "0001"
    assert "0001" in {rev.revision for rev in script.walk_revisions()}


def test_upgrade_from_empty_to_head(empty_db_url):
    assert _tables(empty_db_url) == set()
    migrate.upgrade(empty_db_url)
    assert TABLES <= _tables(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        assert migrate.current_revisions(engine) == migrate.head_revisions()
        migrate.check_current(engine)
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(db_url):
    migrate.downgrade(db_url, "base")
    assert _tables(db_url) <= {"alembic_version"}
    migrate.upgrade(db_url)
    assert TABLES <= _tables(db_url)


def test_downgrade_and_upgrade_a_registry_that_holds_data(db_url, db_sessions, published, report):
    """`swreg db downgrade 0005`, then `base`, on a registry with coordinates, a worker's
    revision and a token (SQLite rebuilds a table to alter it: with foreign keys enforced,
    dropping the old table that other rows reference failed)."""
    from registry.auth import service as auth
    from registry.database import transaction
    from registry.superweights import service

    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id="acme/model", revision="a" * 40, revision_kind="commit", report=report
        )
        auth.create_token(session, "ci")
    db_sessions.kw["bind"].dispose()
    migrate.downgrade(db_url, "0005")
    engine = make_engine(db_url)
    try:
        assert migrate.current_revisions(engine) == ("0005",)
    finally:
        engine.dispose()
    migrate.downgrade(db_url, "base")
    assert _tables(db_url) <= {"alembic_version"}
    migrate.upgrade(db_url)
    assert _diff(db_url) == []


def test_models_match_migrations(db_url):
    assert _diff(db_url) == []


def test_out_of_date_database_is_refused(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        with pytest.raises(DatabaseOutOfDate) as info:
            migrate.check_current(engine)
        assert str(info.value) == "database schema is out of date: run `swreg db upgrade`"
        migrate.upgrade(empty_db_url, "0001")
        if migrate.head_revisions() != ("0001",):  # later migrations exist: 0001 is behind
            with pytest.raises(DatabaseOutOfDate):
                migrate.check_current(engine)
    finally:
        engine.dispose()


def test_lists_page_by_an_index_in_binary_order_on_postgresql(db_url):
    """The one index the models leave out of the comparison is there, on the order lists use."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            names = {i["name"] for i in inspect(connection).get_indexes("model_revisions")}
            if engine.dialect.name != "postgresql":
                assert not names & MIGRATION_ONLY_INDEXES
                return
            definition = connection.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": "ix_model_revisions_model_id_binary"},
            )
    finally:
        engine.dispose()
    assert 'model_id COLLATE "C"' in definition


def test_migrations_the_database_cannot_take_are_refused_in_one_line(cli_env):
    """`swreg db upgrade --revision` to an older schema (Alembic does nothing, silently), a
    downgrade to a newer one, an unknown revision and a relative step too far (Alembic's
    tracebacks): one line each, exit status 2, the database left where it was."""
    from click.testing import CliRunner

    from registry.cli import main

    head = migrate.head_revisions()[0]

    def swreg(*args: str):
        return CliRunner().invoke(main, ["db", *args])

    refused = {
        ("upgrade", "--revision", "0005"): (
            f"error: the database is at schema {head}, newer than 0005: "
            "`swreg db downgrade 0005` goes back to it"
        ),
        ("upgrade", "--revision", "9999"): (
            f"error: unknown schema revision '9999' (known: 0001 to {head}, head or base)"
        ),
        ("downgrade", "9999"): (
            f"error: unknown schema revision '9999' (known: 0001 to {head}, head or base)"
        ),
    }
    for args, message in refused.items():
        result = swreg(*args)
        assert (result.exit_code, result.output.strip()) == (2, message), args
    assert swreg("downgrade", "0005").exit_code == 0
    result = swreg("downgrade", head)
    assert (result.exit_code, result.output.strip()) == (
        2,
        f"error: the database is at schema 0005, older than {head}: "
        f"`swreg db upgrade --revision {head}` goes forward to it",
    )
    assert swreg("current").output.startswith(f"0005 (head: {head}) out of date")
    assert swreg("upgrade", "--revision", head).exit_code == 0
    assert swreg("current").output.startswith(f"{head} (head: {head}) up to date")
    # Alembic's relative steps still go through, and a step too far is one line too.
    before = f"{int(head) - 1:04d}"
    assert swreg("downgrade", "--", "-1").exit_code == 0
    assert swreg("current").output.startswith(f"{before} (head: {head}) out of date")
    assert swreg("upgrade", "--revision", "+1").exit_code == 0
    too_far = swreg("upgrade", "--revision", "+1")
    assert (too_far.exit_code, too_far.output.strip()) == (
        2,
        "error: cannot migrate to '+1': Relative revision +1 didn't produce 1 migrations",
    )
    assert swreg("current").output.startswith(f"{head} (head: {head}) up to date")
