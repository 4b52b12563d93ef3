"""`swreg bench` itself: which parts run, in which order, and the JSON of every figure."""

import json
from pathlib import Path

import click

from workers.commands.bench.checkpoints import (
    SHAPES,
    layer_bytes,
    synthetic_checkpoint,
    synthetic_moe_checkpoint,
    weight_files,
)
from workers.commands.bench.figures import (
    compare,
    compare_detection,
    fetch_ratio,
    judge_large,
    memory_capped,
)
from workers.commands.bench.memory import GIB, MIB
from workers.commands.bench.printing import (
    HEADER,
    fmt_bytes,
    print_comparison,
    print_detection,
    print_summary,
    table_row,
)
from workers.science.evaluation_defaults import DEFAULT_EVAL_TOKENS


@click.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--smollm2/--no-smollm2", default=True, show_default=True, help="Bench the real SmolLM2-135M."
)
@click.option(
    "--synthetic",
    type=click.Choice([s for s in SHAPES if s != "1.5b"] + ["none"]),
    default=None,
    help="Synthetic checkpoint shape (default: cpu on the CPU, 7b on CUDA).",
)
@click.option(
    "--detection/--no-detection",
    default=True,
    show_default=True,
    help="Also time detection alone against the naive one-pass detection.",
)
@click.option(
    "--memory-cap-gib",
    type=float,
    default=None,
    help="Memory cap for the capped run on the synthetic checkpoint "
    "(default: half the checkpoint; 0: skip).",
)
@click.option(
    "--large/--no-large",
    default=True,
    show_default=True,
    help="Judge the 1.5B-parameter synthetic checkpoints (with and without a plant).",
)
@click.option(
    "--moe/--no-moe",
    default=True,
    show_default=True,
    help="Bench a 3 GB synthetic mixture of experts (Qwen3-MoE-shaped, 32 experts).",
)
@click.option(
    "--eval-tokens",
    type=int,
    default=DEFAULT_EVAL_TOKENS,
    show_default=True,
    help="Evaluation tokens (at most) for every checkpoint.",
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), help="Also write every figure here."
)
def bench(
    device, smollm2, synthetic, detection, memory_cap_gib, large, moe, eval_tokens, json_out
) -> None:
    """Time swreg's job against the naive approach and print the figures.

    \b
    Examples:
      swreg bench --json bench.json                 # everything: about 30 minutes on two cores
      swreg bench --synthetic none --no-large --no-moe   # SmolLM2 alone
      swreg bench --no-smollm2 --synthetic none --no-large   # the synthetic MoE alone
      swreg bench --device cuda --synthetic 7b      # on a GPU machine
    """
    figures: dict = {"device": device}
    if smollm2:
        from workers.fixtures.smollm2 import smollm2_dir

        path = smollm2_dir()
        figures["smollm2"] = compare(path, device, eval_tokens)
        print_comparison("SmolLM2-135M-Instruct", figures["smollm2"])
        if detection:
            figures["smollm2_detection"] = compare_detection(path, device)
            print_detection(figures["smollm2_detection"])
        figures["fetch"] = fetch_ratio(path)
        fetch = figures["fetch"]
        click.echo(
            f"\nfetch: {fetch['fetched_bytes'] / MIB:,.0f} MiB of a "
            f"{fetch['repo_bytes'] / MIB:,.0f} MiB "
            f"repo (.safetensors + .bin + .gguf): {fetch['fetched_over_repo']:.3f}"
        )
    shape_name = synthetic or ("7b" if device == "cuda" else "cpu")
    if shape_name != "none":
        shape = SHAPES[shape_name]
        path = synthetic_checkpoint(shape)
        figures["synthetic"] = compare(path, device, eval_tokens)
        print_comparison(f"synthetic {shape_name}", figures["synthetic"])
        if detection:
            figures["synthetic_detection"] = compare_detection(path, device)
            print_detection(figures["synthetic_detection"])
        size = sum(f.stat().st_size for f in weight_files(path))
        cap = size // 2 if memory_cap_gib is None else int(memory_cap_gib * GIB)
        if cap > 0 and device == "cpu":
            capped = memory_capped(path, device, eval_tokens, cap)
            figures["memory_capped"] = capped
            click.echo(
                f"\nunder a {cap / GIB:.2f} GiB cap ({capped['cap_kind']}) on a "
                f"{capped['checkpoint_bytes'] / GIB:.2f} GiB checkpoint:"
            )
            for name in ("swreg", "naive"):
                r = capped[name]
                state = "completed" if r["ok"] else f"failed (exit {r['returncode']})"
                click.echo(
                    f"  {name:<10} {state}, {r['wall_s']:.1f} s, peak host "
                    f"{fmt_bytes(r['peak_host_bytes'])}, "
                    f"cgroup peak (with page cache) {fmt_bytes(r['cgroup_peak_bytes'])}, "
                    f"{r['super_weights']}"
                )
    if moe:
        path = synthetic_moe_checkpoint()
        figures["synthetic_moe"] = compare(path, device, eval_tokens)
        figures["synthetic_moe"]["layer_bytes"] = layer_bytes(path)
        print_comparison("synthetic mixture of experts", figures["synthetic_moe"])
        click.echo(
            "  largest decoder layer as stored: "
            f"{fmt_bytes(figures['synthetic_moe']['layer_bytes'])}"
        )
    if large and device == "cpu":
        shape = SHAPES["1.5b"]
        figures["large"] = judge_large(shape, device, eval_tokens)
        click.echo(
            f"\n== 1.5B parameters ({shape.hidden} x {shape.d_ff} x {shape.layers}, vocab "
            f"{shape.vocab}), swreg alone =="
        )
        click.echo(HEADER)
        for name, r in figures["large"].items():
            click.echo(table_row(name, r))
            click.echo(f"  verdicts as the construction implies: {r['verdicts_as_constructed']}")
    print_summary(figures)
    if json_out:
        Path(json_out).write_text(json.dumps(figures, indent=2))
