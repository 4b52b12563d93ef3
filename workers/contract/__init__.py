"""The contract between the science and the registry: the detection report, the error kinds a
user sees as one line, and the code version. It imports nothing else of swreg, so both sides can
depend on it without depending on each other."""
