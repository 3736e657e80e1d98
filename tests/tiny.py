"""Tiny random-weight chat models built locally: a BPE tokenizer trained here + a 2-layer Qwen2 config.

Three chat-template styles mirror the real ones: `plain` (ChatML instruct), `qwen3` (enable_thinking),
`r1` (DeepSeek-R1-Distill: the generation prompt opens <think>, assistant history has its think block
stripped).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

CORPUS = [
    "The quick brown fox jumps over the lazy dog. What is 2 + 2? The answer is 4.",
    "I cannot help with that request. I'm sorry, but I won't assist with harmful activities.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Write a poem about the sea. Explain photosynthesis. How do I kill a Python process?",
    "system user assistant think reasoning answer refuse harmful prompt safe unsafe",
    "0123456789 + - * / = ( ) { } [ ] < > , . ! ? : ; ' \" \n",
]

TEMPLATES = {
    "plain": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "qwen3": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
        "{% endif %}"
    ),
    "r1": (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
        "{% elif m['role'] == 'assistant' %}{% set c = m['content'] %}"
        "{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}"
        "<｜Assistant｜>{{ c }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
    ),
}


def build_tokenizer(style: str = "plain") -> PreTrainedTokenizerFast:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                "<｜User｜>", "<｜Assistant｜>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"additional_special_tokens": specials[1:]})
    fast.add_tokens(["<think>", "</think>"])  # not special: decoding keeps them, as in Qwen3/R1
    if style == "r1":
        fast.bos_token, fast.eos_token = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
    else:
        fast.eos_token = "<|im_end|>"
    fast.pad_token = "<|endoftext|>"
    fast.chat_template = TEMPLATES[style]
    return fast


def build_tiny_model(path: str | Path, style: str = "plain", seed: int = 0, dtype=torch.float32) -> Path:
    """Save a random 2-layer Qwen2 + tokenizer to `path`; loadable by thinksafe.load_model(path)."""
    path = Path(path)
    tok = build_tokenizer(style)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
    )
    model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
