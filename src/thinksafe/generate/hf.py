"""transformers backend: real batching with left padding, length-sorted batches sized by a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from transformers import GenerationConfig

from thinksafe.generate import BackendConfig, Messages, OnResult, SamplingParams
from thinksafe.models import LoadedModel, ModelSpec, load_model
from thinksafe.progress import progress_bar
from thinksafe.records import Completion

# End-of-turn tokens of common chat templates; whichever exist in the vocabulary stop generation.
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "</s>")


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

    @torch.inference_mode()
    def generate(
        self, requests: Sequence[Messages], sampling: SamplingParams, on_result: OnResult | None = None
    ) -> list[list[Completion]]:
        prompts = [self.encode(m) for m in requests]
        # One work item per (request, sample): n samples are n rows, batched like everything else.
        # Greedy samples are identical, so greedy decodes one row per request and copies it.
        copies = 1 if sampling.temperature == 0 else sampling.n
        items = [(i, k) for i in range(len(prompts)) for k in range(copies)]
        lengths = [len(prompts[i]) for i, _ in items]
        batches = plan_batches(lengths, sampling.max_new_tokens, self.backend.token_budget, self.backend.max_batch_size)
        results: list[list[Completion | None]] = [[None] * copies for _ in prompts]
        gen_config = self.generation_config(sampling)
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
        new = out[:, width:].tolist()
        stops = set(self.stop_ids)
        completions = []
        for r, toks in zip(rows, new):
            end = next((t for t, tok in enumerate(toks) if tok in stops), None)
            body = toks if end is None else toks[:end]
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            completions.append(
                Completion(
                    text=self.format.normalize(text),
                    finish_reason="length" if end is None else "stop",
                    prompt_tokens=len(r),
                    completion_tokens=len(body) + (end is not None),  # the stop token was generated too
                )
            )
        return completions
