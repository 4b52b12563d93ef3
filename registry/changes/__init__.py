"""The changes feed: the model revisions added, updated or retracted since a data version."""
