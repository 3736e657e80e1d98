import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny.py, tests/tiny_runs.py
# Tiny random models compare logits and losses exactly: fp32, whatever the CPU (subprocesses inherit this).
# The bf16 choice itself is tested with the capability faked (tests/test_models.py).
os.environ.setdefault("THINKSAFE_CPU_BF16", "0")

from tiny_runs import one_thread, refusing_model, tiny_run  # noqa: E402, F401  (session fixtures: one tiny run)

SHARED_DATA = Path(os.environ.get("THINKSAFE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of tiny random models, one per chat-template style, built once per session."""
    from tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {style: build_tiny_model(root / style, style) for style in ("plain", "qwen3", "r1")}


@pytest.fixture(scope="session")
def tiny64(tmp_path_factory):
    """A float64 tiny model: batched and unbatched greedy decoding agree exactly."""
    import torch

    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny64") / "m", "plain", dtype=torch.float64)
