"""Secrets: API keys come only from the environment (options name the variable, never hold the key) and are
never written to outputs, configs, stats, results, logs or the terminal — even when a server echoes the key
back in an error body, and with the openai client's debug logging on."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from reliability_kit import TIMEOUT, StubServer, chat_reply, cli_env, run_cli

KEY = "sk-test-SECRET-4f9a8b7c6d5e-never-write-me"
KEY_PARTS = (KEY, KEY[8:30])  # the key, and a long piece of it (a truncated echo must not leak either)
ENV = "TS_RELIABILITY_API_KEY"


def responder(*, guard_errors: bool = False):
    """Generation requests get a short refusal; guard requests (they ask for log-probs) a verdict — or, with
    guard_errors, a 500 whose body echoes the Authorization header, as some proxies do."""

    def respond(body: dict, headers: dict):
        auth = headers.get("authorization", "")
        if body.get("logprobs"):
            if guard_errors:
                return 500, {"error": {"message": f"upstream rejected credentials {auth}", "type": "server_error"}}, 0
            return 200, chat_reply("safe", [("safe", [("safe", -0.05), ("unsafe", -3.0)])]), 0
        return 200, chat_reply("I'm sorry, but I can't help with that."), 0

    return respond


def leaks(text: str) -> bool:
    return any(part in text for part in KEY_PARTS)


def files_with_key(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and leaks(p.read_text(errors="replace"))]


def test_synthesize_process_never_writes_the_key(tmp_path):
    """The real CLI against a generation server and a guard server, with the openai client's debug log on."""
    out = tmp_path / "s"
    with StubServer(responder()) as server:
        r = run_cli(
            "synthesize", "--model", "stub-model", "--reasoning", "plain", "--backend", "openai",
            "--base_url", server.url, "--api_key_env", ENV, "--max_retries", 0,
            "--guard", "judge-model", "--guard_model", "stub-guard", "--guard_backend", "openai",
            "--guard_base_url", server.url, "--guard_api_key_env", ENV,
            "--harmful", "demo:harmful", "--benign", "demo:benign", "--limit", 3, "--out", out, "--no_progress",
            env=cli_env(**{ENV: KEY, "OPENAI_LOG": "debug"}),
        )
        requests = server.requests
    assert r.returncode == 0, r.stderr[-2000:]
    # the key was read from the environment and sent, to both servers
    assert requests and all(h.get("authorization") == f"Bearer {KEY}" for _, h, _ in requests)
    assert any(b.get("logprobs") for _, _, b in requests) and any(not b.get("logprobs") for _, _, b in requests)
    assert "HTTP Request: POST" in r.stderr  # the client's debug log did run
    config = json.loads((out / "stage.json").read_text())
    assert config["config"]["guard"]["guard_api_key_env"] == ENV  # the variable's name is what is stored
    assert json.loads((out / "stats.json").read_text())["per_label"]["harmful"]["kept"] == 3
    assert not files_with_key(out)
    assert not leaks(r.stdout) and not leaks(r.stderr)


def test_servers_echoing_the_key_in_errors(stopping_model, bench_data, tmp_path, caplog, capfd, monkeypatch):
    """Guard and generation servers that put the key into their error bodies: the errors are stored (verdict raw
    text) and shown (the one-line CLI error), the key is masked everywhere; every logger at DEBUG."""
    from thinksafe.cli import main

    def cli(*argv) -> int:
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in argv])
        return e.value.code

    monkeypatch.setenv(ENV, KEY)
    served = ["--reasoning", "plain", "--backend", "openai", "--api_key_env", ENV, "--max_retries", "0"]
    with StubServer(responder(guard_errors=True)) as server, caplog.at_level(logging.DEBUG):
        guard = ["--guard_model", "stub-guard", "--guard_backend", "openai", "--guard_base_url", server.url,
                 "--guard_api_key_env", ENV, "--guard_timeout", TIMEOUT, "--guard_max_retries", 0]
        assert cli("synthesize", "--model", "stub-model", *served, "--base_url", server.url, "--guard", "judge-model",
                   *guard, "--harmful", "demo:harmful", "--limit", 2, "--out", tmp_path / "s", "--no_progress") == 0
        assert cli("evaluate", "--model", "stub-model", *served, "--base_url", server.url, "--judge", "llama-guard",
                   *guard, "--benchmarks", "strongreject", "--data-dir", bench_data, "--limit", 2,
                   "--out", tmp_path / "e", "--bootstrap", 10, "--no_progress") == 0
        server.respond = lambda body, headers: (401, {"error": {"message": f"bad key {headers['authorization']}"}}, 0)
        assert cli("generate", "--model", "stub-model", *served, "--base_url", server.url, "--prompts", "demo:harmful",
                   "--limit", 1, "--out", tmp_path / "g.jsonl", "--no_progress") == 2
    gens = [json.loads(line) for line in (tmp_path / "s" / "generations.jsonl").read_text().splitlines()]
    assert gens and all(g["verdict"]["label"] == "unknown" and "***" in g["verdict"]["raw"] for g in gens)
    assert json.loads((tmp_path / "e" / "results.json").read_text())["benchmarks"]["strongreject"]["unknown"] == 2
    captured = capfd.readouterr()
    assert "HTTP 401" in captured.err and "***" in captured.err  # the error is shown, the key is masked
    assert not files_with_key(tmp_path)
    assert not leaks(captured.out) and not leaks(captured.err) and not leaks(caplog.text)


def test_keys_are_only_read_from_the_environment():
    """No pipeline option can hold a key: anything key-, token- or secret-like names an environment variable."""
    from thinksafe.cli import GenerateArgs
    from thinksafe.generate import BackendConfig
    from thinksafe.judge import GuardConfig
    from thinksafe.models import ModelSpec
    from thinksafe.stages.evaluate import EvaluateArgs
    from thinksafe.stages.sft import TrainArgs
    from thinksafe.stages.synthesize import SynthesizeArgs

    for cls in (GenerateArgs, SynthesizeArgs, EvaluateArgs, TrainArgs, ModelSpec, BackendConfig, GuardConfig):
        for f in dataclasses.fields(cls):
            words = set(f.name.split("_"))
            if words & {"key", "secret", "password", "credential", "auth"} or f.name.endswith("_token"):
                assert f.name.endswith("_env"), f"{cls.__name__}.{f.name} could hold a secret"


def test_a_key_pasted_where_a_variable_name_belongs_is_not_echoed(tmp_path, capsys):
    from reliability_kit import run_inprocess

    code, out, err = run_inprocess(["generate", "--model", "stub-model", "--reasoning", "plain", "--backend", "openai",
                                    "--base_url", "http://127.0.0.1:9/v1", "--api_key_env", KEY,
                                    "--prompts", "demo:harmful", "--out", str(tmp_path / "g.jsonl")], capsys)
    assert code == 2 and "takes the NAME of an environment variable" in err
    assert not leaks(out + err) and not files_with_key(tmp_path)
