"""thinksafe: restore a reasoning model's safety with its own steered refusals (ThinkSafe, arXiv 2601.23143).

The pipeline reads as its layout: stages/ (prompts → synthesize → train | grpo → evaluate → curve → shift),
each built on generate/, judge/, train/ and evaluate/; pipeline/ runs arms × stages; report/ shows a run.
"""

from thinksafe.errors import ConfigError, InputError, MissingDependency, ThinksafeError
from thinksafe.formats import ChatFormat
from thinksafe.generate import SamplingParams, make_generator
from thinksafe.models import ModelSpec, load_model, load_tokenizer, resolve_model
from thinksafe.prompts import load_prompts
from thinksafe.records import Completion, Generation, Prompt, Verdict

__version__ = "0.1.0"

__all__ = [
    "ChatFormat",
    "Completion",
    "ConfigError",
    "Generation",
    "InputError",
    "MissingDependency",
    "ModelSpec",
    "Prompt",
    "SamplingParams",
    "ThinksafeError",
    "Verdict",
    "load_model",
    "load_prompts",
    "load_tokenizer",
    "make_generator",
    "resolve_model",
]
