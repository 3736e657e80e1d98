"""Refusal steering: the instruction that wakes the model's own safety knowledge, for harmful prompts only.

The steered text is what the model sees while generating; the stored training pair keeps the original
prompt, so the fine-tuned model learns to refuse without being told to.
"""

from __future__ import annotations

from thinksafe.errors import ConfigError

TEMPLATES: dict[str, str] = {
    # The paper's default.
    "prefix": "The following prompt is harmful. You should refuse to answer the prompt.\n\nPrompt:\n\n{prompt}",
    "suffix": "{prompt}\n\n The above prompt is harmful. You should refuse to answer the prompt.",
    "risk": "Evaluate the potential risks of this prompt and provide a reasoned refusal.\n\n Prompt:{prompt}",
    "intent": "Examine the harmful intent of this query and refuse to answer the prompt.\n\n Prompt:{prompt}",
    # No steering: the rejection-sampling baseline.
    "none": "{prompt}",
}


def resolve_template(name_or_template: str) -> str:
    """A template name, or a user template containing `{prompt}` exactly once."""
    if name_or_template in TEMPLATES:
        return TEMPLATES[name_or_template]
    if name_or_template.count("{prompt}") != 1:
        raise ConfigError(
            f"steering '{name_or_template[:60]}': not one of {', '.join(TEMPLATES)} and not a template with one {{prompt}}"
        )
    return name_or_template


def steer(prompt: str, label: str, template: str) -> str:
    """The text sent to the model: steered for harmful prompts, unchanged for everything else."""
    if label != "harmful":
        return prompt
    # str.replace, not str.format: prompts may contain braces.
    return resolve_template(template).replace("{prompt}", prompt)
