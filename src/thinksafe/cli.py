"""`thinksafe <command> [flags] [--config cfg.yaml]` — a thin layer over the stage functions."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from dataclasses import dataclass

from thinksafe.config import opt, parse_config
from thinksafe.errors import ThinksafeError
from thinksafe.progress import console, wide_console


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
    from thinksafe.generate.to_file import generate_to_file
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


@dataclass
class MergeArgs:
    adapter: str = opt("", "adapter directory written by thinksafe train")
    out: str = opt("", "output directory for the merged model")
    dtype: str = opt("auto", "dtype of the merged weights")


def cmd_merge(argv: list[str]) -> int:
    from thinksafe.train.merge import merge

    (args,) = parse_config("thinksafe merge", (MergeArgs,), argv, "Merge a LoRA adapter into its base model.")
    if not args.adapter or not args.out:
        raise ThinksafeError("merge: --adapter and --out are required")
    console.print(f"merged model → {merge(args.adapter, args.out, args.dtype)}")
    return 0


def stage_command(name: str) -> Callable[[list[str]], int]:
    """`thinksafe <stage>`: its parser is built from the stage's settings and the shared sections it uses."""

    def command(argv: list[str]) -> int:
        from thinksafe.stages import get
        from thinksafe.stages.base import SHARED_SECTIONS

        stage = get(name)
        prog = f"thinksafe {name}"
        settings, *shared = parse_config(prog, (stage.Settings, *(SHARED_SECTIONS[u] for u in stage.uses)), argv,
                                         stage.description or stage.help)
        stage.run_command(settings, **dict(zip(stage.uses, shared)))
        return 0

    return command


def cmd_run(argv: list[str]) -> int:
    from thinksafe.pipeline.runner import cmd_run as run

    return run(argv)


def cmd_report(argv: list[str]) -> int:
    from thinksafe.report import cmd_report as report

    return report(argv)


def cmd_serve(argv: list[str]) -> int:
    from thinksafe.serve import cmd_serve as serve

    return serve(argv)


def cmd_build_reasoner(argv: list[str]) -> int:
    from thinksafe.reasoner import cmd_build_reasoner as build

    return build(argv)


def cmd_models(argv: list[str]) -> int:
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
    wide_console(stderr=False).print(table)
    return 0


def cmd_export(argv: list[str]) -> int:
    from thinksafe.export import cmd_export as export

    return export(argv)


def commands() -> dict[str, tuple[Callable[[list[str]], int], str]]:
    """The commands, in the order `thinksafe --help` lists them: each stage of the registry that has a command
    (stages/__init__.py; its flags are its settings dataclass and the shared sections it uses), then the rest."""
    from thinksafe.stages import registry

    stages = {s.name: (stage_command(s.name), s.help) for s in registry().values() if s.has_command}
    return {
        "generate": (cmd_generate, "generate responses for a prompt file"),
        "models": (cmd_models, "list the embedded offline models"),
        **stages,
        "merge": (cmd_merge, "merge a LoRA adapter into its base model"),
        "serve": (cmd_serve, "OpenAI-compatible HTTP server for a model (local use)"),
        "build-reasoner": (cmd_build_reasoner, "rebuild the offline reasoning model (qwen2.5-0.5b-think)"),
        "run": (cmd_run, "run an experiment config end to end"),
        "report": (cmd_report, "write report.md / report.html for a run"),
        "export": (cmd_export, "write an arm's model and data as hub folders with cards (--push_to_hub)"),
    }


def usage() -> str:
    lines = ["usage: thinksafe <command> [options] [--quiet | --verbose]  (thinksafe <command> --help for its options)",
             "", "commands:"]
    lines += [f"  {name:<14} {text}" for name, (_, text) in commands().items()]
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


# Every command takes these; main reads them before the command's own parser, which lists them in its --help.
OUTPUT_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose"}


def output_flags(argv: list[str]) -> list[str]:
    """Set the verbosity from --quiet / --verbose (the last one wins) and return the other arguments."""
    from thinksafe.progress import set_verbosity

    levels = [OUTPUT_FLAGS[a] for a in argv if a in OUTPUT_FLAGS]
    set_verbosity(levels[-1] if levels else "normal")
    return [a for a in argv if a not in OUTPUT_FLAGS]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        from thinksafe import __version__

        print(__version__)
        sys.exit(0)
    name, rest = argv[0], output_flags(argv[1:])
    table = commands()
    if name not in table:
        print(f"error: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(table[name][0](rest))
    except ThinksafeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except OSError as e:  # full disk, quota, read-only or forbidden path: one line; writes are atomic, resume later
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror}; free space or fix the path, then rerun the same command to resume",
              file=sys.stderr)
        sys.exit(2)
