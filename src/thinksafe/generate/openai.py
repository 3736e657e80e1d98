"""OpenAI-compatible server backend: `vllm serve`, llama.cpp, TGI, `thinksafe serve`, any /v1/chat/completions.

The official `openai` client does the HTTP work, retries included: 408/409/429/5xx, timeouts and
connection errors are retried up to `max_retries` times with exponential backoff (0.5 s doubling to 8 s,
with jitter; a Retry-After header up to 2 min is honored). We add bounded concurrency, n samples as n
seeded requests, and one-line errors.

The API key is read from the environment variable named by `api_key_env` when the generator is built;
it lives only inside the client and is never logged, printed or written out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import openai

from thinksafe.config import api_key_from_env
from thinksafe.errors import ConfigError, ThinksafeError
from thinksafe.formats import THINK_CLOSE, THINK_OPEN, ChatFormat
from thinksafe.generate import BackendConfig, Messages, OnResult, SamplingParams
from thinksafe.models import EMBEDDED, ModelSpec, cache_dir_for
from thinksafe.progress import progress_bar
from thinksafe.records import Completion

log = logging.getLogger(__name__)


def local_tokenizer(spec: ModelSpec):
    """The model's tokenizer if it is already on this machine, else None. Never downloads or converts."""
    name = spec.model
    if name in EMBEDDED:
        path = cache_dir_for(name)
        if not (path / "thinksafe_source.json").exists():
            return None  # installed but not converted yet: converting just for a tokenizer is too slow
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser()
    elif name.count("/") == 1 and not name.startswith((".", "/")) and not name.endswith(".gguf"):
        path = name  # hub id: only if it is in the local HF cache
    else:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as e:
        log.debug("no local tokenizer for %s: %s", name, e)
        return None


def pick_format(spec: ModelSpec) -> ChatFormat:
    """Reasoning format for a model we only reach over HTTP.

    With a local tokenizer we detect it as the other backends do (which also tells whether the template
    takes enable_thinking). Without one, an explicit --reasoning is trusted and 'auto' falls back to plain.
    """
    if spec.reasoning not in ("auto", "think", "plain"):
        raise ConfigError(f"reasoning format '{spec.reasoning}': expected auto, think or plain")
    tok = local_tokenizer(spec)
    if tok is not None:
        return ChatFormat.detect(tok, spec.reasoning)
    if spec.reasoning == "auto":
        log.warning(
            "%s: no local tokenizer to detect the reasoning format; using plain (set --reasoning)", spec.model
        )
        return ChatFormat("plain")
    return ChatFormat(spec.reasoning)


def _one_line(text: object, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


class OpenAIGenerator:
    def __init__(self, base_url: str, model: str, fmt: ChatFormat, backend: BackendConfig):
        if backend.concurrency < 1 or backend.max_retries < 0 or backend.timeout <= 0:
            raise ConfigError(
                "backend 'openai': concurrency >= 1, max_retries >= 0 and timeout > 0 are required"
            )
        key = api_key_from_env(backend.api_key_env, "backend 'openai': --api_key_env") if backend.api_key_env else None
        self.base_url, self.model, self.format, self.backend = base_url.rstrip("/"), model, fmt, backend
        self.name = f"openai:{model}@{self.base_url}"
        # Local servers ignore the key but the client insists on one, hence "EMPTY" (vLLM's convention).
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key or "EMPTY",
            timeout=backend.timeout,
            max_retries=backend.max_retries,
        )

    @classmethod
    def from_spec(cls, spec: ModelSpec, backend: BackendConfig | None = None) -> OpenAIGenerator:
        backend = backend or BackendConfig(backend="openai")
        if not backend.base_url:
            raise ConfigError("backend 'openai' needs --base_url, e.g. http://127.0.0.1:8000/v1")
        if spec.adapter:
            # The server applies adapters (vllm serve --lora-modules NAME=DIR); silently ignoring one is worse.
            raise ConfigError(
                "backend 'openai': serve the adapter on the server and pass its name as --served_model"
            )
        return cls(backend.base_url, backend.served_model or spec.model, pick_format(spec), backend)

    def __repr__(self) -> str:
        return f"OpenAIGenerator({self.name!r})"

    def generate(
        self, requests: Sequence[Messages], sampling: SamplingParams, on_result: OnResult | None = None
    ) -> list[list[Completion]]:
        # One request per sample, seeded seed + k: many servers reject n > 1 (llama.cpp) or seed it as a
        # whole, and this way each sample is reproducible on its own. Greedy samples are identical, so
        # greedy sends one request and copies it, as the vLLM backend does.
        copies = 1 if sampling.temperature == 0 else sampling.n
        jobs = [(i, k) for i in range(len(requests)) for k in range(copies)]
        results: list[list] = [[None] * copies for _ in requests]
        with (
            progress_bar("generate", len(jobs), enabled=self.backend.progress) as bar,
            ThreadPoolExecutor(max_workers=self.backend.concurrency) as pool,
        ):
            futures = {
                pool.submit(self._complete, requests[i], sampling, sampling.seed + k): (i, k) for i, k in jobs
            }
            try:
                for f in as_completed(futures):
                    i, k = futures[f]
                    results[i][k] = c = f.result()
                    bar.advance(1, tokens=c.completion_tokens)
                    if on_result and all(x is not None for x in results[i]):
                        on_result(i, [replace(results[i][j % copies]) for j in range(sampling.n)])
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # fail fast: don't send what is still queued
                raise
        if copies < sampling.n:
            results = [[replace(r[0]) for _ in range(sampling.n)] for r in results]
        return results

    def _complete(self, messages: Messages, s: SamplingParams, seed: int) -> Completion:
        extra: dict = {}
        if s.top_k > 0:  # not in the OpenAI schema; vLLM, llama.cpp and TGI read it from the body
            extra["top_k"] = s.top_k
        if self.format.thinking_kwarg:
            extra["chat_template_kwargs"] = self.format.template_kwargs()
        try:
            r = self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=s.max_new_tokens,  # not max_completion_tokens: older servers only read max_tokens
                temperature=s.temperature,
                top_p=s.top_p,
                seed=seed,
                extra_body=extra or None,
            )
        except openai.APIStatusError as e:
            detail = e.body.get("message", e.body) if isinstance(e.body, dict) else e.body
            retried = e.status_code in (408, 409, 429) or e.status_code >= 500  # what the client retries
            detail = _one_line(self._redact(str(detail)))  # redact before cutting: no partial key survives
            raise ThinksafeError(self._error(f"HTTP {e.status_code}: {detail}", retried)) from None
        except openai.APITimeoutError:
            raise ThinksafeError(self._error(f"timed out after {self.backend.timeout:g} s")) from None
        except openai.APIConnectionError as e:
            detail = _one_line(self._redact(str(e.__cause__ or e)))
            raise ThinksafeError(self._error(f"cannot connect ({detail})")) from None
        if not r.choices:
            raise ThinksafeError(self._error("response has no choices", retried=False))
        choice, usage = r.choices[0], r.usage
        text = choice.message.content or ""  # None when the server put everything in the reasoning field
        # Servers run with a reasoning parser return the think block apart; put it back where the other
        # backends have it, so the format's split() sees the same text.
        msg = choice.message
        thought = getattr(msg, "reasoning_content", None) or getattr(msg, "reasoning", None)
        if isinstance(thought, str) and thought and THINK_OPEN not in text:
            text = f"{THINK_OPEN}\n{thought}\n{THINK_CLOSE}\n\n{text}"
        return Completion(
            text=self.format.normalize(text),
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    def _error(self, what: str, retried: bool = True) -> str:
        msg = f"openai backend: POST {self.base_url}/chat/completions: {what}"
        if retried and self.backend.max_retries:
            msg += f" (after {self.backend.max_retries} retries)"
        return self._redact(msg)

    def _redact(self, text: str) -> str:
        """The text with the API key masked, in case a server echoes it."""
        key = self._client.api_key
        return text.replace(key, "***") if key and key != "EMPTY" else text
