"""`swreg worker`: run a worker until stopped."""

import click


@click.command()
@click.option(
    "--once", is_flag=True, help="Exit when no job is claimable instead of waiting for more."
)
@click.option("--max-jobs", type=click.IntRange(min=1), help="Exit after this many jobs.")
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    help="Where to run models (default: SWREG_DEVICE or cpu).",
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.05),
    help="How often to look for work when idle.",
    default=5.0,
    show_default=True,
)
def worker(once: bool, max_jobs: int | None, device: str | None, poll_seconds: float) -> None:
    """Process queued jobs: fetch, detect, validate, record. SIGTERM/SIGINT finish the current
    job first; a second signal hands it back to the queue. While the database is unavailable
    (at start-up too) the worker waits and tries again.

    \b
    Examples:
      swreg worker
      swreg worker --once                          # drain the queue, then exit
      swreg worker --device cuda --max-jobs 10
    """
    from registry.database import make_engine, make_sessionmaker
    from registry.migrate import database_url
    from workers.worker.loop import Worker, WorkerConfig, configure_logging

    configure_logging()
    config = WorkerConfig.from_settings(
        device=device, once=once, max_jobs=max_jobs, poll_seconds=poll_seconds
    )
    # No schema check here: Worker.run waits for the database (an outage is no reason to exit).
    instance = Worker(make_sessionmaker(make_engine(database_url())), config)
    instance.install_signal_handlers()
    instance.run()
