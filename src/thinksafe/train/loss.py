"""Response-only losses that never build full-vocabulary logits for masked positions.

The model's forward runs as usual (so DDP sees it) with `logits_to_keep=1`; a hook captures the decoder's
final hidden states, and we project only the response positions through `lm_head`, in chunks under
activation checkpointing — so peak memory holds one chunk of logits (a 152k vocabulary makes full logits
the largest tensor in the step).

- Cross-entropy on response tokens (harmful examples; benign too unless --kl-benign).
- ThinkSafe+KL: on benign examples, token-level forward KL(reference ‖ student) over the full vocabulary,
  reference = the same model with its LoRA adapters disabled (no second copy in memory).

Two ways to average a step's per-token losses (`weighting`), over the n examples of the whole step (every
micro-batch and process):
- token: Σ_tokens loss_t / Σ_i T_i, every response token weighs the same; a 4k-token benign trace counts 100x a
  40-token refusal. What plain SFT (transformers' num_items_in_batch) and thinksafe before issue 17 did.
- example: (1/n) Σ_i (1/T_i) Σ_{t in i} loss_t, each example's token mean, examples weighted equally. Grouped by
  arm that is (ce·n_ce + kl·n_kl) / n, with ce the mean over CE examples of each one's token-mean CE and kl the same
  for KL examples: the reference's ForwardKLMaskedSFTTrainer (seanie12/ThinkSafe trainers/kl_trainer.py). It pools
  the tokens of one arm within a micro-batch before averaging, which is this exactly at its per-device batch of 1
  (its scripts' and our default); with larger micro-batches we keep the per-example mean, independent of how a
  step is split into micro-batches and processes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CHUNK_TOKENS = 1024


def unwrap(model):
    """The PEFT / HF model under DDP or accelerate wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


def _decoder_hidden(model, batch) -> torch.Tensor:
    """Run the (possibly DDP-wrapped) model forward; return the final hidden states (B, T, H)."""
    captured = []
    decoder = unwrap(model).get_decoder()
    handle = decoder.register_forward_hook(lambda m, args, out: captured.append(out[0] if isinstance(out, tuple) else out.last_hidden_state))
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=1, use_cache=False)
    finally:
        handle.remove()
    return captured[0]


WEIGHTINGS = ("example", "token")


def token_weights(selected: torch.Tensor, weighting: str) -> torch.Tensor:
    """(B, T) weight of each response token: 1 (token), or 1 / its example's response tokens (example)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"loss weighting '{weighting}': expected {' or '.join(WEIGHTINGS)}")
    weights = selected.float()
    return weights if weighting == "token" else weights / selected.sum(1, keepdim=True).clamp(min=1)


def loss_divisor(labels: torch.Tensor, weighting: str) -> torch.Tensor:
    """What the summed loss of these rows is divided by: their response tokens (token), or the rows that have
    any (example). labels: (B, T) with -100 off the response; position t predicts token t+1."""
    selected = labels[:, 1:] != -100
    return selected.sum() if weighting == "token" else selected.any(1).sum()


def _ce_sum(lm_head, h, y, w):
    return (F.cross_entropy(lm_head(h).float(), y, reduction="none") * w).sum()


def _kl_sum(lm_head, h, ref_logp, w):
    # F.kl_div(input=log q, target=log p, log_target=True) = Σ p (log p − log q): forward KL(p_ref ‖ q_student)
    per_token = F.kl_div(F.log_softmax(lm_head(h).float(), -1), ref_logp, log_target=True, reduction="none").sum(-1)
    return (per_token * w).sum()


def chunked_ce(lm_head, h: torch.Tensor, y: torch.Tensor, w: torch.Tensor, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Σ_t w_t CE_t over the rows of h (N, H), one chunk of logits at a time."""
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk):
        c = slice(s, s + chunk)
        total = total + checkpoint(_ce_sum, lm_head, h[c], y[c], w[c], use_reentrant=False)
    return total


def chunked_kl(lm_head, h: torch.Tensor, ref_h: torch.Tensor, w: torch.Tensor, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Σ_t w_t KL_t(reference ‖ student) over the rows of h, one chunk of logits at a time."""
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk):
        c = slice(s, s + chunk)
        with torch.no_grad():
            ref_logp = F.log_softmax(lm_head(ref_h[c]).float(), -1)
        total = total + checkpoint(_kl_sum, lm_head, h[c], ref_logp, w[c], use_reentrant=False)
    return total


def response_loss(model, batch, *, kl_benign: bool = False, weighting: str = "token",
                  chunk: int = CHUNK_TOKENS) -> tuple[torch.Tensor, int, dict]:
    """(weighted loss summed over response tokens, this batch's loss_divisor, parts) for one batch.

    weighting "token": the sum of every token's loss, divisor the token count; "example": the sum of each
    example's token-mean loss, divisor the example count (see the module docstring).
    """
    hidden = _decoder_hidden(model, batch)[:, :-1]  # position t predicts token t+1
    targets = batch["labels"][:, 1:]
    selected = targets != -100
    weights = token_weights(selected, weighting)
    kl_rows = batch["benign"].bool()[:, None].expand_as(selected) if kl_benign else torch.zeros_like(selected)
    ce_mask, kl_mask = selected & ~kl_rows, selected & kl_rows
    lm_head = unwrap(model).get_output_embeddings()
    ce = chunked_ce(lm_head, hidden[ce_mask], targets[ce_mask], weights[ce_mask], chunk)
    kl = hidden.new_zeros((), dtype=torch.float32)
    if kl_mask.any():
        peft_model = unwrap(model)
        with torch.no_grad(), peft_model.disable_adapter():
            ref_hidden = _decoder_hidden(peft_model, batch)[:, :-1]
        kl = chunked_kl(lm_head, hidden[kl_mask], ref_hidden[kl_mask], weights[kl_mask], chunk)
    parts = {"ce_tokens": int(ce_mask.sum()), "kl_tokens": int(kl_mask.sum()),
             "ce_examples": int(ce_mask.any(1).sum()), "kl_examples": int(kl_mask.any(1).sum()),
             "ce_sum": float(ce.detach()), "kl_sum": float(kl.detach())}  # sums weighted as `weighting` says
    return ce + kl, int(loss_divisor(batch["labels"], weighting)), parts
