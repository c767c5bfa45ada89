"""`camelid serve` driven by the official `openai` Python package, over a loopback socket.

Starts the server on a free port with an API key, runs the checks below, then sends SIGTERM and
expects exit status 0. Prints 'N passed, N failed' and exits non-zero on any failure.

    python3 tests/serve_openai.py --bin target/debug/camelid \
        --model assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

Expected texts: llama.cpp's greedy answer on this GGUF with its chat template ("The capital of
France is Paris.", as crates/camelid-cli/tests/chat.rs records), and counting, whose
continuation is arithmetic, not camelid's output.
"""

import argparse
import array
import base64
import http.client
import math
import json
import re
import signal
import subprocess
import sys
import threading
import traceback
from urllib.parse import urlparse

import openai

KEY = "test-key-123"
MODEL = "smollm2"
FRANCE = "What is the capital of France? Answer in one sentence."
FRANCE_ANSWER = "The capital of France is Paris."
ORIGIN = "http://localhost:5173"
ARGS = None
# The server's stderr (its access log among it), read on a thread while the checks run.
STDERR: list[str] = []


def start(bin_path, model):
    proc = subprocess.Popen(
        [bin_path, "serve", "-m", model, "--port", "0", "--ctx", "512", "--parallel", "16",
         "--api-key", KEY, "--alias", MODEL, "--cors-origin", ORIGIN],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=lambda: STDERR.extend(proc.stderr), daemon=True).start()
            return proc, m.group(1)
    raise RuntimeError(f"the server exited before listening: {proc.wait()}")


def check_models(c):
    ids = [m.id for m in c.models.list().data]
    assert ids == [MODEL], ids


def check_chat(c):
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                  temperature=0, max_tokens=24)
    ch = r.choices[0]
    assert ch.message.role == "assistant"
    assert ch.message.content == FRANCE_ANSWER, ch.message.content
    assert ch.finish_reason == "stop", ch.finish_reason
    u = r.usage
    assert u.prompt_tokens > 10 and 7 <= u.completion_tokens <= 9, u
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens, u


def check_chat_stream(c):
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                       temperature=0, max_tokens=24, stream=True,
                                       stream_options={"include_usage": True})
    text, finish, usage, n = "", None, None, 0
    for chunk in stream:
        n += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert text == FRANCE_ANSWER, text
    assert finish == "stop", finish
    assert n >= 5, n
    assert usage is not None and usage.completion_tokens >= 7, usage


def check_chat_stop_and_length(c):
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                  temperature=0, max_tokens=24, stop=[" is", "xyz"])
    assert r.choices[0].message.content == "The capital of France", r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                  temperature=0, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3, r.usage


def check_completions(c):
    r = c.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", temperature=0, max_tokens=8)
    ch = r.choices[0]
    assert ch.text.startswith(" 6, 7, 8"), ch.text
    assert ch.finish_reason == "length"
    assert r.usage.completion_tokens == 8, r.usage
    # Streamed, the same text.
    text, finish = "", None
    for chunk in c.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", temperature=0,
                                      max_tokens=8, stream=True):
        for ch2 in chunk.choices:
            text += ch2.text
            finish = ch2.finish_reason or finish
    assert text == ch.text, (text, ch.text)
    assert finish == "length"
    # A stop sequence, streamed and not.
    r = c.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", temperature=0, max_tokens=20,
                             stop=" 8")
    assert r.choices[0].text == " 6, 7,", r.choices[0].text
    assert r.choices[0].finish_reason == "stop"
    text = "".join(ch.text for chunk in c.completions.create(
        model=MODEL, prompt="1, 2, 3, 4, 5,", temperature=0, max_tokens=20, stop=" 8",
        stream=True) for ch in chunk.choices)
    assert text == " 6, 7,", text


def check_seed_reproducible(c):
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=6, temperature=0.9, top_p=0.9,
              presence_penalty=0.5, frequency_penalty=0.5, seed=42, n=1)
    a = c.completions.create(**kw).choices[0].text
    b = c.completions.create(**kw).choices[0].text
    assert a == b, (a, b)  # the same seed, the same draw


# Checks expected to fail, reported as XFAIL/XPASS without failing the run (none at present).
KNOWN_FAILURES: set[str] = set()


def check_sampling_fields(c):
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                  temperature=0, max_tokens=2, logprobs=True, top_logprobs=2)
    lp = r.choices[0].logprobs.content
    assert len(lp) == 2 and lp[0].token == "The" and len(lp[0].top_logprobs) == 2, lp


def token_id(text):
    """The id of a one-token text, from `camelid tokenize` on the same model."""
    out = subprocess.run([ARGS.bin, "tokenize", "-m", ARGS.model, "--json", text],
                         capture_output=True, text=True, check=True).stdout
    ids = json.loads(out)
    assert len(ids) == 1, (text, ids)
    return ids[0]


def check_logit_bias(c):
    """{id: -100} bans the greedy first token ("The"); an id past the vocabulary is a 400."""
    the = token_id("The")
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                  temperature=0, max_tokens=6, logprobs=True,
                                  logit_bias={str(the): -100})
    tokens = [t.token for t in r.choices[0].logprobs.content]
    assert tokens and "The" not in tokens, tokens
    try:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                  max_tokens=1, logit_bias={"49152": -100})
    except openai.BadRequestError as e:
        assert e.param == "logit_bias", e
    else:
        raise AssertionError("an id past the vocabulary was accepted")


def check_n_choices(c):
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FRANCE}],
                                  temperature=0.8, seed=5, max_tokens=8, n=3)
    assert [ch.index for ch in r.choices] == [0, 1, 2], r.choices
    assert all(ch.message.content for ch in r.choices), r.choices
    r = c.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", temperature=0, max_tokens=4,
                             n=3)
    assert len({ch.text for ch in r.choices}) == 1 and len(r.choices) == 3, r.choices


def check_n_shares_the_prompt(c):
    """n=3 computes the prompt once: the other choices copy it and compute its last token only;
    each choice is what a request of one choice with its seed (seed + i) computing the whole
    prompt itself gives."""
    msg = [{"role": "user", "content": "Name a colour of the sea."}]
    r = c.chat.completions.create(model=MODEL, messages=msg, temperature=1.0, seed=9,
                                  max_tokens=8, n=3)
    u = r.usage
    assert u.prompt_tokens_details.cached_tokens == u.prompt_tokens - 1, u
    for i, ch in enumerate(r.choices):
        alone = c.chat.completions.create(model=MODEL, messages=msg, temperature=1.0,
                                          seed=9 + i, max_tokens=8,
                                          extra_body={"cache_prompt": False})
        assert ch.message.content == alone.choices[0].message.content, (i, ch, alone)


def check_embeddings(c):
    """One string, a list (in order, each as it is alone), unit norm, 576 dimensions; the
    client's default base64 transfer, explicit base64 and float agree; a wrong `dimensions` is
    a 400 naming it."""
    texts = ["The capital of France is Paris.", "A cat sat on the mat.", "1, 2, 3, 4"]
    one = c.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    assert one.object == "list" and one.model == MODEL and len(one.data) == 1, one
    v = one.data[0].embedding
    assert len(v) == 576 and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5, len(v)
    assert one.usage.prompt_tokens == one.usage.total_tokens > 5, one.usage
    many = c.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2], many.data
    assert many.data[0].embedding == v
    assert many.data[1].embedding != v
    # The JSON floats are the f32 values' shortest spellings: compared as f32.
    f32 = lambda xs: array.array("f", xs)  # noqa: E731
    # Left out, the client asks for base64 and decodes it.
    default = c.embeddings.create(model=MODEL, input=texts).data[2].embedding
    assert f32(default) == f32(many.data[2].embedding)
    raw = c.embeddings.create(model=MODEL, input=texts[0], encoding_format="base64")
    assert array.array("f", base64.b64decode(raw.data[0].embedding)) == f32(v)
    try:
        c.embeddings.create(model=MODEL, input="hi", dimensions=64)
    except openai.BadRequestError as e:
        assert e.param == "dimensions", e
    else:
        raise AssertionError("dimensions 64 was accepted")


def check_llama_cpp_fields(c):
    """top_k 1 is greedy whatever the seed: the same text for three seeds."""
    texts = {c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12,
                                  temperature=1.5, seed=seed,
                                  extra_body={"top_k": 1}).choices[0].text
             for seed in (1, 2, 3)}
    assert len(texts) == 1, texts
    greedy = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12,
                                  temperature=0).choices[0].text
    assert texts == {greedy}, (texts, greedy)
    r = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4,
                             extra_body={"min_p": 0.1, "repeat_penalty": 1.1,
                                         "repeat_last_n": 32, "cache_prompt": False})
    assert r.choices[0].finish_reason == "length", r


def check_any_model_name(c):
    r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                  max_tokens=1)
    assert r.model == MODEL, r.model


def check_unsupported_fields(c):
    """Each field camelid does not implement is a 400 naming it; so is an unknown one."""
    hi = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    cases = [
        ("tools", dict(tools=[tool])),
        ("tool_choice", dict(tool_choice="required")),
        ("response_format", dict(response_format={"type": "json_object"})),
        ("reasoning_effort", dict(reasoning_effort="low")),
        ("grammar", dict(extra_body={"grammar": 'root ::= "a"'})),
        ("json_schema", dict(extra_body={"json_schema": {"type": "object"}})),
        ("mirostat", dict(extra_body={"mirostat": 2})),
    ]
    for field, kw in cases:
        try:
            c.chat.completions.create(model=MODEL, messages=hi, max_tokens=1, **kw)
        except openai.BadRequestError as e:
            assert e.param == field, (field, e)
        else:
            raise AssertionError(f"{field} was accepted")
    r = c.chat.completions.create(model=MODEL, messages=hi, max_tokens=1,
                                  response_format={"type": "text"}, user="u-1")
    assert r.choices[0].finish_reason == "length", r


def check_cors(c):
    """A preflight from the allowed origin gets 204 and the allow headers; another gets 403."""
    u = urlparse(str(c.base_url))

    def preflight(origin):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        conn.request("OPTIONS", "/v1/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status, resp.getheader("Access-Control-Allow-Origin")

    assert preflight(ORIGIN) == (204, ORIGIN), preflight(ORIGIN)
    status, allow = preflight("https://evil.example")
    assert status == 403 and allow is None, (status, allow)


def check_access_log(c):
    """Every request above left a line on stderr; the chat ones with their token counts."""
    line = re.compile(r"^\S+Z POST /v1/chat/completions 200 prompt=\d+ completion=\d+ [\d.]+ms$")
    assert any(line.match(l.strip()) for l in list(STDERR)), STDERR[-5:]


def check_errors(c):
    base = str(c.base_url).rstrip("/")
    def expect(exc, fn, status, code=None):
        try:
            fn()
        except exc as e:
            assert e.status_code == status, (e.status_code, e)
            if code is not None:
                assert e.code == code, (e.code, e)
            return
        raise AssertionError(f"no {exc.__name__}")

    expect(openai.BadRequestError,
           lambda: c.completions.create(model=MODEL, prompt="word " * 1000),
           400, "context_length_exceeded")
    expect(openai.BadRequestError,
           lambda: c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=0),
           400)
    bad = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
    expect(openai.AuthenticationError, lambda: bad.models.list(), 401, "invalid_api_key")


def check_concurrent(c):
    """16 streams at once; each continues its own count."""
    results = {}

    def one(k):
        text = ""
        for chunk in c.completions.create(model=MODEL, prompt=f"{k}, {k + 1}, {k + 2}, {k + 3},",
                                          temperature=0, max_tokens=4, stream=True):
            for ch in chunk.choices:
                text += ch.text
        results[k] = text

    threads = [threading.Thread(target=one, args=(k,)) for k in range(10, 26)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16, results
    for k, text in results.items():
        assert text.startswith(f" {k + 4},"), (k, text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    global ARGS
    ARGS = args
    proc, base_url = start(args.bin, args.model)
    base = base_url + "/v1"
    c = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=600)
    checks = [check_models, check_chat, check_chat_stream, check_chat_stop_and_length,
              check_completions, check_sampling_fields, check_seed_reproducible, check_concurrent,
              check_errors, check_logit_bias, check_n_choices, check_n_shares_the_prompt,
              check_embeddings, check_llama_cpp_fields,
              check_any_model_name, check_unsupported_fields, check_cors, check_access_log]
    passed = failed = 0
    try:
        for check in checks:
            name = getattr(check, "__name__", "check")
            known = name in KNOWN_FAILURES
            try:
                check(c)
                passed += 1
                print(f"{'XPASS' if known else 'ok  '} {name}")
            except Exception:
                if known:
                    print(f"XFAIL {name} (known issue, see KNOWN_FAILURES)")
                    traceback.print_exc()
                    continue
                failed += 1
                print(f"FAIL {name}")
                traceback.print_exc()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    if code == 0:
        passed += 1
        print("ok   exit status 0 after SIGTERM")
    else:
        failed += 1
        print(f"FAIL exit status {code} after SIGTERM")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
