"""The worker: claims jobs from the registry's queue, fetches, analyses and records. It is the
one place (with the command line) that uses both the registry and the science."""
