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


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help string (shown by `--help`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


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


def yaml_to_argv(path: Path, parser) -> list[str]:
    """Turn a YAML mapping into flags for `parser`, checking each key and value."""
    data, lines = read_yaml(path)
    actions = {}
    for a in parser._actions:  # a default-true bool also has a --no_X flag with the same dest: keep --X
        if a.option_strings and (a.dest not in actions or f"--{a.dest}" in a.option_strings):
            actions[a.dest] = a
    argv: list[str] = []
    for key, value in data.items():
        where = f"{path}:{lines.get((key,), '?')}"
        k = str(key).replace("-", "_")
        action = actions.get(k)
        if action is None or k in ("help", "config"):
            raise ConfigError(f"{where}: unknown key '{key}'")
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and action.nargs not in ("+", "*"):
            raise ConfigError(f"{where}: key '{key}' takes one value, got a list")
        if isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}' takes a value, got a mapping")
        if value is None:
            continue  # explicit null: keep the default
        is_bool = getattr(action.type, "__name__", "") == "string_to_bool"
        for v in values:
            if isinstance(v, bool) != is_bool:
                raise ConfigError(f"{where}: key '{key}': {'expected true/false' if is_bool else 'unexpected true/false'}, got {v!r}")
            try:
                converted = action.type(str(v)) if action.type else v
            except Exception:
                raise ConfigError(f"{where}: key '{key}': invalid value {v!r}") from None
            if action.choices and converted not in action.choices:
                raise ConfigError(f"{where}: key '{key}': {v!r} not one of {', '.join(map(str, action.choices))}")
        argv += [action.option_strings[0], *(str(v) for v in values)]
    return argv


def parse_config(prog: str, types: tuple[type, ...], argv: list[str], description: str = "") -> tuple:
    """Parse `argv` (and an optional --config YAML) into one instance of each dataclass in `types`."""
    from transformers import HfArgumentParser

    # No prefix matching: "--api-key sk-…" must not silently become --api_key_env.
    parser = HfArgumentParser(types, prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--config", type=Path, default=None, help="YAML file with any of these options; flags override it")

    def error(message: str):  # argparse would print the whole usage block: one line instead
        raise ConfigError(f"{prog}: {message} (see {prog} --help)")

    parser.error = error
    pre, _ = parser.parse_known_args(argv) if "--config" in argv else (None, None)
    prefix = yaml_to_argv(pre.config, parser) if pre is not None and pre.config else []
    *out, rest = parser.parse_args_into_dataclasses(prefix + argv, return_remaining_strings=True)
    if rest:  # name the flags only: a stray value may be a secret pasted on the command line
        flags = [a.split("=", 1)[0] for a in rest if a.startswith("-")]
        raise ConfigError(f"{prog}: unrecognized arguments: {' '.join(flags) or f'{len(rest)} stray value(s)'} "
                          f"(see {prog} --help)")
    return tuple(o for o in out if dataclasses.is_dataclass(o))


def api_key_from_env(name: str, option: str) -> str:
    """The API key held by environment variable `name`. Keys are only ever read from the environment: a value
    that is not a variable name (e.g. a key pasted into --api_key_env) is refused without being echoed."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{option} takes the NAME of an environment variable holding the key, not the key itself")
    key = os.environ.get(name)
    if not key:
        raise ConfigError(f"{option}: environment variable {name} is not set")
    return key


def config_dict(*objs: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for o in objs:
        merged.update(dataclasses.asdict(o))
    return merged


def config_hash(obj: Any) -> str:
    """Hash of a JSON-able config: what decides whether an output directory may be reused."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
