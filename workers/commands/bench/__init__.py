"""`swreg bench`: time swreg's job against the naive approach on the same checkpoints, and show
that its memory does not grow with the model.

Each approach runs in its own process, timed from start to exit (imports included, as a user
would run it); its peak host memory is the process's maximum resident set size, read by the
parent when the process ends (wait4), and it reports its peak GPU memory itself. The time to read
the checkpoint once is measured with the page cache dropped for its files (cold), which is the
floor for any job that must look at every weight.

In one run: SmolLM2 and a 3 GB synthetic Llama, whole job against the naive approach (wall, peak,
bytes read, verdicts, variant-tokens scored); detection alone (`swreg detect --no-validate`, as a
user runs it) against the naive one-pass detection; the synthetic checkpoint under a memory cap of
half its size; and a 1.5B-parameter synthetic Llama, with and without a planted super weight,
judged by swreg alone.

The parts, one module each: `memory` (the cap and the peak resident memory), `checkpoints` (the
synthetic shapes and their files), `child` (the child-process protocol; `python -m
workers.commands.bench` is its entry point), `figures` (each part's measurements), `printing`, and
`command` (the click command).
"""
