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
    job first; a second signal hands it back to the queue."""
    from registry.migrate import open_registry
    from workers.worker.loop import Worker, WorkerConfig, configure_logging

    configure_logging()
    config = WorkerConfig.from_settings(
        device=device, once=once, max_jobs=max_jobs, poll_seconds=poll_seconds
    )
    instance = Worker(open_registry(), config)
    instance.install_signal_handlers()
    instance.run()
