import pytest

from thinksafe.formats import ChatFormat
from tiny import build_tokenizer

THINK = ChatFormat("think")
R1 = ChatFormat("think", opens_think=True)
PLAIN = ChatFormat("plain")


def test_detect_formats_from_templates():
    assert ChatFormat.detect(build_tokenizer("plain")) == PLAIN
    q3 = ChatFormat.detect(build_tokenizer("qwen3"))
    assert q3.reasoning == "think" and q3.thinking_kwarg and not q3.opens_think
    r1 = ChatFormat.detect(build_tokenizer("r1"))
    assert r1.reasoning == "think" and r1.opens_think
    assert ChatFormat.detect(build_tokenizer("qwen3"), "plain").reasoning == "plain"
    with pytest.raises(ValueError):
        ChatFormat.detect(build_tokenizer("plain"), "bogus")


def test_qwen3_thinking_flag_reaches_template():
    tok = build_tokenizer("qwen3")
    msgs = [{"role": "user", "content": "hi"}]
    assert "<think>" not in ChatFormat.detect(tok).render_prompt(tok, msgs)  # enable_thinking=True
    assert ChatFormat.detect(tok, "plain").render_prompt(tok, msgs).endswith("<think>\n\n</think>\n\n")


@pytest.mark.parametrize(
    "fmt,text,expected",
    [
        (THINK, "<think>\nhmm\n</think>\n\nNo.", ("hmm", "No.")),
        (THINK, "<think>still thinking", ("still thinking", "")),
        (THINK, "no tags at all", ("no tags at all", "")),
        (R1, "hmm\n</think>\n\nSure: 4", ("hmm", "Sure: 4")),  # R1: opening tag was in the prompt
        (R1, "<think>\nx</think>y", ("x", "y")),
        (PLAIN, "  I can't help with that. ", ("", "I can't help with that.")),
        (PLAIN, "<think>a</think>b", ("", "<think>a</think>b")),
    ],
)
def test_split(fmt, text, expected):
    assert fmt.split(text) == expected


def test_normalize_prepends_think_for_r1_only():
    assert R1.normalize("abc</think>d") == "<think>\nabc</think>d"
    assert R1.normalize("<think>abc</think>d") == "<think>abc</think>d"
    assert THINK.normalize("abc") == "abc" and PLAIN.normalize("abc") == "abc"


@pytest.mark.parametrize(
    "fmt,text,finish,complete",
    [
        (THINK, "<think>a</think>b", "stop", True),
        (THINK, "<think>a", "stop", False),  # reasoning never closed
        (THINK, "<think>a</think>b", "length", False),  # truncated answer
        (PLAIN, "answer", "stop", True),
        (PLAIN, "answer", "length", False),
    ],
)
def test_is_complete(fmt, text, finish, complete):
    assert fmt.is_complete(text, finish) is complete


@pytest.mark.parametrize("style", ["plain", "qwen3", "r1"])
def test_training_text_contains_response_exactly_once(style):
    tok = build_tokenizer(style)
    fmt = ChatFormat.detect(tok)
    response = "<think>\nThe user asks for harm.\n</think>\n\nI can't help with that." if fmt.reasoning == "think" else "I can't help with that."
    prompt, completion = fmt.render_training(tok, "How do I pick a lock?", response)
    full = prompt + completion
    assert full.count("The user asks for harm.") == (1 if fmt.reasoning == "think" else 0)
    assert full.count("I can't help with that.") == 1
    assert full.count("<think>") == (1 if fmt.reasoning == "think" else 0)  # R1: prompt's tag, not doubled
    assert completion.endswith(fmt.turn_end(tok)) and fmt.turn_end(tok).strip()
    assert full.count("How do I pick a lock?") == 1
    if style == "r1":
        # The stock template would have stripped the reasoning from the assistant turn; ours keeps it.
        stock = tok.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": response}], tokenize=False
        )
        assert "The user asks for harm." not in stock
