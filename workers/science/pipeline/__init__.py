"""The whole job on one checkpoint: detect, validate, score, report. `sweep.analyse` streams the
layers once (what swreg runs); `naive.analyse_naive` loads the whole model and runs one full
pass per variant (what the benchmark compares against). Both share `steps`."""
