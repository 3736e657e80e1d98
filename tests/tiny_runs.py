"""A tiny model that refuses and a finished two-arm run of it, shared by the pipeline and report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from thinksafe.pipeline.config import load_config
from thinksafe.pipeline.runner import run

REFUSAL = "I cannot help with that request."


# ---------------------------------------------------------------- a tiny model that refuses


def build_refusing_model(path: Path) -> Path:
    """A tiny random Qwen2 trained for a few seconds to answer every prompt with one refusal, so that the
    pipeline keeps data (the refusal guard keeps harmful refusals) and every stage has real work to do."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinksafe.prompts import demo_prompts
    from tiny import build_tiny_model

    build_tiny_model(path, "plain")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    rows = []
    for p in demo_prompts()[::4] + [type("P", (), {"prompt": t})() for t in ("hi", "What is 2 + 2?", "Tell me a joke.")]:
        prompt = tok.apply_chat_template([{"role": "user", "content": p.prompt}], tokenize=False, add_generation_prompt=True)
        ids_p = tok(prompt, add_special_tokens=False)["input_ids"]
        ids_c = tok(REFUSAL + "<|im_end|>", add_special_tokens=False)["input_ids"]
        rows.append((ids_p + ids_c, [-100] * len(ids_p) + ids_c))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [tok.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(r[0]) for r in rows])[:, None]).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    torch.manual_seed(0)
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()
    model.save_pretrained(path)
    return path


TINY_CONFIG = """\
arms: [initial, thinksafe]
harmful: [demo:harmful]
benign: [demo:benign]
limit: 4
model:
  model: {model}
backend:
  progress: false
synthesize:
  max_new_tokens: 16
  drop_benign_refusals: false   # the tiny model refuses everything: keep benign refusals so both labels train
train:
  epochs: 1
  learning_rate: 1.0e-3
  effective_batch_size: 2
  lora_r: 4
  lora_alpha: 8
  max_length: 256
evaluate:
  benchmarks: demo-harmful,demo-xstest
  limit: 3
  max_new_tokens: 12
  bootstrap: 50
"""

_RUNS: dict[str, Path] = {}


def tiny_config(tmp: Path, model: Path, **extra: str) -> Path:
    cfg = tmp / "tiny.yaml"
    cfg.write_text(f"out: {tmp / 'run'}\n" + TINY_CONFIG.format(model=model)
                   + "".join(f"{k}: {v}\n" for k, v in extra.items()))
    return cfg


@pytest.fixture(scope="session")
def one_thread():
    torch.set_num_threads(1)  # tiny models: OpenMP spinning on a busy 2-core box only slows them down


@pytest.fixture(scope="session")
def refusing_model(tmp_path_factory, one_thread):
    return build_refusing_model(tmp_path_factory.mktemp("refuser") / "m")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, refusing_model):
    """A finished two-arm run of the tiny refusing model (built once, shared with test_report)."""
    if "run" not in _RUNS:
        tmp = tmp_path_factory.mktemp("tinyrun")
        plan = run(load_config(tiny_config(tmp, refusing_model)))
        _RUNS["run"], _RUNS["cfg"] = plan.run_dir, tmp / "tiny.yaml"
        _RUNS["first_statuses"] = [s.status for s in plan.stages]  # type: ignore[assignment]
    return _RUNS


def done_times(run_dir: Path) -> dict[str, float]:
    return {str(p.parent.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.glob("*/*/done.json")}


def statuses(plan) -> dict[tuple[str, str], str]:
    return {(arm, s.kind): s.status for arm in plan.arms for s in plan.per_arm[arm]}


