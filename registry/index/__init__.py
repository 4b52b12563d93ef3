"""The JSON index: one document holding every model revision and coordinate (export / import)."""
