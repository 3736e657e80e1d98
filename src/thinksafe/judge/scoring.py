"""Scoring a guard's one-word answer, shared by the Llama-Guard and judge-model guards.

    ForwardScorer   batched forward passes: the log-probs of the first token of each answer word
    ServerScorer    the same question to an OpenAI-compatible server, read from `top_logprobs`
    score_all       a scorer over conversations, with a progress bar; the guard's name on every verdict

Both fail closed: a missing token, non-finite logits or a failed request is `unknown`, never `safe`.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from thinksafe.config import api_key_from_env
from thinksafe.errors import ConfigError
from thinksafe.judge import GuardConfig, chunks, label_from_score
from thinksafe.progress import progress_bar
from thinksafe.records import Verdict

log = logging.getLogger(__name__)

Messages = list[dict]


@dataclass(frozen=True)
class AnswerWords:
    """The words that mean each verdict; a class's probability is the sum over its words' first tokens."""

    safe: tuple[str, ...] = ("safe",)
    unsafe: tuple[str, ...] = ("unsafe",)


def two_way(logp_safe: float, logp_unsafe: float) -> float:
    """P(unsafe) renormalized over the two answers: a softmax over the two log-probs."""
    m = max(logp_safe, logp_unsafe)
    es, eu = math.exp(logp_safe - m), math.exp(logp_unsafe - m)
    return eu / (es + eu)


def first_token_ids(tokenizer, words: AnswerWords) -> tuple[list[int], list[int], str]:
    """First-token ids of each class's words, or ([], [], why) if they aren't distinct real tokens."""
    unk = getattr(tokenizer, "unk_token_id", None)
    ids: dict[str, list[int]] = {"safe": [], "unsafe": []}
    for cls, group in (("safe", words.safe), ("unsafe", words.unsafe)):
        for w in group:
            toks = tokenizer.encode(w, add_special_tokens=False)
            if not toks or (unk is not None and toks[0] == unk):
                continue  # the word can't be written with this vocabulary
            if toks[0] not in ids[cls]:
                ids[cls].append(toks[0])
    if not ids["safe"] or not ids["unsafe"]:
        return [], [], f"no token for {'safe' if not ids['safe'] else 'unsafe'} in the guard's vocabulary"
    if set(ids["safe"]) & set(ids["unsafe"]):
        return [], [], "'safe' and 'unsafe' share their first token"
    return ids["safe"], ids["unsafe"], ""


class ForwardScorer:
    """Batched, left-padded forward passes; P(unsafe) from the last position's next-token distribution.

    `render` turns a conversation into the exact text the model reads. Position ids follow the attention
    mask, so a row scores the same (up to float rounding) whatever else shares its batch.
    """

    def __init__(self, model, tokenizer, render: Callable[[Messages], str], words: AnswerWords = AnswerWords(),
                 batch_size: int = 8, min_mass: float = 0.0):
        self.model, self.tokenizer, self.render = model, tokenizer, render
        self.batch_size, self.min_mass = batch_size, min_mass
        self.safe_ids, self.unsafe_ids, self.problem = first_token_ids(tokenizer, words)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps forward(**kw)
        params = inspect.signature(base.forward).parameters
        # Only the last position's logits are needed: at a 128k vocabulary, full logits for a batch of
        # long responses would take gigabytes.
        self.keep_last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @property
    def usable(self) -> bool:
        return not self.problem

    def encode(self, conversation: Messages) -> list[int]:
        # The template writes its own BOS (Llama Guard starts with <|begin_of_text|>): add none here.
        return self.tokenizer(self.render(conversation), add_special_tokens=False)["input_ids"]

    def score(self, conversations: Sequence[Messages], bar=None) -> list[Verdict]:
        if not self.usable:
            if bar:
                bar.advance(len(conversations))
            return [Verdict("unknown", raw=self.problem) for _ in conversations]
        rows = [self.encode(c) for c in conversations]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # similar lengths share a batch
        out: list[Verdict] = [Verdict("unknown")] * len(rows)
        for idx in chunks(len(order), self.batch_size):
            batch = [order[j] for j in idx]
            for i, v in zip(batch, self._score_batch([rows[i] for i in batch])):
                out[i] = v
            if bar:
                bar.advance(len(batch), tokens=sum(len(rows[i]) for i in batch))
        return out

    def _score_batch(self, rows: list[list[int]]) -> list[Verdict]:
        import torch

        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift the real positions
        dev = self.model.device
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                                use_cache=False, **self.keep_last).logits[:, -1, :].float()
        logp = torch.log_softmax(logits, dim=-1)
        safe = torch.logsumexp(logp[:, self.safe_ids], dim=-1).tolist()
        unsafe = torch.logsumexp(logp[:, self.unsafe_ids], dim=-1).tolist()
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        return [self._verdict(s, u, ok) for s, u, ok in zip(safe, unsafe, finite)]

    def _verdict(self, logp_safe: float, logp_unsafe: float, finite: bool) -> Verdict:
        if not finite:
            return Verdict("unknown", raw="non-finite logits")
        ps, pu = math.exp(logp_safe), math.exp(logp_unsafe)
        raw = f"p_safe={ps:.4g} p_unsafe={pu:.4g}"
        if ps + pu <= self.min_mass:
            return Verdict("unknown", raw=f"{raw}: under {self.min_mass} of the mass, not answering safe/unsafe")
        return label_from_score(two_way(logp_safe, logp_unsafe), raw)


# ---------------------------------------------------------------- OpenAI-compatible server


def openai_client(cfg: GuardConfig):
    """A client for cfg.guard_base_url; the key comes from the env var *named* in the config."""
    from openai import OpenAI

    if not cfg.guard_base_url:
        raise ConfigError("guard_backend openai needs guard_base_url (e.g. http://127.0.0.1:8000/v1)")
    key = "EMPTY"  # local servers (vllm serve, llama.cpp) accept any key
    if cfg.guard_api_key_env:
        key = api_key_from_env(cfg.guard_api_key_env, "--guard_api_key_env")
    return OpenAI(base_url=cfg.guard_base_url, api_key=key, timeout=cfg.guard_timeout, max_retries=cfg.guard_max_retries)


class ServerScorer:
    """Ask a chat-completions server for one short reply with top-20 log-probs and read them.

    We request a few tokens, not one: served through its stock template, Llama Guard 3 first writes
    "\\n\\n" (see the module docstring), so the verdict is the first *non-blank* token. If neither word is
    among its top log-probs the verdict is unknown; with `text_fallback` (judge models) a server that
    returns no log-probs at all is read from the reply's first word instead. Errors and timeouts are unknown and
    counted in `errors` — never safe.
    """

    usable, problem = True, ""

    def __init__(self, client, model: str, words: AnswerWords = AnswerWords(), concurrency: int = 8,
                 max_tokens: int = 4, text_fallback: bool = False, min_mass: float = 0.0):
        self.client, self.model, self.words = client, model, words
        self.concurrency, self.max_tokens, self.text_fallback = concurrency, max_tokens, text_fallback
        self.min_mass = min_mass
        self.errors = 0
        self._lock = threading.Lock()

    def score(self, conversations: Sequence[Messages], bar=None) -> list[Verdict]:
        def one(conv: Messages) -> Verdict:
            v = self._score_one(conv)
            v.raw = self._redact(v.raw)  # a server may echo the key (e.g. in an error body): never store it
            if bar:
                bar.advance(1)
            return v

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(one, conversations))

    def _score_one(self, conv: Messages) -> Verdict:
        from openai import OpenAIError

        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=conv, temperature=0.0, max_tokens=self.max_tokens,
                logprobs=True, top_logprobs=20,
            )
        except (OpenAIError, ValueError) as e:  # timeouts, 5xx after retries; ValueError: a body that is not JSON
            return self._failed("server error", e)
        try:
            choice = resp.choices[0]
            content = choice.message.content or ""
            tokens = (choice.logprobs.content or []) if choice.logprobs is not None else []
            if not tokens and self.text_fallback:  # the server gives no log-probs: only the text is left
                return Verdict(first_word_label(content, self.words), raw=f"text: {content[:200]!r}")
            verdict = self._from_logprobs(tokens)
        except Exception as e:  # a malformed reply (missing fields, wrong types, bad numbers): fail closed
            return self._failed("malformed reply", e)
        if verdict.label == "unknown":
            verdict.raw += f"; reply {content[:200]!r}"
        return verdict

    def _failed(self, what: str, e: Exception) -> Verdict:
        with self._lock:
            self.errors += 1
        return Verdict("unknown", raw=f"{what}: {type(e).__name__}: {self._redact(str(e))[:200]}")

    def _redact(self, text: str) -> str:
        key = getattr(self.client, "api_key", None)
        return text.replace(key, "***") if isinstance(key, str) and key and key != "EMPTY" else text

    def _from_logprobs(self, tokens) -> Verdict:
        if not tokens:
            return Verdict("unknown", raw="no logprobs in the reply")
        first = next((t for t in tokens if t.token.strip()), None)
        if first is None:
            return Verdict("unknown", raw="blank reply")
        probs = {"safe": 0.0, "unsafe": 0.0}
        for alt in first.top_logprobs or []:
            word = alt.token.strip()
            cls = "safe" if word in self.words.safe else "unsafe" if word in self.words.unsafe else None
            if cls:
                lp = float(alt.logprob)
                if not lp <= 0.0:  # NaN, +inf or a log-probability above 0 is no probability: fail closed
                    return Verdict("unknown", raw=f"invalid logprob {alt.logprob!r} for {alt.token!r}")
                probs[cls] += math.exp(lp)
        ps, pu = probs["safe"], probs["unsafe"]
        raw = f"p_safe={ps:.4g} p_unsafe={pu:.4g}"
        if ps + pu == 0:
            return Verdict("unknown", raw=f"neither safe nor unsafe in the top logprobs (first token {first.token!r})")
        if ps + pu <= self.min_mass:
            return Verdict("unknown", raw=f"{raw}: under {self.min_mass} of the mass, not answering safe/unsafe")
        # A word missing from the top 20 has negligible probability next to one that is there: count it 0.
        return label_from_score(pu / (ps + pu), raw)


def first_word_label(text: str, words: AnswerWords) -> str:
    """'safe' / 'unsafe' if the reply's first word is one of the answer words (any case), else 'unknown'."""
    stripped = text.strip().lstrip("*_`'\"[(#> \n")
    word = stripped.split(maxsplit=1)[0].rstrip(".,:;!*_`'\")]").lower() if stripped else ""
    if word in (w.lower() for w in words.safe):
        return "safe"
    if word in (w.lower() for w in words.unsafe):
        return "unsafe"
    return "unknown"


def score_all(scorer, conversations: Sequence[Messages], name: str, progress: bool) -> list[Verdict]:
    """Run a scorer over conversations with a progress bar and stamp the guard's name on each verdict."""
    errors_before = getattr(scorer, "errors", 0)
    with progress_bar(f"judge ({name})", len(conversations), enabled=progress) as bar:
        verdicts = scorer.score(conversations, bar)
    failed = getattr(scorer, "errors", 0) - errors_before
    if failed:
        log.warning("%s: %d of %d requests failed; judged unknown", name, failed, len(conversations))
    for v in verdicts:
        v.guard = name
    return verdicts
