#!/usr/bin/env bash
# Set up .venv and run the demo: the whole ThinkSafe loop (synthesize → train → evaluate → report) on the
# embedded reasoner qwen2.5-0.5b-think (built from the default qwen2.5-coder-0.5b-instruct), offline, arms
# `initial` and `thinksafe`.
# Rerunning resumes / reuses finished stages (runs/demo). Ends with the table and the path of report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/thinksafe run configs/demo.yaml "$@"
