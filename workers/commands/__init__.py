"""The science's own commands: `swreg detect` (one model, locally, no database) and
`swreg bench` (swreg against the naive approach)."""
