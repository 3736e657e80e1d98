"""One generator interface, three backends (transformers, vLLM, OpenAI-compatible server).

    gen = make_generator(ModelSpec("qwen2.5-coder-0.5b-instruct"), BackendConfig())
    results = gen.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_new_tokens=64))
    results[0][0].text, results[0][0].finish_reason

`results[i]` holds the `n` completions of request `i`. Same seed + same inputs ⇒ same outputs on the
same backend. Every stage talks to models through this interface only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from thinksafe.config import opt
from thinksafe.errors import ConfigError
from thinksafe.formats import ChatFormat
from thinksafe.models import ModelSpec
from thinksafe.records import Completion

Messages = list[dict]
# Called once per request as soon as all its n completions exist, so stages can write results batch by
# batch (a crash then loses only the batch in flight).
OnResult = Callable[[int, list[Completion]], None]
BACKENDS = ("transformers", "vllm", "openai")


@dataclass
class SamplingParams:
    temperature: float = opt(0.0, "sampling temperature; 0 = greedy")
    top_p: float = opt(1.0, "nucleus sampling mass")
    top_k: int = opt(0, "top-k sampling; 0 = off")
    max_new_tokens: int = opt(256, "maximum new tokens per response")
    n: int = opt(1, "samples per prompt")
    seed: int = opt(0, "random seed (same seed + same inputs = same outputs on the same backend)")

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ConfigError(f"sampling: bad values {self}")
        if self.max_new_tokens < 1 or self.n < 1:
            raise ConfigError("sampling: max_new_tokens and n must be >= 1")


@dataclass
class BackendConfig:
    backend: Literal["transformers", "vllm", "openai"] = opt("transformers", "generation backend")
    token_budget: int = opt(16384, "transformers: max tokens per batch, rows x (prompt + new tokens)")
    max_batch_size: int = opt(64, "transformers: max rows per batch (continuous: max requests decoded at once)")
    hf_engine: Literal["continuous", "padded"] = opt(
        "continuous",
        "transformers: continuous (continuous batching on a paged KV cache: a finished request frees its slot at "
        "once and its result is written as it finishes, token_budget = KV cache tokens; 1.4-2x padded here, same "
        "sampled statistics: benchmarks/engine_sampling.py; a config it can't run, e.g. a repetition penalty, "
        "runs padded) | padded (left-padded batches, each runs until its longest row ends)",
    )
    tensor_parallel_size: int = opt(1, "vllm: GPUs per model")
    gpu_memory_utilization: float = opt(0.85, "vllm: share of GPU memory to use")
    enforce_eager: bool = opt(False, "vllm: skip graph compilation (faster start, slower decode)")
    prefix_caching: bool = opt(
        True, "vllm: automatic prefix caching (every steered prompt shares the steering prefix: its KV is computed once)"
    )
    base_url: str | None = opt(None, "openai: server URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = opt(None, "openai: NAME of the env var holding the API key (the key is never stored)")
    served_model: str | None = opt(None, "openai: model name on the server (default: --model)")
    concurrency: int = opt(8, "openai: parallel requests")
    timeout: float = opt(120.0, "openai: seconds per request")
    max_retries: int = opt(5, "openai: retries with backoff on 429/5xx/timeouts")
    progress: bool = opt(True, "show progress bars")

    def key(self) -> dict[str, Any]:
        """What generations depend on, which stage keys hash: the backend, and for transformers the engine and
        batch sizes — greedy outputs are equal across them (tested), but sampled ones are drawn from one seeded
        stream in batch order, so another batching draws other samples. Server and progress settings change
        how fast, not what."""
        if self.backend != "transformers":
            return {"backend": self.backend}
        return {"backend": self.backend, "hf_engine": self.hf_engine, "token_budget": self.token_budget,
                "max_batch_size": self.max_batch_size}


class Generator(Protocol):
    format: ChatFormat
    name: str

    def generate(
        self, requests: Sequence[Messages], sampling: SamplingParams, on_result: OnResult | None = None
    ) -> list[list[Completion]]: ...


def make_generator(spec: ModelSpec, backend: BackendConfig | None = None) -> Generator:
    backend = backend or BackendConfig()
    if backend.backend == "transformers":
        from thinksafe.generate.hf import HFGenerator

        return HFGenerator.from_spec(spec, backend)
    if backend.backend == "vllm":
        from thinksafe.generate.vllm import VLLMGenerator

        return VLLMGenerator.from_spec(spec, backend)
    if backend.backend == "openai":
        from thinksafe.generate.openai import OpenAIGenerator

        return OpenAIGenerator.from_spec(spec, backend)
    raise ConfigError(f"backend '{backend.backend}': expected one of {', '.join(BACKENDS)}")
