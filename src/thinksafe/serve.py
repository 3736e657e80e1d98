"""`thinksafe serve`: a small OpenAI-compatible server over any thinksafe Generator.

    thinksafe serve --model smollm2-135m-instruct --port 8000
    thinksafe generate --backend openai --base_url http://127.0.0.1:8000/v1 --model smollm2-135m-instruct …

POST /v1/chat/completions and GET /v1/models, stdlib only (http.server). It serves one model, so a lock
runs one generation at a time and concurrent requests queue on it. Use it to share one loaded model
between processes, or to try the openai backend without vLLM; for throughput, use `vllm serve`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from thinksafe.config import opt, parse_config
from thinksafe.errors import ConfigError, ThinksafeError
from thinksafe.generate import Generator, SamplingParams

log = logging.getLogger(__name__)

MAX_BODY = 16 << 20  # bytes; a chat request is far smaller, this only stops a runaway client
MAX_N = 64


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _number(body: dict, key: str, default, kind: type):
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise BadRequest(
            f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {json.dumps(v)[:50]}"
        )
    return kind(v)


def parse_request(body) -> tuple[list[dict], SamplingParams, dict]:
    """(messages, sampling, chat_template_kwargs) from a chat-completions request body."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    messages = body.get("messages")
    ok = (
        isinstance(messages, list)
        and messages
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
    )
    if not ok:
        raise BadRequest("'messages' must be a non-empty list of {role, content} with string content")
    if body.get("stream"):
        raise BadRequest("'stream' is not supported by this server")
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise BadRequest("'chat_template_kwargs' must be an object")
    max_new = _number(body, "max_completion_tokens", None, int)
    if max_new is None:  # the older name, still what most clients send
        max_new = _number(body, "max_tokens", SamplingParams.max_new_tokens, int)
    n = _number(body, "n", 1, int)
    if n > MAX_N:
        raise BadRequest(f"'n' must be at most {MAX_N}")
    seed = _number(body, "seed", None, int)
    try:
        sampling = SamplingParams(
            temperature=_number(body, "temperature", 1.0, float),  # the OpenAI API's default
            top_p=_number(body, "top_p", 1.0, float),
            top_k=max(_number(body, "top_k", 0, int), 0),  # vLLM uses -1 for off
            max_new_tokens=max_new,
            n=n,
            # No seed: a fresh one, so repeated calls sample differently as the OpenAI API does.
            seed=seed if seed is not None else random.randrange(2**31),
        )
    except ConfigError as e:
        raise BadRequest(str(e)) from None
    return [{"role": m["role"], "content": m["content"]} for m in messages], sampling, kwargs


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True  # a client hanging on the lock must not keep the process alive

    def __init__(
        self, address, generator: Generator, *, api_key: str | None = None, model_name: str | None = None
    ):
        super().__init__(address, _Handler)
        self.generator, self.api_key = generator, api_key
        self.model_name = model_name or generator.name.split(":", 1)[-1]
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def complete(self, body) -> dict:
        messages, sampling, kwargs = parse_request(body)
        model = body.get("model")
        if model is not None and model != self.model_name:
            raise BadRequest(f"model '{model}' is not served here (serving '{self.model_name}')", 404)
        gen = self.generator
        with self.lock:
            fmt = gen.format
            # Honour enable_thinking (what the openai backend sends) by rendering with the matching
            # format; for templates without that switch it means nothing and is ignored.
            if fmt.thinking_kwarg and "enable_thinking" in kwargs:
                gen.format = replace(fmt, reasoning="think" if kwargs["enable_thinking"] else "plain")
            try:
                (outs,) = gen.generate([messages], sampling)
            finally:
                gen.format = fmt
        completion_tokens = sum(c.completion_tokens for c in outs)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": k,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason,
                    "logprobs": None,
                }
                for k, c in enumerate(outs)
            ],
            "usage": {
                "prompt_tokens": outs[0].prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": outs[0].prompt_tokens + completion_tokens,
            },
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections
    timeout = 300  # seconds a silent client may hold a connection (and a thread)
    server: ChatServer

    def log_message(self, format, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)  # request lines only, never headers

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/models":
            return self._error(404, f"no route GET {self.path}")
        model = {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "thinksafe"}
        self._send(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._error(411, "Content-Length required", close=True)
        if not 0 <= length <= MAX_BODY:
            return self._error(413, f"request body over {MAX_BODY} bytes", close=True)
        raw = self.rfile.read(length)  # read before answering, so a kept-alive connection stays in sync
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route POST {self.path}")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return self._error(400, f"request body is not valid JSON ({e})")
        try:
            self._send(200, self.server.complete(body))
        except BadRequest as e:
            self._error(e.status, str(e))
        except ThinksafeError as e:
            self._error(400, str(e))
        except Exception as e:
            log.exception("generation failed")
            self._error(500, f"generation failed: {type(e).__name__}: {e}")

    def _authorized(self) -> bool:
        key = self.server.api_key
        if key is None:
            return True
        given = self.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, f"Bearer {key}".encode()):  # constant time: no timing hints
            return True
        self._error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')")
        return False

    def _error(self, status: int, message: str, close: bool = False) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "code": status}}, close)

    def _send(self, status: int, obj: dict, close: bool = False) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to tell it


def make_server(
    generator: Generator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    model_name: str | None = None,
) -> ChatServer:
    return ChatServer((host, port), generator, api_key=api_key, model_name=model_name)


def serve(
    generator: Generator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    model_name: str | None = None,
) -> tuple[ChatServer, threading.Thread]:
    """Start serving in a daemon thread; stop with `server.shutdown(); server.server_close()`."""
    server = make_server(generator, host, port, api_key=api_key, model_name=model_name)
    thread = threading.Thread(target=server.serve_forever, name="thinksafe-serve", daemon=True)
    thread.start()
    return server, thread


# ---------------------------------------------------------------- CLI


@dataclass
class ServeArgs:
    host: str = opt("127.0.0.1", "address to bind; anything but loopback exposes the model to the network")
    port: int = opt(8000, "port (0: any free port)")
    api_key: str | None = opt(
        None, "require 'Authorization: Bearer KEY' (shows in the process list: prefer --api_key_env)"
    )


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(argv: list[str]) -> int:
    from thinksafe.generate import BackendConfig, make_generator
    from thinksafe.models import ModelSpec
    from thinksafe.progress import console

    args, spec, backend = parse_config(
        "thinksafe serve",
        (ServeArgs, ModelSpec, BackendConfig),
        argv,
        "Serve a model over an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models). "
        "--served_model names it (default: --model); --api_key_env NAME requires the key in $NAME.",
    )
    if backend.backend == "openai":
        raise ConfigError(
            "serve: --backend must be transformers or vllm (openai would only proxy another server)"
        )
    key = args.api_key
    if backend.api_key_env:
        key = os.environ.get(backend.api_key_env)
        if not key:
            raise ConfigError(f"serve: environment variable {backend.api_key_env} is not set")
    if not _is_loopback(args.host) and not key:
        console.print(
            f"[yellow]warning: serving on {args.host} without an API key: anyone on the network can use it"
        )
    # One progress bar per request would flood the terminal of a long-running server.
    generator = make_generator(spec, replace(backend, progress=False))
    try:
        server = make_server(
            generator, args.host, args.port, api_key=key, model_name=backend.served_model or spec.model
        )
    except OSError as e:
        raise ConfigError(f"serve: cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    console.print(f"serving '{server.model_name}' at {server.url}  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> None:
    try:
        sys.exit(cmd_serve(sys.argv[1:] if argv is None else argv))
    except ThinksafeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
