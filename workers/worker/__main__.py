"""`python -m workers.worker [OPTIONS]` is `swreg worker [OPTIONS]`."""

import sys

from registry.cli import main

main(args=["worker", *sys.argv[1:]], prog_name="python -m workers.worker")
