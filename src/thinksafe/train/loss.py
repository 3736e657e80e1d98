"""Response-only losses that never build full-vocabulary logits for masked positions.

The model's forward runs as usual (so DDP sees it) with `logits_to_keep=1`; a hook captures the decoder's
final hidden states, and we project only the response positions through `lm_head`, in chunks under
activation checkpointing — so peak memory holds one chunk of logits (a 152k vocabulary makes full logits
the largest tensor in the step).

- Cross-entropy on response tokens (harmful examples; benign too unless --kl-benign).
- ThinkSafe+KL: on benign examples, token-level forward KL(reference ‖ student) over the full vocabulary,
  reference = the same model with its LoRA adapters disabled (no second copy in memory).
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


def _ce_sum(lm_head, h, y):
    return F.cross_entropy(lm_head(h).float(), y, reduction="sum")


def _kl_sum(lm_head, h, ref_logp):
    # F.kl_div(input=log q, target=log p, log_target=True) = Σ p (log p − log q): forward KL(p_ref ‖ q_student)
    return F.kl_div(F.log_softmax(lm_head(h).float(), -1), ref_logp, log_target=True, reduction="sum")


def chunked_ce(lm_head, h: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk):
        total = total + checkpoint(_ce_sum, lm_head, h[s : s + chunk], y[s : s + chunk], use_reentrant=False)
    return total


def chunked_kl(lm_head, h: torch.Tensor, ref_h: torch.Tensor, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk):
        with torch.no_grad():
            ref_logp = F.log_softmax(lm_head(ref_h[s : s + chunk]).float(), -1)
        total = total + checkpoint(_kl_sum, lm_head, h[s : s + chunk], ref_logp, use_reentrant=False)
    return total


def response_loss(model, batch, *, kl_benign: bool = False, chunk: int = CHUNK_TOKENS) -> tuple[torch.Tensor, int, dict]:
    """(summed loss over response tokens, number of those tokens, parts) for one batch."""
    hidden = _decoder_hidden(model, batch)[:, :-1]  # position t predicts token t+1
    targets = batch["labels"][:, 1:]
    selected = targets != -100
    kl_rows = batch["benign"].bool()[:, None].expand_as(selected) if kl_benign else torch.zeros_like(selected)
    ce_mask, kl_mask = selected & ~kl_rows, selected & kl_rows
    lm_head = unwrap(model).get_output_embeddings()
    ce = chunked_ce(lm_head, hidden[ce_mask], targets[ce_mask], chunk)
    kl = hidden.new_zeros((), dtype=torch.float32)
    if kl_mask.any():
        peft_model = unwrap(model)
        with torch.no_grad(), peft_model.disable_adapter():
            ref_hidden = _decoder_hidden(peft_model, batch)[:, :-1]
        kl = chunked_kl(lm_head, hidden[kl_mask], ref_hidden[kl_mask], chunk)
    parts = {"ce_tokens": int(ce_mask.sum()), "kl_tokens": int(kl_mask.sum()), "ce_sum": float(ce.detach()), "kl_sum": float(kl.detach())}
    return ce + kl, int(selected.sum()), parts
