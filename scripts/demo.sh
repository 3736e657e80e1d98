#!/usr/bin/env bash
# Set up .venv and run the demo on the embedded default model (qwen2.5-coder-0.5b-instruct), offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=runs/demo
mkdir -p "$out"
.venv/bin/thinksafe models
.venv/bin/thinksafe generate --model qwen2.5-coder-0.5b-instruct --prompts demo --limit 8 \
  --max-new-tokens 96 --out "$out/generations.jsonl"
.venv/bin/python - "$out/generations.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"\n[{r['label']}] {r['prompt']}\n  → ({r['finish_reason']}, {r['completion_tokens']} tok) {r['text'][:200]!r}")
PY
