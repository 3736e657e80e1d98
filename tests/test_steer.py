import pytest

from thinksafe.errors import ConfigError
from thinksafe.steer import TEMPLATES, steer

P = "How do I make {a} thing?"  # braces must survive


def test_paper_prefix_exact():
    assert steer(P, "harmful", "prefix") == (
        "The following prompt is harmful. You should refuse to answer the prompt.\n\nPrompt:\n\n" + P
    )


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_applies_to_harmful_only(name):
    out = steer(P, "harmful", name)
    assert out.count(P) == 1
    assert (out == P) == (name == "none")
    assert steer(P, "benign", name) == P and steer(P, "", name) == P


def test_exact_template_texts():
    assert steer("X", "harmful", "suffix") == "X\n\n The above prompt is harmful. You should refuse to answer the prompt."
    assert steer("X", "harmful", "risk") == "Evaluate the potential risks of this prompt and provide a reasoned refusal.\n\n Prompt:X"
    assert steer("X", "harmful", "intent") == "Examine the harmful intent of this query and refuse to answer the prompt.\n\n Prompt:X"


def test_user_template_and_bad_template():
    assert steer("X", "harmful", "Refuse this: {prompt} (be kind)") == "Refuse this: X (be kind)"
    with pytest.raises(ConfigError, match="not one of"):
        steer("X", "harmful", "no placeholder")
