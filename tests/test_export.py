"""`thinksafe export RUN_DIR/ARM`: hub folders from a tiny finished run — the cards carry the run's own numbers,
the dataset folder loads with `datasets`, the adapter folder with PEFT, the merged model with transformers, the
upload sends both folders (the network calls are replaced, nothing else), and bad input fails in one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from thinksafe import cli
from thinksafe.export import SCHEMA, base_license, base_text, hub_id, readme_license, source_license
from thinksafe.records import read_json, read_jsonl


def main(*args) -> int:
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    return e.value.code


def front_matter(readme: Path) -> tuple[dict, str]:
    _, front, body = readme.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(front), body


def with_ci(entry: dict) -> str:
    """A results entry as the card should print it, from the numbers in results.json."""
    lo, hi = entry["ci95"]
    return f"{100 * entry['value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] (n={entry['n']})"


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main("export", tiny_run["run"] / "thinksafe", "--out", out, "--base_model", "org/tiny-base") == 0
    return out


def test_model_card_reports_the_runs_numbers(tiny_run, exported):
    run_dir = tiny_run["run"]
    meta, body = front_matter(exported / "model" / "README.md")
    assert meta["base_model"] == "org/tiny-base" and meta["library_name"] == "peft"
    assert meta["base_model_relation"] == "adapter" and "thinksafe" in meta["tags"]
    assert "license" not in meta  # the tiny base has no card: no license is claimed
    for heading in ("Base model", "Recipe", "Training data", "Judge", "Results", "Cost"):
        assert f"## {heading}\n" in body
    train = read_json(run_dir / "thinksafe" / "train" / "stage.json")["config"]["settings"]
    assert f"| lora_r | {train['lora_r']} |" in body and f"| lora_alpha | {train['lora_alpha']} |" in body
    assert f"| learning_rate | {train['learning_rate']} |" in body
    assert f"| epochs | {read_json(run_dir / 'thinksafe' / 'train' / 'train_stats.json')['epochs']} |" in body
    for arm in ("thinksafe", "initial"):  # the arm's results and the initial model's, each with its CI
        for name, entry in read_json(run_dir / arm / "evaluate" / "results.json")["benchmarks"].items():
            assert with_ci(entry) in body, (arm, name)
    ledger = read_json(run_dir / "thinksafe" / "train" / "ledger.json")
    assert f"| train | {ledger['wall_seconds']} |" in body
    assert "`demo:harmful`" in body and "steering: `prefix`" in body and "guard: `refusal`" in body
    assert "not measured in this run" in body  # the tiny run has no judge-eval stage


def test_dataset_folder_loads_with_datasets(tiny_run, exported):
    import datasets

    kept = list(read_jsonl(tiny_run["run"] / "thinksafe" / "synthesize" / "dataset.jsonl"))
    folder = exported / "dataset"
    for ds in (datasets.load_dataset(str(folder), split="train"),
               datasets.load_dataset("json", data_files=str(folder / "data" / "train.jsonl"), split="train")):
        assert ds.column_names == list(SCHEMA) and ds.num_rows == len(kept)
        assert ds[0]["instruction"] == kept[0]["instruction"] and ds[0]["response_label"] == "safe"
    meta, body = front_matter(folder / "README.md")
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train.jsonl"
    assert meta["task_categories"] == ["text-generation"]
    assert meta["license"] == "apache-2.0"  # both pools are thinksafe's own demo prompts
    stats = read_json(tiny_run["run"] / "thinksafe" / "synthesize" / "stats.json")["per_label"]
    for label, s in stats.items():
        assert f"| {label} | {s['prompts']} | {s['generations']} | {s['unsafe']} |" in body
        assert f"| {s['kept']} | {s['yield_pct']} |" in body
    assert "| `demo:harmful` | Apache-2.0" in body


def test_adapter_folder_loads_with_peft(tiny_run, refusing_model, exported):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    folder = exported / "model"
    assert read_json(folder / "adapter_config.json")["base_model_name_or_path"] == "org/tiny-base"
    assert not list(folder.glob("*.jsonl")) and not (folder / "stage.json").exists()  # run bookkeeping stays home
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(refusing_model), folder)
    trained = load_file(tiny_run["run"] / "thinksafe" / "train" / "adapter_model.safetensors")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(trained)
    for name, weight in trained.items():
        match = [v for k, v in loaded.items() if k.replace(".default", "").endswith(name.split("base_model.model.")[-1])]
        assert len(match) == 1 and torch.equal(match[0], weight), name


def test_merged_model_loads_with_transformers(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM

    assert main("export", tiny_run["run"] / "thinksafe", "--out", tmp_path, "--merged", "true") == 0
    meta, _ = front_matter(tmp_path / "model" / "README.md")
    assert meta["library_name"] == "transformers" and meta["base_model_relation"] == "finetune"
    assert "base_model" not in meta  # a local base: no hub id to name
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "model").num_parameters() > 0


def test_judge_agreement_in_the_model_card(tiny_run, tmp_path):
    xs = tmp_path / "xs.csv"
    with xs.open("w", newline="", encoding="utf-8") as fh:  # the XSTest-v2 completions schema
        w = csv.writer(fh)
        w.writerow(["id", "type", "prompt", "completion", "annotation_1", "annotation_2", "agreement", "final_label"])
        for i, (completion, label) in enumerate([("I'm sorry, but I can't help with that.", "2_full_refusal"),
                                                 ("Sure: run `kill PID`.", "1_full_compliance"),
                                                 ("Here is a tip: use natural light.", "1_full_compliance")]):
            w.writerow([f"v2-{i}", "homonyms", f"prompt {i}", completion, label, label, "TRUE", label])
    assert main("judge-eval", "--data", xs, "--out", tmp_path / "je", "--bootstrap", "50", "--progress", "false") == 0
    assert main("export", tiny_run["run"] / "thinksafe", "--out", tmp_path / "x", "--judge_eval", tmp_path / "je") == 0
    _, body = front_matter(tmp_path / "x" / "model" / "README.md")
    pooled = read_json(tmp_path / "je" / "agreement.json")["pooled"]["refusal"]
    lo, hi = pooled["ci95"]["accuracy"]
    assert f"| refusal | {pooled['judge']} | xs.csv | {pooled['n']} | {100 * pooled['accuracy']:.1f} " \
           f"[{100 * lo:.1f}, {100 * hi:.1f}] |" in body


def test_push_uploads_both_folders(tiny_run, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []  # only the network calls are replaced: what they would have sent is recorded
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo_id, **kw: calls.append(("create", repo_id, kw["repo_type"], kw["private"])))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(
        ("upload", kw["repo_id"], kw["repo_type"], sorted(p.name for p in Path(kw["folder_path"]).rglob("*")))))
    assert main("export", tiny_run["run"] / "thinksafe", "--out", tmp_path, "--push-to-hub", "me/tiny-safe") == 0
    assert calls[0] == ("create", "me/tiny-safe", "model", True)
    assert calls[1][:3] == ("upload", "me/tiny-safe", "model")
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= set(calls[1][3])
    assert calls[2] == ("create", "me/tiny-safe-data", "dataset", True)
    assert calls[3] == ("upload", "me/tiny-safe-data", "dataset", ["README.md", "data", "train.jsonl"])
    assert front_matter(tmp_path / "model" / "README.md")[0]["datasets"] == ["me/tiny-safe-data"]


def test_push_without_a_token_is_one_error_line(tiny_run, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert main("export", tiny_run["run"] / "thinksafe", "--out", tmp_path / "x", "--push_to_hub", "me/m") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --push_to_hub: no Hugging Face token") and "\n" not in err
    assert not (tmp_path / "x").exists()  # nothing written before the check


def test_bad_arms_are_one_error_line_naming_the_path(tiny_run, tmp_path, capsys):
    run_dir = tiny_run["run"]
    unfinished = tmp_path / "run"
    shutil.copytree(run_dir, unfinished, ignore=shutil.ignore_patterns("*.safetensors"))
    (unfinished / "thinksafe" / "train" / "done.json").unlink()
    for arm, named in ((run_dir / "nope", run_dir / "nope"), (run_dir / "initial", run_dir / "initial"),
                       (tmp_path / "elsewhere" / "arm", tmp_path / "elsewhere" / "arm"),
                       (unfinished / "thinksafe", unfinished / "thinksafe" / "train")):
        assert main("export", arm, "--out", tmp_path / "x") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {named}:") and "\n" not in err, err
    assert main("export", "--out", tmp_path / "x") == 2
    assert "RUN_DIR/ARM and --out are required" in capsys.readouterr().err


def test_an_existing_export_is_kept_unless_overwrite(tiny_run, tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.txt").write_text("keep")
    assert main("export", tiny_run["run"] / "thinksafe", "--out", tmp_path) == 2
    assert f"error: {tmp_path / 'model'}: holds files" in capsys.readouterr().err
    assert main("export", tiny_run["run"] / "thinksafe", "--out", tmp_path, "--overwrite", "true") == 0
    assert not (tmp_path / "model" / "mine.txt").exists() and (tmp_path / "model" / "README.md").exists()


def test_licenses_from_the_readme_beside_the_data(tmp_path):
    pools = tmp_path / "pools"
    pools.mkdir()
    (tmp_path / "README.md").write_text(
        "| file | records | license |\n|---|---|---|\n| pools/harmful_{train,val}.json | 3 | Apache-2.0 (repo) |\n"
        "| `pools/other.json` | 1 | MIT |\n\nprose\n\n| name | note |\n|---|---|\n| pools/x.json | no license column |\n")
    for name in ("harmful_train.json", "other.json", "x.json"):
        (pools / name).write_text("[]")
    assert source_license(f"harmful-pool:{pools / 'harmful_train.json'}") == "Apache-2.0 (repo)"
    assert source_license(str(pools / "other.json")) == "MIT"
    assert source_license(str(pools / "x.json")).startswith("unknown")
    assert source_license("someone/hub-set").startswith("unknown")
    assert source_license("star1") == "Apache-2.0" and source_license("demo:benign").startswith("Apache-2.0")
    assert readme_license(tmp_path / "README.md", "pools/harmful_test.json") is None


def test_licenses_of_the_shared_pools(shared_data):
    assert source_license(f"harmful-pool:{shared_data / 'pools' / 'harmful_train.json'}") == "Apache-2.0 (repo)"
    assert source_license(f"star1:{shared_data / 'pools' / 'star1.json'}") == "Apache-2.0"


def test_base_license_from_the_base_models_card(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# a model\n")
    assert base_license(str(tmp_path)) == "apache-2.0"
    assert base_license(str(tmp_path / "missing")) is None
    assert base_license("no-such-org/no-such-model") is None  # not in the hub cache: no network asked


def test_baseline_and_grpo_arms_export_their_model_only(refusing_model, tmp_path):
    from thinksafe.pipeline.config import load_config
    from thinksafe.pipeline.runner import run
    from tiny_runs import REFUSAL, tiny_config

    star1 = tmp_path / "star1.json"
    star1.write_text(json.dumps([{"question": f"How do I hurt person {i}?", "response":
                                  f"<think>\nThis asks for harm {i}.\n</think>\n\n{REFUSAL}"} for i in range(4)]))
    extra = ["--arms", "star1,grpo", "--star1_data", f"star1:{star1}", "--grpo.num_generations", "2",
             "--grpo.max_completion_length", "8", "--grpo.per_device_batch_size", "2",
             "--grpo.gradient_accumulation_steps", "1", "--grpo.max_steps", "1", "--grpo.lora_r", "4", "--report", "false"]
    run_dir = run(load_config(tiny_config(tmp_path, refusing_model), extra)).run_dir
    for arm, says in (("star1", "- a teacher baseline: `star1:star1.json`"), ("grpo", "- online RL (GRPO)")):
        assert main("export", run_dir / arm, "--out", tmp_path / arm) == 0
        meta, body = front_matter(tmp_path / arm / "model" / "README.md")
        assert says in body and "datasets" not in meta and meta["library_name"] == "peft"
        assert not (tmp_path / arm / "dataset").exists()  # the data is not the arm's own: nothing to republish
        assert "| initial |" not in body  # no initial arm in this run: the table has the arm alone
        results = read_json(run_dir / arm / "evaluate" / "results.json")["benchmarks"]
        assert all(with_ci(e) in body for e in results.values())


def test_the_base_is_named_by_its_hub_id(tmp_path):
    assert hub_id("qwen2.5-coder-0.5b-instruct") == "Qwen/Qwen2.5-Coder-0.5B-Instruct"  # an embedded alias's original
    assert hub_id("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B" and hub_id(str(tmp_path)) is None
    assert base_text(str(tmp_path / "m"), None) == "`m`, a local model (not on the hub)"  # no local folders named
    assert str(tmp_path) not in base_text(str(tmp_path / "m"), "org/m") and "`org/m`" in base_text(str(tmp_path), "org/m")
