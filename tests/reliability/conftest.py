import pytest


@pytest.fixture(scope="session")
def stopping_model(tmp_path_factory):
    """A tiny random model that ends about half of its sampled responses within a few tokens."""
    from reliability_kit import build_stopping_model

    return build_stopping_model(tmp_path_factory.mktemp("stopping") / "m")


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory):
    """A --data-dir with made-up strongreject / xstest / gsm8k files in the reference layout."""
    from reliability_kit import write_bench_data

    return write_bench_data(tmp_path_factory.mktemp("benchdata"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """In-process model runs: one thread is fastest for tiny models on a busy 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def foreign_adapter(tmp_path_factory):
    """A LoRA adapter trained on another base model (hidden size 48, not 32): it must not load on ours."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tiny import build_tokenizer

    tok = build_tokenizer("plain")
    torch.manual_seed(1)
    base = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    path = tmp_path_factory.mktemp("foreign") / "adapter"
    model.save_pretrained(path)
    return path
