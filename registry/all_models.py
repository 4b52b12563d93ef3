"""Every table of swreg, imported in one place so that Alembic (migrations/env.py) and the tests
see the complete metadata. Each domain adds its models module here."""

from registry import data_version  # noqa: F401
from registry.auth import models as auth_models  # noqa: F401
from registry.database import Base
from registry.jobs import models as jobs_models  # noqa: F401
from registry.jobs import workers as workers_models  # noqa: F401
from registry.superweights import models as superweights_models  # noqa: F401

metadata = Base.metadata
