"""Chat and reasoning formats: how prompts are rendered and how a response splits into reasoning + answer.

Two formats:
- `think`: the response carries `<think>…</think>` then the answer. Qwen3 templates take
  `enable_thinking=True`; DeepSeek-R1-Distill templates end the generation prompt with `<think>\\n`, so the
  model's text lacks the opening tag and we put it back.
- `plain`: an instruct model without a reasoning block; the whole response is the trace and the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_SENTINEL = "\x00THINKSAFE_RESPONSE\x00"


@dataclass(frozen=True)
class ChatFormat:
    reasoning: str = "plain"  # "think" | "plain"
    opens_think: bool = False  # generation prompt already ends with "<think>" (R1-Distill)
    thinking_kwarg: bool = False  # template understands enable_thinking (Qwen3)

    @classmethod
    def detect(cls, tokenizer, reasoning: str = "auto") -> ChatFormat:
        template = tokenizer.chat_template or ""
        thinking_kwarg = "enable_thinking" in template
        probe = cls(thinking_kwarg=thinking_kwarg, reasoning="think")
        opens = probe.render_prompt(tokenizer, [{"role": "user", "content": "hi"}]).rstrip().endswith(THINK_OPEN)
        if reasoning == "auto":
            reasoning = "think" if (thinking_kwarg or opens or THINK_OPEN in template) else "plain"
        if reasoning not in ("think", "plain"):
            raise ValueError(f"reasoning format '{reasoning}': expected auto, think or plain")
        return cls(reasoning=reasoning, opens_think=opens, thinking_kwarg=thinking_kwarg)

    # ------------------------------------------------------------ rendering

    def template_kwargs(self) -> dict:
        if self.thinking_kwarg:
            return {"enable_thinking": self.reasoning == "think"}
        return {}

    def render_prompt(self, tokenizer, messages: list[dict]) -> str:
        """The exact text the model continues from (generation prompt included)."""
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.template_kwargs()
        )

    def turn_end(self, tokenizer) -> str:
        """What the template writes after an assistant message (e.g. "<|im_end|>\\n")."""
        msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, **self.template_kwargs())
        return text[text.rindex(_SENTINEL) + len(_SENTINEL) :]

    def render_training(self, tokenizer, instruction: str, response: str) -> tuple[str, str]:
        """(prompt_text, completion_text) for SFT: prompt via the template, response verbatim.

        We never pass the assistant turn through the template: stock R1-Distill templates strip the
        `<think>` block from assistant messages, which would train the model to skip its reasoning.
        """
        prompt = self.render_prompt(tokenizer, [{"role": "user", "content": instruction}])
        body = self.normalize(response)
        if self.opens_think and prompt.rstrip().endswith(THINK_OPEN) and body.startswith(THINK_OPEN):
            body = body[len(THINK_OPEN) :].lstrip("\n")  # the prompt already opened the block
            if not prompt.endswith("\n"):
                body = "\n" + body
        return prompt, body + self.turn_end(tokenizer)

    # ------------------------------------------------------------ parsing

    def normalize(self, text: str) -> str:
        """Restore the `<think>` the R1 generation prompt swallowed."""
        if self.reasoning == "think" and self.opens_think and THINK_OPEN not in text:
            return THINK_OPEN + "\n" + text
        return text

    def split(self, text: str) -> tuple[str, str]:
        """(reasoning, answer). For `think`, an unclosed block is all reasoning and no answer."""
        if self.reasoning == "plain":
            return "", text.strip()
        text = self.normalize(text)
        if THINK_CLOSE not in text:
            return text.replace(THINK_OPEN, "", 1).strip(), ""
        reasoning, answer = text.split(THINK_CLOSE, 1)
        return reasoning.replace(THINK_OPEN, "", 1).strip(), answer.strip()

    def is_complete(self, text: str, finish_reason: str) -> bool:
        """Ended by EOS/stop (not the token limit) and, for `think`, the reasoning block closed."""
        if finish_reason != "stop":
            return False
        return self.reasoning == "plain" or THINK_CLOSE in text
