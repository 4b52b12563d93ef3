"""Super weights: model revisions and the coordinates found in them (models, service, API, CLI)."""
