"""`python -m workers.commands.bench APPROACH MODEL ...`: a timed child process of `swreg bench`."""

from workers.commands.bench.child import main

if __name__ == "__main__":
    main()
