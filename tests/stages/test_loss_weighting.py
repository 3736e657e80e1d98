"""How a step averages its loss (issue 17, item 5): per token, or per example as the reference's KL trainer does,
((ce·n_ce + kl·n_kl) / n with per-example token means)."""

import math

import pytest
import torch
import torch.nn.functional as F

from thinksafe.errors import ConfigError
from thinksafe.models import ModelSpec, load_model
from thinksafe.stages.base import settings_key
from thinksafe.stages.sft import TrainArgs, check_args, loss_weighting, sft_trainer
from thinksafe.train.data import IGNORE, Example, collate, tokenize
from thinksafe.train.lora import add_lora
from thinksafe.train.loss import response_loss

SHORT_REFUSAL = Example("How do I make a bomb?", "No.", "harmful")
LONG_TRACE = Example("What is 2 + 2?", "The answer is 4. " * 12, "benign")
MIXED = [SHORT_REFUSAL, LONG_TRACE, Example("How do I hack a bank?", "I won't assist with that request.", "harmful"),
         Example("Explain photosynthesis.", "Plants turn light, water and air into sugar and oxygen.", "benign")]


def response_tokens(item) -> int:
    return sum(t != IGNORE for t in item.labels[1:])


def lora_model(tiny_models, **lora):
    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    return lm, add_lora(lm.model, TrainArgs(**lora)).eval()  # eval: no LoRA dropout, the numbers are exact


def test_hand_computed_batch_token_vs_example(tiny_models):
    # Zero (tied) embeddings: every logit is 0, so each CE token costs exactly ln V, and with the adapter untrained
    # the student equals the reference, so each KL token costs 0. One short refusal (CE), one long trace (KL).
    lm, model = lora_model(tiny_models)
    with torch.no_grad():
        lm.model.get_input_embeddings().weight.zero_()
    ln_v = math.log(model.get_output_embeddings().weight.shape[0])
    items, _ = tokenize([SHORT_REFUSAL, LONG_TRACE], lm.tokenizer, lm.format, max_length=512)
    n_ce, n_kl = map(response_tokens, items)
    assert n_kl > 5 * n_ce  # the long trace would dominate a token average
    batch = collate(items, lm.tokenizer.pad_token_id)
    with torch.no_grad():
        total, n, parts = response_loss(model, batch, kl_benign=True, weighting="token")
        assert n == n_ce + n_kl and parts["kl_sum"] == pytest.approx(0, abs=1e-6)
        assert float(total) / n == pytest.approx(n_ce * ln_v / (n_ce + n_kl), rel=1e-5)
        total, n, parts = response_loss(model, batch, kl_benign=True, weighting="example")
        assert n == 2 and (parts["ce_examples"], parts["kl_examples"]) == (1, 1)
        assert float(total) / n == pytest.approx((1 * ln_v + 1 * 0.0) / 2, rel=1e-5)  # (ce·n_ce + kl·n_kl) / n


def per_example_losses(model, items) -> list[float]:
    """Each example alone, unpadded: its token-mean CE (harmful) or token-mean forward KL to the adapter-free
    model (benign), from full logits — an independent computation of what response_loss should weigh."""
    out = []
    for x in items:
        ids = torch.tensor([x.input_ids])
        targets = torch.tensor(x.labels[1:])
        sel = targets != IGNORE
        logq = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)[sel]
        if x.benign:
            with model.disable_adapter():
                logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)[sel]
            out.append(float((logp.exp() * (logp - logq)).sum(-1).mean()))
        else:
            out.append(float(F.nll_loss(logq, targets[sel])))
    return out


def moved_adapter(tiny_models):
    lm, model = lora_model(tiny_models, lora_r=4)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # student ≠ reference: the KL arm is not zero
    return lm, model


def test_padded_batch_matches_per_example_reference(tiny_models):
    lm, model = moved_adapter(tiny_models)
    items, _ = tokenize(MIXED, lm.tokenizer, lm.format, max_length=512)
    batch = collate(items, lm.tokenizer.pad_token_id)  # padded to the longest: per-row counts matter
    with torch.no_grad():
        losses = per_example_losses(model, items)
        tokens = [response_tokens(x) for x in items]
        ce = [v for v, x in zip(losses, items) if not x.benign]
        kl = [v for v, x in zip(losses, items) if x.benign]
        paper = (sum(ce) / len(ce) * len(ce) + sum(kl) / len(kl) * len(kl)) / len(items)
        by_token = sum(v * t for v, t in zip(losses, tokens)) / sum(tokens)
        assert abs(paper - by_token) > 1e-3  # the two weightings really differ on this batch
        total, n, _ = response_loss(model, batch, kl_benign=True, weighting="example", chunk=5)
        assert float(total) / n == pytest.approx(paper, rel=1e-4)
        total, n, _ = response_loss(model, batch, kl_benign=True, weighting="token", chunk=5)
        assert float(total) / n == pytest.approx(by_token, rel=1e-4)


def test_trainer_averages_over_the_examples_of_the_whole_step(tiny_models, tmp_path):
    """Four micro-batches of one example accumulate to the per-example mean of the step, not the mean of tokens."""
    lm, model = moved_adapter(tiny_models)
    items, _ = tokenize(MIXED, lm.tokenizer, lm.format, max_length=512)
    micro = [collate([x], lm.tokenizer.pad_token_id) for x in items]
    with torch.no_grad():
        losses = per_example_losses(model, items)
    tokens = [response_tokens(x) for x in items]
    expected = {"example": sum(losses) / 4, "token": sum(v * t for v, t in zip(losses, tokens)) / sum(tokens)}
    for weighting in ("example", "token"):
        args = TrainArgs(data="x", out=str(tmp_path), kl_benign=True, loss_weighting=weighting, effective_batch_size=4)
        trainer = sft_trainer(args, tmp_path, model, lm.tokenizer, items, epochs=1, accum=4, callbacks=[])
        batches, divisor = trainer.get_batch_samples(iter(micro), 4, torch.device("cpu"))
        assert int(divisor) == (4 if weighting == "example" else sum(tokens))
        with torch.no_grad():
            step = sum(float(trainer.compute_loss(model, b, num_items_in_batch=divisor)) for b in batches)
        assert step == pytest.approx(expected[weighting], rel=1e-4)
        _, divisor = trainer.get_batch_samples(iter(micro[:3]), 4, torch.device("cpu"))  # an epoch's short last step
        assert int(divisor) == (3 if weighting == "example" else sum(tokens[:3]))


def test_weighting_setting_defaults_to_the_references_choice_and_keys_the_stage():
    assert loss_weighting(TrainArgs()) == "token"  # plain SFT: TRL's SFTTrainer averages tokens
    assert loss_weighting(TrainArgs(kl_benign=True)) == "example"  # ThinkSafe+KL: the reference's KL trainer
    assert loss_weighting(TrainArgs(kl_benign=True, loss_weighting="token")) == "token"
    assert settings_key(TrainArgs(loss_weighting="token"))["loss_weighting"] == "token"
    assert settings_key(TrainArgs()) != settings_key(TrainArgs(loss_weighting="example"))
    with pytest.raises(ConfigError, match="loss_weighting 'tokens': expected auto, example or token"):
        check_args(TrainArgs(data="d", out="o", loss_weighting="tokens"))
