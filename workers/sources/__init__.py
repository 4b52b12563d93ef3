"""Where checkpoints come from: the Hugging Face Hub (through its shared cache) or a local
directory. `pinning` turns what a user names into an exact revision (the registry calls it at
submission); `hub` and `local` fetch and check the files a worker analyses. The file rules are
the science's own (`workers.science.checkpoint`), applied to a listing before any download."""
