"""Shared data for the registry tests: a detection report as `swreg detect --json` prints it, and
the published index loaded."""

import pytest

from registry.database import transaction
from registry.index import service as index_service
from tests.helpers import smollm2_like_report
from workers.contract.resources import PUBLISHED_INDEX_PATH


@pytest.fixture
def report() -> dict:
    return smollm2_like_report()


@pytest.fixture
def token(db_sessions) -> str:
    """A live API token named "ci" (its secret)."""
    from registry.auth import service as auth

    with transaction(db_sessions) as session:
        _, secret = auth.create_token(session, "ci")
    return secret


@pytest.fixture
def published(db_sessions) -> None:
    """The shipped published index, loaded."""
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    with transaction(db_sessions) as session:
        index_service.import_document(session, document)
