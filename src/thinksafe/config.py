"""One config schema for YAML files and CLI flags: plain dataclasses, parsed by transformers' HfArgumentParser.

A command declares the dataclasses it needs; `--config file.yaml` supplies values by field name and any
flag given on the command line overrides the file. Unknown keys and wrong types are errors naming the file
and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from thinksafe.errors import ConfigError

# Field roles: what `thinksafe run` and the stage directory guard do with a settings field.
#   input    where a stage reads from: filled from upstream stages in a run (a flag for a single command);
#            hashed with the content of the local file it names
#   output   where it writes (`out`)
#   control  how its directory is handled (overwrite, resume): set by the runner, not in the key
#   runtime  how it runs but not what it writes (chunk sizes, logging): not in the key
#   (none)   a setting: in the key
ROLES = ("input", "output", "control", "runtime")


class _Metadata(dict):
    """Field metadata. transformers' HfArgumentParser hands `metadata.copy()` to argparse as keyword
    arguments, so the copy leaves out the role, which is ours."""

    def copy(self) -> dict[str, Any]:
        return {k: v for k, v in self.items() if k != "role"}


def opt(default: Any, help: str, role: str | None = None, **kw: Any) -> Any:
    """A dataclass field with a help string (shown by `--help`) and optionally a role (above)."""
    assert role is None or role in ROLES, role
    meta = _Metadata(help=help, **({"role": role} if role else {}))
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def role(f: dataclasses.Field) -> str | None:
    return f.metadata.get("role")


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """A YAML mapping and the line of every key, one level of sections deep: {(key,): n, (section, key): n}."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    try:
        node, data = yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path}{f':{mark.line + 1}' if mark else ''}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping of key: value")
    lines: dict[tuple, int] = {}
    for k, v in node.value:
        lines[(k.value,)] = k.start_mark.line + 1
        if isinstance(v, yaml.MappingNode):
            for sk, _ in v.value:
                lines[(k.value, sk.value)] = sk.start_mark.line + 1
    return data, lines


def flag_actions(parser) -> dict[str, Any]:
    """dest → the `--dest` action (a default-true bool also has a `--no_dest` twin with the same dest)."""
    actions: dict[str, Any] = {}
    for a in parser._actions:
        if a.option_strings and (a.dest not in actions or f"--{a.dest}" in a.option_strings):
            actions[a.dest] = a
    return actions


def mapping_to_argv(values: dict[str, Any], parser, where, section: str = "") -> tuple[list[str], dict[str, list]]:
    """Check a mapping of option names to YAML values against `parser` and turn it into flags, so that a key in
    a file means exactly what its flag means. `where(key)` names the key's file:line (or flag) in errors.
    Returns (argv, {field: []} for keys set to an empty list, which argparse can't express)."""
    actions = flag_actions(parser)
    argv: list[str] = []
    empty: dict[str, list] = {}
    for key, value in values.items():
        k = str(key).replace("-", "_")
        action = actions.get(k)
        if action is None or k in ("help", "config"):
            raise ConfigError(f"{where(key)}: unknown key '{key}'" + (f" in section '{section}'" if section else ""))
        if isinstance(value, dict):
            raise ConfigError(f"{where(key)}: key '{key}' takes a value, got a mapping")
        if isinstance(value, list) and action.nargs not in ("+", "*"):
            raise ConfigError(f"{where(key)}: key '{key}' takes one value, got a list")
        if value is None:
            continue  # explicit null: keep the default
        if value == []:
            empty[k] = []
            continue
        values_ = value if isinstance(value, list) else [value]
        is_bool = getattr(action.type, "__name__", "") == "string_to_bool"
        for v in values_:
            if isinstance(v, bool) != is_bool:
                raise ConfigError(f"{where(key)}: key '{key}': {'expected true/false' if is_bool else 'unexpected true/false'}, got {v!r}")
            try:
                if isinstance(v, (dict, list)):
                    raise ValueError
                converted = action.type(str(v)) if action.type else v
            except Exception:
                raise ConfigError(f"{where(key)}: key '{key}': invalid value {v!r}") from None
            if action.choices and converted not in action.choices:
                raise ConfigError(f"{where(key)}: key '{key}': {v!r} not one of {', '.join(map(str, action.choices))}")
        argv += [f"--{action.dest}", *(str(v) for v in values_)]
    return argv, empty


def one_line_errors(parser, prog: str) -> None:
    """argparse would print its whole usage block: raise one line instead."""

    def error(message: str):
        raise ConfigError(f"{prog}: {message} (see {prog} --help)")

    parser.error = error


def parse_config(prog: str, types: tuple[type, ...], argv: list[str], description: str = "") -> tuple:
    """Parse `argv` (and an optional --config YAML) into one instance of each dataclass in `types`."""
    from transformers import HfArgumentParser

    # No prefix matching: "--api-key sk-…" must not silently become --api_key_env.
    parser = HfArgumentParser(types, prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--config", type=Path, default=None, help="YAML file with any of these options; flags override it")
    output = parser.add_argument_group("output (every command; read by thinksafe.cli before this parser)")
    output.add_argument("-q", "--quiet", action="store_true", help="errors only: no progress bars, no info lines")
    output.add_argument("-v", "--verbose", action="store_true", help="also the libraries' info lines and progress bars")
    one_line_errors(parser, prog)
    pre, _ = parser.parse_known_args(argv) if "--config" in argv else (None, None)
    prefix, empty = [], {}
    if pre is not None and pre.config:
        data, lines = read_yaml(pre.config)
        prefix, empty = mapping_to_argv(data, parser, lambda k: f"{pre.config}:{lines.get((k,), '?')}")
    *out, rest = parser.parse_args_into_dataclasses(prefix + argv, return_remaining_strings=True)
    if rest:  # name the flags only: a stray value may be a secret pasted on the command line
        flags = [a.split("=", 1)[0] for a in rest if a.startswith("-")]
        raise ConfigError(f"{prog}: unrecognized arguments: {' '.join(flags) or f'{len(rest)} stray value(s)'} "
                          f"(see {prog} --help)")
    objs = [o for o in out if dataclasses.is_dataclass(o)]
    return tuple(_with_empty_lists(o, empty) for o in objs)


def parse_section(cls: type, values: dict[str, Any], where, section: str = "") -> Any:
    """One dataclass from a mapping (a `thinksafe run` config section), checked as `--config` checks a file."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((cls,), allow_abbrev=False)
    one_line_errors(parser, section or "config")
    argv, empty = mapping_to_argv(values, parser, where, section)
    (obj,) = parser.parse_args_into_dataclasses(argv)
    return _with_empty_lists(obj, empty)


def _with_empty_lists(obj: Any, empty: dict[str, list]) -> Any:
    mine = {k: v for k, v in empty.items() if k in {f.name for f in dataclasses.fields(obj)}}
    return dataclasses.replace(obj, **mine) if mine else obj


def api_key_from_env(name: str, option: str) -> str:
    """The API key held by environment variable `name`. Keys are only ever read from the environment: a value
    that is not a variable name (e.g. a key pasted into --api_key_env) is refused without being echoed."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{option} takes the NAME of an environment variable holding the key, not the key itself")
    key = os.environ.get(name)
    if not key:
        raise ConfigError(f"{option}: environment variable {name} is not set")
    return key


def config_hash(obj: Any) -> str:
    """Hash of a JSON-able config: what decides whether an output directory may be reused."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
