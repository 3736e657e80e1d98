"""`thinksafe <command> [flags] [--config cfg.yaml]` — a thin layer over the stage functions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from thinksafe.config import opt, parse_config
from thinksafe.errors import ThinksafeError
from thinksafe.progress import console


@dataclass
class GenerateArgs:
    prompts: str = opt("", "prompt file: .jsonl, .json (list of objects) or .csv")
    out: str = opt("", "output .jsonl (appended to; rerun to resume)")
    prompt_field: str | None = opt(None, "prompt column (default: first of prompt, instruction, question, goal, forbidden_prompt, Behavior)")
    label_field: str | None = opt(None, "column holding harmful/benign labels, copied to the output")
    limit: int | None = opt(None, "use at most this many prompts, sampled deterministically with --seed")
    system: str | None = opt(None, "optional system message")


def cmd_generate(argv: list[str]) -> int:
    from thinksafe.generate import BackendConfig, SamplingParams, make_generator
    from thinksafe.generate.stage import generate_to_file
    from thinksafe.models import ModelSpec
    from thinksafe.prompts import load_prompts

    args, spec, backend, sampling = parse_config(
        "thinksafe generate",
        (GenerateArgs, ModelSpec, BackendConfig, SamplingParams),
        argv,
        "Generate responses for a prompt file; one JSON record per (prompt, sample).",
    )
    if not args.prompts or not args.out:
        raise ThinksafeError("generate: --prompts and --out are required")
    prompts = load_prompts(
        args.prompts, prompt_field=args.prompt_field, label_field=args.label_field, limit=args.limit, seed=sampling.seed
    )
    _check_writable(args.out)
    generator = make_generator(spec, backend)
    stats = generate_to_file(generator, prompts, sampling, args.out, system=args.system, meta={"model": spec.model})
    console.print(
        f"{stats.generations} generations ({stats.skipped} prompts already done) → {args.out}  "
        f"[{stats.completion_tokens} tokens, {stats.tokens_per_second:.1f} tok/s]"
    )
    return 0


def cmd_models(argv: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from thinksafe.models import model_status

    if argv and argv[0] in ("-h", "--help"):
        print("usage: thinksafe models\n\nList the embedded offline models: installed, cached, size on disk.")
        return 0
    table = Table(title="embedded models (use the alias as --model)")
    for col in ("alias", "model", "installed", "cached", "size on disk", "install with"):
        table.add_column(col)
    for r in model_status():
        size = r["cache_bytes"] or r["package_bytes"]
        table.add_row(
            r["alias"],
            r["model"],
            "yes" if r["installed"] else "no",
            "yes" if r["cached"] else "no",
            f"{size / 2**20:,.0f} MiB" if size else "—",
            r["install"],
        )
    Console(width=max(Console().width, 150)).print(table)
    return 0


def not_yet(name: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        raise ThinksafeError(f"thinksafe {name}: not yet implemented")

    return run


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "generate": (cmd_generate, "generate responses for a prompt file"),
    "models": (cmd_models, "list the embedded offline models"),
    "synthesize": (not_yet("synthesize"), "steer, generate, judge: build the self-generated safety dataset"),
    "train": (not_yet("train"), "LoRA / full SFT on a ThinkSafe-schema dataset"),
    "merge": (not_yet("merge"), "merge a LoRA adapter into its base model"),
    "evaluate": (not_yet("evaluate"), "safety and reasoning benchmarks with CIs"),
    "shift": (not_yet("shift"), "perplexity of datasets under a model (distribution shift)"),
    "run": (not_yet("run"), "run an experiment config end to end"),
    "report": (not_yet("report"), "write report.md / report.html for a run"),
    "grpo": (not_yet("grpo"), "GRPO baseline with a guard reward"),
}


def usage() -> str:
    lines = ["usage: thinksafe <command> [options]  (thinksafe <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _check_writable(path: str) -> None:
    import os
    from pathlib import Path

    parent = Path(path).resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ThinksafeError(f"{path}: cannot create output directory ({e.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ThinksafeError(f"{path}: output directory is not writable")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        from thinksafe import __version__

        print(__version__)
        sys.exit(0)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(COMMANDS[name][0](rest))
    except ThinksafeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
