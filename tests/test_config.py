from dataclasses import dataclass

import pytest

from thinksafe.config import opt, parse_config
from thinksafe.errors import ConfigError
from thinksafe.generate import SamplingParams


@dataclass
class Args:
    out: str = opt("", "output")
    names: list[str] = opt([], "names")
    full: bool = opt(False, "full")
    progress: bool = opt(True, "default-true: argparse also gets a --no_progress flag")


def parse(argv):
    return parse_config("t", (Args, SamplingParams), argv)


def test_flags_override_yaml(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("out: from_yaml\nmax_new_tokens: 99\ntemperature: 0.6\nnames: [a, b]\nfull: true\n")
    args, s = parse(["--config", str(cfg), "--max-new-tokens", "7"])
    assert args.out == "from_yaml" and args.names == ["a", "b"] and args.full is True
    assert s.max_new_tokens == 7 and s.temperature == 0.6
    args, s = parse([])
    assert args.out == "" and s.max_new_tokens == 256 and args.progress is True


@pytest.mark.parametrize("value", [False, True])
def test_yaml_sets_a_default_true_bool_either_way(tmp_path, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"progress: {str(value).lower()}\n")
    assert parse(["--config", str(cfg)])[0].progress is value


@pytest.mark.parametrize(
    "yaml_text,match",
    [
        ("out: x\nbogus_key: 1\n", r"c.yaml:2: unknown key 'bogus_key'"),
        ("max_new_tokens: lots\n", r"c.yaml:1: key 'max_new_tokens': invalid value 'lots'"),
        ("full: 3\n", r"c.yaml:1: key 'full': expected true/false"),
        ("out: [a, b]\n", r"c.yaml:1: key 'out' takes one value"),
        ("out: {a: 1}\n", r"c.yaml:1: key 'out' takes a value, got a mapping"),
        ("- just\n- a list\n", r"c.yaml: expected a mapping"),
        ("out: 'unclosed\n", r"c.yaml:\d+: invalid YAML"),
    ],
)
def test_bad_yaml_is_one_line_naming_file_and_line(tmp_path, yaml_text, match):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        parse(["--config", str(cfg)])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        parse(["--config", str(tmp_path / "nope.yaml")])
