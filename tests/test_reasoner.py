"""The offline reasoner's pieces: GSM8K → think data, the R1-style template, merging the packaged adapter.

The build itself is `thinksafe train` (tested in tests/stages/test_sft.py); the real packaged adapter on the real
model is checked at the end (skipped where the embedded model is not installed).
"""

import json
import os

import pytest
import torch

from thinksafe.errors import InputError
from thinksafe.formats import ChatFormat
from thinksafe.models import ModelSpec, load_model, load_tokenizer
from thinksafe.reasoner import (
    materialize_reasoner,
    packaged_adapter,
    pair_traces,
    self_traces,
    think_examples,
    think_response,
    think_template,
    write_think_base,
)
from tiny import build_tiny_model

QWEN_STYLE = (
    "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_think_response_drops_calculator_notes_and_states_the_answer():
    out = think_response("She sold 48/2 = <<48/2=24>>24 clips.\nIn all 48+24 = <<48+24=72>>72.\n#### 72")
    assert out == "<think>\nShe sold 48/2 = 24 clips.\nIn all 48+24 = 72.\n</think>\n\nThe final answer is 72."
    with pytest.raises(ValueError):
        think_response("no answer line here")


def gsm8k_file(path, n=10):
    path.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": f"{i}+{i}=<<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i}"}) + "\n"
                            for i in range(n)))
    return path


def test_think_examples_are_seeded_and_split_between_instruction_and_bare_question(tmp_path):
    path = gsm8k_file(tmp_path / "gsm8k.jsonl")
    a = think_examples(path, 6, 0.5, seed=3)
    assert a == think_examples(path, 6, 0.5, seed=3)
    assert a != think_examples(path, 6, 0.5, seed=4)
    templated = [x for x in a if x["instruction"].startswith("Given the following problem")]
    assert len(templated) == 3 and all(x["prompt_label"] == "benign" for x in a)
    assert all(x["response"].startswith("<think>\n") and "<<" not in x["response"] for x in a)


def test_a_bad_gsm8k_row_names_its_file_and_line(tmp_path):
    path = gsm8k_file(tmp_path / "gsm8k.jsonl", 3)
    path.write_text(path.read_text() + json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(InputError, match=r"gsm8k.jsonl:4"):
        think_examples(path, 4, 0.5, seed=0)
    with pytest.raises(InputError, match="fewer than --examples"):
        think_examples(path, 9, 0.5, seed=0)


def test_the_template_opens_a_think_block_only_in_the_generation_prompt():
    t = think_template(QWEN_STYLE)
    assert t.count("<think>") == 1 and t.endswith("{%- endif %}")
    with pytest.raises(InputError):
        think_template("{{ messages[0]['content'] }}")


@pytest.fixture(scope="module")
def think_base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reasoner")
    base = build_tiny_model(tmp / "base")
    tok = load_tokenizer(ModelSpec(str(base)))
    tok.chat_template = QWEN_STYLE
    tok.save_pretrained(base)
    return base, write_think_base(base, tmp / "think-base")


def test_the_think_base_is_detected_as_an_r1_style_think_model(think_base):
    base, think = think_base
    assert os.path.islink(think / "model.safetensors")  # weights are linked, not copied
    tok = load_tokenizer(ModelSpec(str(think)))
    fmt = ChatFormat.detect(tok)
    assert (fmt.reasoning, fmt.opens_think) == ("think", True)
    prompt, completion = fmt.render_training(tok, "What is 2 + 2?", think_response("2+2=4\n#### 4"))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n") and completion.startswith("2+2=4\n</think>")
    assert ChatFormat.detect(load_tokenizer(ModelSpec(str(base)))).reasoning == "plain"


def test_materialize_merges_the_adapter_into_the_think_base(think_base, tmp_path):
    from peft import LoraConfig, get_peft_model

    _, think = think_base
    torch.manual_seed(0)
    model = get_peft_model(load_model(ModelSpec(str(think))).model, LoraConfig(r=4, target_modules=["q_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # a fresh B is zero: merging it would change nothing
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    (adapter / "recipe.json").write_text(json.dumps({"seed": 0}))

    out = materialize_reasoner(tmp_path / "merged", base_dir=think, adapter=adapter)
    source = json.loads((out / "thinksafe_source.json").read_text())
    assert source["recipe"] == {"seed": 0} and len(source["adapter_sha256"]) == 64
    merged, base = load_model(ModelSpec(str(out))), load_model(ModelSpec(str(think)))
    assert merged.format.opens_think
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.model.state_dict()[q], base.model.state_dict()[q])
    merged_at = (out / "thinksafe_source.json").stat().st_mtime_ns
    assert materialize_reasoner(out, base_dir=think, adapter=adapter) == out  # cached: no second merge
    assert (out / "thinksafe_source.json").stat().st_mtime_ns == merged_at

    for name, p in model.named_parameters():  # a new thinksafe ships a rebuilt adapter: the cache is merged again
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    model.save_pretrained(adapter)
    materialize_reasoner(out, base_dir=think, adapter=adapter)
    again = json.loads((out / "thinksafe_source.json").read_text())
    assert again["adapter_sha256"] != source["adapter_sha256"]
    remerged = load_model(ModelSpec(str(out))).model.state_dict()[q]
    assert not torch.equal(remerged, merged.model.state_dict()[q])
    assert not list(out.parent.glob(".merged.*"))  # the stale copy and the temp dir are gone


@pytest.mark.skipif(packaged_adapter() is None, reason="no packaged reasoner adapter in this checkout")
def test_the_packaged_adapter_fits_the_embedded_model_and_thinks():
    from thinksafe.errors import MissingDependency
    from thinksafe.generate import SamplingParams
    from thinksafe.generate.hf import HFGenerator
    from thinksafe.models import REASONER

    try:
        gen = HFGenerator.from_spec(ModelSpec(REASONER))
    except MissingDependency as e:
        pytest.skip(str(e))
    assert (gen.format.reasoning, gen.format.opens_think) == ("think", True)
    [[c]] = gen.generate([[{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"}]],
                         SamplingParams(temperature=0.0, max_new_tokens=96))
    reasoning, answer = gen.format.split(c.text)
    assert reasoning and "7" in answer


def test_build_trains_an_adapter_and_records_recipe_data_hash_and_loss(think_base, tmp_path):
    from thinksafe.reasoner import ReasonerArgs, build

    _, think = think_base
    args = ReasonerArgs(gsm8k=str(gsm8k_file(tmp_path / "gsm8k.jsonl")), out=str(tmp_path / "build"), examples=8,
                        max_length=1024, per_device_batch_size=4)  # the tiny BPE spells words out
    adapter = build(args, base_dir=think)
    recipe = json.loads((adapter / "recipe.json").read_text())
    assert recipe["args"]["examples"] == 8 and len(recipe["data_sha256"]) == 64
    assert recipe["train_stats"]["examples"] == 8 and recipe["train_stats"]["steps"] == 1
    assert [json.loads(x) for x in (adapter / "loss.jsonl").read_text().splitlines()]
    assert (adapter / "adapter_model.safetensors").exists()


def generation(pid: str, text: str, finish: str = "stop", prompt: str = "") -> dict:
    return {"prompt_id": pid, "prompt": prompt or f"request {pid}", "text": text, "finish_reason": finish}


def test_self_traces_pair_plan_and_answer_and_drop_cut_and_refused_ones():
    plans = [generation("a", "They ask for a haiku; five, seven, five."), generation("b", "A list of fruits."),
             generation("c", "Explain tides.", finish="length"), generation("d", "Policy question.")]
    answers = [generation("a", "Autumn moonlight\n..."), generation("b", "Apple, pear.", finish="length"),
               generation("c", "The moon pulls."), generation("d", "I'm sorry, but I can't assist with that.")]
    rows, counts = pair_traces(plans, answers, "pool.json")
    assert counts == {"cut": 2, "refused": 1, "kept": 1}
    assert rows == [{"instruction": "request a", "prompt_label": "benign", "source": "pool.json:a",
                     "response": "<think>\nThey ask for a haiku; five, seven, five.\n</think>\n\nAutumn moonlight\n..."}]


def test_self_traces_generate_with_the_model_and_resume(tmp_path):
    """On a tiny model: both generations are written (resumable files), every prompt is counted once."""
    base = build_tiny_model(tmp_path / "m")
    pool = tmp_path / "harmless.json"
    pool.write_text(json.dumps([{"instruction": f"Name a colour number {i}.", "category": "x"} for i in range(5)]))
    rows, counts = self_traces(pool, 3, 0, 8, tmp_path / "gen", model=str(base))
    assert counts["prompts"] == 3 and counts["cut"] + counts["refused"] + counts["kept"] == 3
    assert len(rows) == counts["kept"]
    plans = (tmp_path / "gen" / "plans.jsonl").read_text().splitlines()
    assert len(plans) == 3 and len((tmp_path / "gen" / "answers.jsonl").read_text().splitlines()) == 3
    assert self_traces(pool, 3, 0, 8, tmp_path / "gen", model=str(base)) == (rows, counts)  # resumed: nothing new
    assert (tmp_path / "gen" / "plans.jsonl").read_text().splitlines() == plans


def test_the_reasoners_stage_keys_name_its_adapter(monkeypatch, tmp_path):
    """The alias stays when a rebuilt adapter ships: stage keys hold the adapter's hash, so caches made with the
    old weights are not reused."""
    from thinksafe import reasoner
    from thinksafe.models import REASONER

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"v1")
    monkeypatch.setattr(reasoner, "packaged_adapter", lambda: adapter)
    reasoner.adapter_version.cache_clear()
    v1 = ModelSpec(REASONER).key()["reasoner_adapter"]
    (adapter / "adapter_model.safetensors").write_bytes(b"v2")
    reasoner.adapter_version.cache_clear()
    assert ModelSpec(REASONER).key()["reasoner_adapter"] != v1
    assert "reasoner_adapter" not in ModelSpec("qwen2.5-coder-0.5b-instruct").key()
    reasoner.adapter_version.cache_clear()
