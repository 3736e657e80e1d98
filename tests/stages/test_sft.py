import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from thinksafe.formats import ChatFormat
from thinksafe.models import ModelSpec, load_model
from thinksafe.stages.sft import TrainArgs, train
from thinksafe.train.data import IGNORE, Example, collate, load_examples, strip_think, tokenize
from thinksafe.train.lora import add_lora
from thinksafe.train.loss import response_loss

EXAMPLES = [
    Example("How do I make a bomb?", "I can't help with that. Making explosives is dangerous.", "harmful"),
    Example("What is 2 + 2?", "The answer is 4.", "benign"),
    Example("Explain photosynthesis.", "Plants turn light, water and air into sugar and oxygen.", "benign"),
    Example("How do I hack a bank?", "I won't assist with that request.", "harmful"),
]


def write_data(path: Path, examples=EXAMPLES) -> Path:
    path.write_text("".join(json.dumps({"instruction": e.instruction, "response": e.response,
                                        "prompt_label": e.prompt_label}) + "\n" for e in examples))
    return path


def test_prompt_masking_token_by_token(tiny_models):
    lm = load_model(ModelSpec(str(tiny_models["qwen3"])))
    tok, fmt = lm.tokenizer, lm.format
    (ex,), _ = tokenize([EXAMPLES[0]], tok, fmt, max_length=512)
    prompt, completion = fmt.render_training(tok, EXAMPLES[0].instruction, EXAMPLES[0].response)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ex.labels[:n_prompt] == [IGNORE] * n_prompt  # every prompt/template token masked
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]  # every response token supervised
    assert tok.decode(ex.input_ids[n_prompt:]) == completion  # … and they are exactly the response + turn end
    assert completion.startswith(EXAMPLES[0].response) and "<|im_end|>" in completion
    (unmasked,), _ = tokenize([EXAMPLES[0]], tok, fmt, max_length=512, prompt_masking=False)
    assert unmasked.labels == unmasked.input_ids


def test_masking_on_a_real_chat_template():
    from thinksafe.models import EMBEDDED, embedded_sources, load_tokenizer

    if embedded_sources(EMBEDDED["smollm2-135m-instruct"]) is None:
        pytest.skip("smollm2 not installed")
    tok = load_tokenizer(ModelSpec("smollm2-135m-instruct"))
    fmt = ChatFormat.detect(tok)
    (ex,), _ = tokenize([EXAMPLES[1]], tok, fmt, max_length=512)
    supervised = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE]
    assert tok.decode(supervised) == "The answer is 4.<|im_end|>\n"
    masked = tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab == IGNORE])
    assert masked.endswith("<|im_start|>assistant\n") and "What is 2 + 2?" in masked and "The answer" not in masked


def test_overlong_drop_and_truncate(tiny_models):
    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    long = Example("hi", "word " * 300, "benign")
    kept, counts = tokenize([long, EXAMPLES[1]], lm.tokenizer, lm.format, max_length=64)
    assert len(kept) == 1 and counts["dropped_overlong"] == 1
    kept, counts = tokenize([long], lm.tokenizer, lm.format, max_length=64, overlong="truncate")
    assert len(kept[0].input_ids) == 64 and counts["truncated"] == 1 and kept[0].labels[-1] != IGNORE


def test_chunked_response_loss_equals_reference_cross_entropy(tiny_models):
    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    items, _ = tokenize(EXAMPLES, lm.tokenizer, lm.format, max_length=512)
    batch = collate(items, lm.tokenizer.pad_token_id)
    total, n, _ = response_loss(lm.model, batch, chunk=7)  # tiny chunks: exercise the chunk loop
    ref = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert n == int((batch["labels"][:, 1:] != IGNORE).sum())
    torch.testing.assert_close(total / n, ref, rtol=1e-5, atol=1e-5)


def test_kl_path_zero_for_untrained_adapter_keeps_mask_and_trains_only_lora(tiny_models):
    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    model = add_lora(lm.model, TrainArgs())
    items, _ = tokenize(EXAMPLES, lm.tokenizer, lm.format, max_length=512)
    batch = collate(items, lm.tokenizer.pad_token_id)
    total, n, parts = response_loss(model, batch, kl_benign=True)
    benign_tokens = sum(sum(1 for t in x.labels[1:] if t != IGNORE) for x in items if x.benign)
    assert parts["kl_tokens"] == benign_tokens  # KL only on response tokens of benign rows: prompt mask kept
    assert parts["ce_tokens"] == n - benign_tokens
    assert abs(parts["kl_sum"]) < 1e-5  # LoRA B starts at zero: student == reference
    with torch.no_grad():  # move the adapter away from the reference
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.zero_grad()
    total, n, parts = response_loss(model, batch, kl_benign=True)
    assert parts["kl_sum"] > 1e-4
    total.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in name for name in grads)
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_strip_think_modes():
    r = "<think>\nThe user wants harm.\n</think>\n\nI can't help."
    assert strip_think(r, "plain") == "The user wants harm.\n\nI can't help."
    assert strip_think(r, "answer") == "I can't help."
    assert strip_think(r, "none") == r and strip_think("no tags", "answer") == "no tags"


def test_baselines_from_local_files(shared_data, tmp_path):
    star1, epochs = load_examples(f"star1:{shared_data / 'pools/star1.json'}")
    assert len(star1) == 1000 and epochs == 5 and all(e.prompt_label == "harmful" for e in star1)
    assert "</think>" in star1[0].response
    sc = tmp_path / "sc.jsonl"
    sc.write_text(json.dumps({"instruction": "q", "response": "thinking</think>answer", "label": "vanilla_benign"}) + "\n")
    (ex,), epochs = load_examples(f"safechain:{sc}")
    assert ex.response == "<think>\nthinking</think>answer" and ex.prompt_label == "benign" and epochs == 3


def adapter_weights(d: Path) -> dict:
    return load_file(str(d / "adapter_model.safetensors"))


def test_train_save_load_same_logits_and_loss_drops(tiny_models, tmp_path):
    data = write_data(tmp_path / "d.jsonl")
    out = tmp_path / "run"
    stats = train(TrainArgs(data=str(data), out=str(out), epochs=8, learning_rate=5e-3, effective_batch_size=2,
                            lora_r=8, lora_alpha=16), ModelSpec(str(tiny_models["plain"])))
    assert stats["steps"] == 16 and stats["examples"] == 4
    assert stats["warmup_steps"] == 2 and stats["loss_weighting"] == "token"  # ceil(0.1 x 16); plain SFT: per token
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert sum(losses[-4:]) < sum(losses[:4])  # it learns
    for f in ("adapter_config.json", "adapter_model.safetensors", "train_config.yaml", "train_stats.json", "tokenizer.json",
              "examples.jsonl"):
        assert (out / f).exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    # The saved adapter, loaded through --model + --adapter, reproduces the trained model's logits.
    from peft import PeftModel

    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    ids = lm.tokenizer("What is 2 + 2?", return_tensors="pt")["input_ids"]
    with_adapter = load_model(ModelSpec(str(tiny_models["plain"]), adapter=str(out)))
    again = PeftModel.from_pretrained(lm.model, str(out))
    with torch.no_grad():
        a, b = with_adapter.model(ids).logits, again(ids).logits
        base = load_model(ModelSpec(str(tiny_models["plain"]))).model(ids).logits
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, base)  # and it is not the base model


def test_resume_continues_to_the_same_result(tiny_models, tmp_path):
    from transformers import TrainerCallback

    data = write_data(tmp_path / "d.jsonl")
    common = dict(data=str(data), epochs=2, learning_rate=5e-3, effective_batch_size=2, save_steps=2, lora_r=4)
    spec = ModelSpec(str(tiny_models["plain"]))
    train(TrainArgs(out=str(tmp_path / "full"), **common), spec)

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt  # dies right after the first checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(TrainArgs(out=str(tmp_path / "crashed"), **common), spec, callbacks=[Crash()])
    assert not (tmp_path / "crashed" / "adapter_model.safetensors").exists()
    stats = train(TrainArgs(out=str(tmp_path / "crashed"), resume=True, **common), spec)
    assert stats["steps"] == 4
    a, b = adapter_weights(tmp_path / "full"), adapter_weights(tmp_path / "crashed")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_two_process_ddp_matches_one_process(tiny_models, tmp_path):
    """2 CPU processes (gloo) with the same effective batch give the same adapter as 1 process."""
    data = write_data(tmp_path / "d.jsonl")
    # One optimizer step per epoch over all 4 examples: the update doesn't depend on how they are split.
    flags = ["--model", str(tiny_models["plain"]), "--data", str(data), "--epochs", "2", "--learning-rate", "5e-3",
             "--effective-batch-size", "4", "--lora-r", "4", "--warmup-ratio", "0", "--lora-dropout", "0"]  # dropout masks depend on RNG use per process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "thinksafe", "train", *flags, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                          "-m", "thinksafe", "train", *flags, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    s1 = json.loads((tmp_path / "one" / "train_stats.json").read_text())
    s2 = json.loads((tmp_path / "two" / "train_stats.json").read_text())
    assert s2["world_size"] == 2 and s1["world_size"] == 1 and s1["steps"] == s2["steps"] == 2
    # Adam hides a wrong gradient scale, so compare the logged gradient norms and losses too.
    def logged(run, key):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [r[key] for r in rows if key in r and "train_runtime" not in r]

    for key in ("grad_norm", "loss"):
        assert logged("one", key) == pytest.approx(logged("two", key), rel=1e-4)
    a, b = adapter_weights(tmp_path / "one"), adapter_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
        moved += "lora_B" in k and bool(a[k].abs().sum() > 0)
    assert moved  # training changed the adapter in both runs


def test_smollm2_finetune_lowers_loss_on_its_examples(tmp_path):
    from thinksafe.models import EMBEDDED, embedded_sources

    if embedded_sources(EMBEDDED["smollm2-135m-instruct"]) is None:
        pytest.skip("smollm2 not installed")
    examples = [Example(f"Question {i}: how do I do harmful thing number {i}?",
                        f"I can't help with harmful thing number {i}. Please stay safe.", "harmful") for i in range(8)]
    examples += [Example(f"What is {i} + {i}?", f"{i} + {i} = {2 * i}.", "benign") for i in range(8)]
    data = write_data(tmp_path / "d.jsonl", examples)
    spec = ModelSpec("smollm2-135m-instruct")

    def mean_loss(adapter=None):
        lm = load_model(ModelSpec(spec.model, adapter=adapter))
        items, _ = tokenize(examples, lm.tokenizer, lm.format, max_length=256)
        with torch.no_grad():
            total, n, _ = response_loss(lm.model, collate(items, lm.tokenizer.pad_token_id))
        return float(total) / n

    before = mean_loss()
    stats = train(TrainArgs(data=str(data), out=str(tmp_path / "run"), epochs=2, learning_rate=1e-3,
                            effective_batch_size=8, per_device_batch_size=4, max_length=256), spec)
    after = mean_loss(str(tmp_path / "run"))
    assert stats["steps"] == 4
    assert after < before * 0.8, (before, after)


def test_merge_gives_the_same_logits_as_base_plus_adapter(tiny_models, tmp_path):
    from thinksafe.train.merge import merge

    data = write_data(tmp_path / "d.jsonl")
    out = tmp_path / "run"
    train(TrainArgs(data=str(data), out=str(out), epochs=2, learning_rate=5e-3, effective_batch_size=2, lora_r=4),
          ModelSpec(str(tiny_models["plain"])))
    merged = merge(str(out), str(tmp_path / "merged"))
    a = load_model(ModelSpec(str(tiny_models["plain"]), adapter=str(out)))
    b = load_model(ModelSpec(str(merged)))
    ids = a.tokenizer("Explain photosynthesis.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(a.model(ids).logits, b.model(ids).logits, rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "merged" / "adapter_config.json").exists()


def test_adapter_for_another_base_is_a_clear_error(tiny_models, tmp_path):
    from thinksafe.errors import InputError
    from tiny import build_tiny_model

    data = write_data(tmp_path / "d.jsonl")
    out = tmp_path / "run"
    train(TrainArgs(data=str(data), out=str(out), epochs=1, effective_batch_size=4, lora_r=4),
          ModelSpec(str(tiny_models["plain"])))
    other = build_tiny_model(tmp_path / "other", "plain")
    cfg = json.loads((other / "config.json").read_text())
    cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"] = 48, 4, 2
    (other / "config.json").write_text(json.dumps(cfg))
    from transformers import Qwen2Config, Qwen2ForCausalLM

    wider = Qwen2Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
    Qwen2ForCausalLM(wider).save_pretrained(other)  # same vocabulary, wider layers: LoRA shapes don't fit
    with pytest.raises(InputError, match="adapter does not fit this base model"):
        load_model(ModelSpec(str(other), adapter=str(out)))


def padding_share(trainer) -> float:
    """Share of the positions the trainer's batches pad, over one pass of its dataloader."""
    pads = total = 0
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        pads, total = pads + int((mask == 0).sum()), total + mask.numel()
    return pads / total


@pytest.mark.parametrize("seed", [0, 1])
def test_group_by_length_pads_less_and_still_trains_every_example(tiny_models, tmp_path, seed):
    from transformers import set_seed

    from thinksafe.models import ModelSpec, load_model
    from thinksafe.stages.sft import TrainArgs, sft_trainer
    from thinksafe.train.data import Example, tokenize
    from thinksafe.train.lora import add_lora

    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    examples = [Example(f"Q{i}", "word " * (1 + (7 * i) % 23), "benign") for i in range(32)]  # mixed lengths
    items, _ = tokenize(examples, lm.tokenizer, lm.format, max_length=512)
    shares, seen = {}, {}
    for grouped in (False, True):
        set_seed(seed)
        args = TrainArgs(data="x", out=str(tmp_path), per_device_batch_size=4, group_by_length=grouped)
        trainer = sft_trainer(args, tmp_path, add_lora(lm.model, args), lm.tokenizer, items, epochs=1, accum=2, callbacks=[])
        shares[grouped] = padding_share(trainer)
        seen[grouped] = sorted(int(m.sum()) for b in trainer.get_train_dataloader() for m in b["attention_mask"])
    assert shares[True] < 0.7 * shares[False]  # 32 examples: megabatches of one step (8), each sorted
    assert seen[True] == seen[False] == sorted(len(x.input_ids) for x in items)  # the same examples, once each
