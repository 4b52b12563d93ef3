"""What `swreg bench` prints: a table per comparison, detection alone, and the summary of every
figure that has a target."""

import click

from workers.commands.bench.memory import GIB, MIB


def fmt_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def _tokens(r: dict) -> str:
    v = r.get("variant_tokens")
    return "-" if not v else f"{v['variants']:>3} {v['scored']:>9,} / {v['on_whole_budget']:<9,}"


def table_row(name: str, r: dict) -> str:
    result = r["super_weights"] if r["ok"] else f"FAILED {r['error']}"
    return (
        f"{name:<14} {r['wall_s']:>8.1f} {fmt_bytes(r['peak_host_bytes']):>12} "
        f"{fmt_bytes(r['peak_gpu_bytes']):>10} {fmt_bytes(r['bytes_read']):>12}  {_tokens(r):<25} "
        f" {result}"
    )


HEADER = (
    f"{'approach':<14} {'wall s':>8} {'peak host':>12} {'peak GPU':>10} {'bytes read':>12}  "
    f"{'variants, variant-tokens scored / on the whole budget':<25}  verdicts"
)


def print_comparison(title: str, f: dict) -> None:
    click.echo(f"\n== {title}: {f['checkpoint']} ({f['checkpoint_bytes'] / GIB:.2f} GiB) ==")
    click.echo(
        f"read once: {f['read_once_cold_s']:.2f} s cold, {f['read_once_warm_s']:.2f} s warm; "
        f"eval tokens {f['eval_tokens']}"
    )
    click.echo(HEADER)
    for name in ("naive", "swreg"):
        click.echo(table_row(name, f[name]))
    if "swreg_over_naive" in f:
        click.echo(
            f"swreg / naive: wall {f['swreg_over_naive']:.2f}, peak "
            f"{f['peak_swreg_over_naive']:.2f}; "
            f"swreg / read once cold = {f['swreg_over_read_cold']:.2f}; agreement {f['agreement']}"
        )


def print_detection(f: dict) -> None:
    click.echo(f"detection alone (no validation; median of {f['repeats']} paired runs):")
    click.echo(
        f"  {'naive':<22} {f['naive']['wall_s']:>7.1f} s  peak "
        f"{fmt_bytes(f['naive']['peak_host_bytes'])}"
    )
    click.echo(
        f"  {'swreg detect (CLI)':<22} {f['swreg']['wall_s']:>7.1f} s  peak "
        f"{fmt_bytes(f['swreg']['peak_host_bytes'])}"
    )
    if "swreg_over_naive" in f:
        click.echo(
            f"  swreg / naive (median of the paired ratios): wall {f['swreg_over_naive']:.2f}, "
            f"peak {f['peak_swreg_over_naive']:.2f}; same candidates: {f['same_candidates']}"
        )


def print_summary(figures: dict) -> None:
    """Each figure the issue sets a target for, beside its target."""
    rows = []

    def add(label: str, value: float | None, target: str) -> None:
        rows.append(
            f"  {label:<52} {'-' if value is None else f'{value:.2f}':>6}   target {target}"
        )

    for key, title in (
        ("smollm2", "SmolLM2"),
        ("synthetic", "synthetic"),
        ("synthetic_moe", "synthetic MoE"),
    ):
        if key in figures:
            target = "<= 0.25" if key == "smollm2" else "<= 0.5"
            add(
                f"{title}: whole job, swreg / naive (wall)",
                figures[key].get("swreg_over_naive"),
                target,
            )
            add(
                f"{title}: whole job, swreg / naive (peak)",
                figures[key].get("peak_swreg_over_naive"),
                "<= 0.5" if key == "smollm2" else "-",
            )
        if f"{key}_detection" in figures:
            f = figures[f"{key}_detection"]
            add(
                f"{title}: detection alone, swreg / naive (wall)",
                f.get("swreg_over_naive"),
                "<= 1.0",
            )
            add(
                f"{title}: detection alone, swreg / naive (peak)",
                f.get("peak_swreg_over_naive"),
                "<= 0.5",
            )
    for name, r in figures.get("large", {}).items():
        add(
            f"1.5B {name.replace('_', ' ')}: minutes (verdicts as built: "
            f"{r['verdicts_as_constructed']})",
            r["wall_s"] / 60,
            "<= 10",
        )
    if rows:
        click.echo("\nsummary:")
        for row in rows:
            click.echo(row)
