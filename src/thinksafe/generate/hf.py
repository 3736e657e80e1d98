"""transformers backend, two engines (BackendConfig.hf_engine).

`continuous` (default): transformers' continuous batching (`init_continuous_batching`) on a paged KV cache. A
request that finishes frees its slot for the next one at once, and its result is handed to `on_result` as soon
as all its samples are done, so results arrive out of order. A generation config it can't reproduce (a logits
processor that needs the whole history, e.g. a repetition penalty) runs `padded` instead, with a warning.
`padded`: length-sorted, left-padded batches sized by a token budget, each run by `model.generate` until its
longest row ends.

Both give the same greedy text (tests/generate/test_generate_hf.py). With sampling, each engine is reproducible
on its own (same seed + same inputs = same outputs) but the two draw different samples of the same
distribution: a chi-square test on a tiny model, and on the embedded model the demo's synthesis yields and
three seeds of its evaluation rates agree within their CIs (benchmarks/engine_sampling.py)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import replace

import torch
from transformers import GenerationConfig

from thinksafe.generate import BackendConfig, Messages, OnResult, SamplingParams
from thinksafe.models import LoadedModel, ModelSpec, load_model
from thinksafe.progress import progress_bar
from thinksafe.records import Completion

log = logging.getLogger(__name__)

# End-of-turn tokens of common chat templates; whichever exist in the vocabulary stop generation.
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "</s>")

# Continuous batching: KV cache page (tokens), and query tokens per forward step (prompts are prefilled
# in chunks of what the step has left after one token per decoding request).
CB_PAGE_SIZE = 64
CB_STEP_TOKENS = 512
# Logits processors continuous batching applies per row exactly like `generate`; anything else (e.g. a
# repetition penalty from the model's generation_config) needs the full history, so those runs use `padded`.
_CB_PROCESSORS = {"TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"}


def _cb_sdpa(module, query, key, value, attention_mask, *args, cache=None, **kwargs):
    """`sdpa` for continuous batching on CPU: each request attends to its own keys only.

    Continuous batching packs the requests of a step into one row with a block-diagonal mask, so stock sdpa
    scores every query against every request's keys (work ∝ requests² × length) and first copies the keys
    once per query head. Here a decode step (one query per request) is one padded batch of requests × their
    own keys, and a step with prefill chunks loops over the requests. Same math, same greedy tokens; any
    other call (no paged cache, not CPU, sliding-window layers) goes to stock sdpa unchanged.
    """
    from transformers.generation.continuous_batching import PagedAttentionCache

    if (
        not isinstance(cache, PagedAttentionCache)
        or query.device.type != "cpu"
        or getattr(module, "sliding_window", None)
        or args
    ):
        return _STOCK_SDPA["sdpa"](module, query, key, value, attention_mask, *args, cache=cache, **kwargs)
    scaling = kwargs.get("scaling")
    key, value = cache.update(key_states=key, value_states=value, layer_idx=module.layer_idx, kwargs=kwargs)
    cu_q, cu_k = kwargs["cu_seq_lens_q"], kwargs["cu_seq_lens_k"].long()  # [requests + 1], this layer's keys
    n, heads, dim = cu_q.numel() - 1, query.shape[1], query.shape[3]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if query.shape[2] == n:  # decode: one query per request
        lengths = cu_k[1:] - cu_k[:-1]
        pos = torch.arange(int(lengths.max()))
        index = (cu_k[:-1, None] + pos).clamp_(max=key.shape[2] - 1)  # [n, longest]
        keys, values = (x[0][:, index].transpose(0, 1) for x in (key, value))  # [n, kv heads, longest, dim]
        mask = (pos < lengths[:, None])[:, None, None, :]
        out = sdpa(query[0].transpose(0, 1).unsqueeze(2), keys, values, attn_mask=mask, scale=scaling, enable_gqa=True)
        return out.view(1, n, heads, dim), None
    out = torch.empty_like(query)
    q_bounds, k_bounds = cu_q.tolist(), cu_k.tolist()
    for r in range(n):
        (q0, q1), (k0, k1) = q_bounds[r : r + 2], k_bounds[r : r + 2]
        ql, kl = q1 - q0, k1 - k0
        # causal, aligned to the end: query i sits at key position kl - ql + i
        mask = None if ql in (1, kl) else torch.ones(ql, kl, dtype=torch.bool).tril_(kl - ql)
        out[:, :, q0:q1] = sdpa(
            query[:, :, q0:q1], key[:, :, k0:k1], value[:, :, k0:k1],
            attn_mask=mask, is_causal=1 < ql == kl, scale=scaling, enable_gqa=True,
        )
    return out.transpose(1, 2).contiguous(), None


_STOCK_SDPA: dict = {}  # the "sdpa" transformers shipped, kept for every call _cb_sdpa passes on


def _install_cb_sdpa() -> None:
    """Route transformers' "sdpa" through `_cb_sdpa` (once per process; it passes every non-paged call on)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if not _STOCK_SDPA:
        _STOCK_SDPA["sdpa"] = ALL_ATTENTION_FUNCTIONS["sdpa"]
        ALL_ATTENTION_FUNCTIONS["sdpa"] = _cb_sdpa


def stop_token_ids(tokenizer, model) -> list[int]:
    ids: set[int] = set()
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    for x in (tokenizer.eos_token_id, gen_eos):
        ids.update(x if isinstance(x, list) else [x] if x is not None else [])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in _END_TOKENS if t in vocab)
    return sorted(ids)


def plan_batches(lengths: Sequence[int], max_new_tokens: int, token_budget: int, max_batch_size: int) -> list[list[int]]:
    """Group indices (longest prompt first) so rows × (longest prompt + new tokens) ≤ token_budget.

    Sorting by length keeps padding small; the budget bounds the KV cache, so long prompts get small
    batches and short ones large batches. A single row always fits, whatever the budget.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            cur = batches[-1]
            width = lengths[cur[0]] + max_new_tokens  # cur[0] is the longest in the batch
            if len(cur) < max_batch_size and (len(cur) + 1) * width <= token_budget:
                cur.append(i)
                continue
        batches.append([i])
    return batches


class HFGenerator:
    def __init__(self, loaded: LoadedModel, backend: BackendConfig | None = None):
        self.loaded = loaded
        self.model, self.tokenizer, self.format = loaded.model, loaded.tokenizer, loaded.format
        self.backend = backend or BackendConfig()
        self.name = f"transformers:{loaded.spec.model}"
        self.stop_ids = stop_token_ids(self.tokenizer, self.model)

    @classmethod
    def from_spec(cls, spec: ModelSpec, backend: BackendConfig | None = None) -> HFGenerator:
        return cls(load_model(spec), backend)

    def encode(self, messages: Messages) -> list[int]:
        text = self.format.render_prompt(self.tokenizer, messages)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]  # the template has its own BOS

    def generation_config(self, s: SamplingParams) -> GenerationConfig:
        sample = s.temperature > 0
        return GenerationConfig(
            max_new_tokens=s.max_new_tokens,
            do_sample=sample,
            temperature=s.temperature if sample else None,
            top_p=s.top_p if sample else None,
            top_k=s.top_k if sample else None,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def completion(self, prompt_tokens: int, toks: list[int]) -> Completion:
        """New tokens → Completion: text up to the first stop token, 'stop' if one came, else 'length'."""
        stops = set(self.stop_ids)
        end = next((t for t, tok in enumerate(toks) if tok in stops), None)
        body = toks if end is None else toks[:end]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        return Completion(
            text=self.format.normalize(text),
            finish_reason="length" if end is None else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(body) + (end is not None),  # the stop token was generated too
        )

    @torch.inference_mode()
    def generate(
        self, requests: Sequence[Messages], sampling: SamplingParams, on_result: OnResult | None = None
    ) -> list[list[Completion]]:
        prompts = [self.encode(m) for m in requests]
        if not prompts:
            return []
        gen_config = self.generation_config(sampling)
        if self.backend.hf_engine == "continuous":
            why_not = self.continuous_unsupported(gen_config)
            if why_not is None:
                return self._generate_continuous(prompts, sampling, gen_config, on_result)
            log.warning("continuous batching unavailable (%s): using the padded engine", why_not)
        return self._generate_padded(prompts, sampling, gen_config, on_result)

    # ------------------------------------------------------------------------------------------- padded

    def _generate_padded(
        self, prompts: list[list[int]], sampling: SamplingParams, gen_config: GenerationConfig, on_result: OnResult | None
    ) -> list[list[Completion]]:
        # One work item per (request, sample): n samples are n rows, batched like everything else.
        # Greedy samples are identical, so greedy decodes one row per request and copies it.
        copies = 1 if sampling.temperature == 0 else sampling.n
        items = [(i, k) for i in range(len(prompts)) for k in range(copies)]
        lengths = [len(prompts[i]) for i, _ in items]
        batches = plan_batches(lengths, sampling.max_new_tokens, self.backend.token_budget, self.backend.max_batch_size)
        results: list[list[Completion | None]] = [[None] * copies for _ in prompts]
        torch.manual_seed(sampling.seed)  # batches run in a fixed order, so the seed fixes every sample
        with progress_bar("generate", len(items), enabled=self.backend.progress) as bar:
            for batch in batches:
                rows = [prompts[items[j][0]] for j in batch]
                outs = self._generate_batch(rows, gen_config)
                for j, c in zip(batch, outs):
                    i, k = items[j]
                    results[i][k] = c
                    if all(x is not None for x in results[i]):
                        results[i] = [replace(results[i][m % copies]) for m in range(sampling.n)]
                        if on_result:
                            on_result(i, results[i])  # type: ignore[arg-type]
                bar.advance(len(batch), tokens=sum(c.completion_tokens for c in outs))
        return results  # type: ignore[return-value]

    def _generate_batch(self, rows: list[list[int]], gen_config: GenerationConfig) -> list[Completion]:
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        device = self.model.device
        out = self.model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=gen_config
        )
        return [self.completion(len(r), toks) for r, toks in zip(rows, out[:, width:].tolist())]

    # --------------------------------------------------------------------------------------- continuous

    def _cb_model(self):
        """The transformers model that runs continuous batching (a PEFT wrapper's base, LoRA layers included)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def continuous_unsupported(self, gen_config: GenerationConfig) -> str | None:
        """Why continuous batching can't reproduce `generate` for this model and config, or None if it can."""
        model = self._cb_model()
        if not hasattr(model, "init_continuous_batching"):
            return f"{type(model).__name__} has no continuous batching"
        # The config `generate` really runs: ours, completed by the model's generation_config defaults.
        merged = model._prepare_generation_config(gen_config)[0]
        with warnings.catch_warnings():  # e.g. "repetition_penalty without input_ids": we only list them
            warnings.simplefilter("ignore")
            others = {type(p).__name__ for p in model._get_logits_processor(merged)} - _CB_PROCESSORS
        if others:
            return f"the generation config needs {', '.join(sorted(others))}"
        return None

    def continuous_config(self, prompts: list[list[int]], sampling: SamplingParams):
        """Paged-cache sizes: token_budget KV tokens (at least one whole request), max_batch_size requests per step."""
        from transformers import ContinuousBatchingConfig

        longest = max(map(len, prompts)) + sampling.max_new_tokens
        cache_tokens = max(self.backend.token_budget, longest + CB_PAGE_SIZE)
        return ContinuousBatchingConfig(
            page_size=CB_PAGE_SIZE,
            num_blocks=math.ceil(cache_tokens / CB_PAGE_SIZE) + 1,
            max_batch_tokens=max(CB_STEP_TOKENS, self.backend.max_batch_size),
            max_requests_per_batch=self.backend.max_batch_size,
            seed=sampling.seed,
            cpu_offload_space=0.0,
        )

    def _generate_continuous(
        self, prompts: list[list[int]], sampling: SamplingParams, gen_config: GenerationConfig, on_result: OnResult | None
    ) -> list[list[Completion]]:
        model = self._cb_model()
        _install_cb_sdpa()
        copies = 1 if sampling.temperature == 0 else sampling.n
        # n samples of a request: one request forked n ways after its prefill (the prompt is prefilled once).
        gen_config = model._prepare_generation_config(gen_config)[0]
        gen_config.num_return_sequences = copies
        manager = model.init_continuous_batching(
            generation_config=gen_config, continuous_batching_config=self.continuous_config(prompts, sampling)
        )
        samples: list[dict[int, Completion]] = [{} for _ in prompts]
        results: list[list[Completion]] = [[] for _ in prompts]
        done = 0
        try:
            # Everything is queued before the loop starts, so it schedules (and samples) the same way every run.
            for i, p in enumerate(prompts):
                manager.add_request(p, request_id=str(i), max_new_tokens=sampling.max_new_tokens, eos_token_id=self.stop_ids)
            manager.start()
            with progress_bar("generate", len(prompts) * copies, enabled=self.backend.progress) as bar:
                while done < len(prompts):
                    out = manager.get_result(timeout=1)
                    if out is None:
                        if not manager.is_running():
                            raise RuntimeError("continuous batching: the generation loop stopped early")
                        continue
                    if not out.is_finished():
                        continue
                    if out.error is not None:
                        raise RuntimeError(f"continuous batching: request failed: {out.error}")
                    # Sample 0 is the request itself, sample k + 1 its fork '<id>__child#<k>'.
                    rid, _, child = out.request_id.partition("__child#")
                    i, k = int(rid), int(child) + 1 if child else 0
                    samples[i][k] = c = self.completion(len(prompts[i]), out.generated_tokens)
                    bar.advance(1, tokens=c.completion_tokens)
                    if len(samples[i]) == copies:
                        done += 1
                        results[i] = [replace(samples[i][m % copies]) for m in range(sampling.n)]
                        if on_result:
                            on_result(i, results[i])
        finally:
            manager.stop(block=True, hard_stop=done < len(prompts))
            manager.destroy()
        return results
