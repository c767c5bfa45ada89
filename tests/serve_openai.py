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
import re
import signal
import subprocess
import sys
import threading
import traceback

import openai

KEY = "test-key-123"
MODEL = "smollm2"
FRANCE = "What is the capital of France? Answer in one sentence."
FRANCE_ANSWER = "The capital of France is Paris."


def start(bin_path, model):
    proc = subprocess.Popen(
        [bin_path, "serve", "-m", model, "--port", "0", "--ctx", "512", "--parallel", "16",
         "--api-key", KEY, "--alias", MODEL],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
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

    expect(openai.NotFoundError,
           lambda: c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]),
           404, "model_not_found")
    expect(openai.BadRequestError,
           lambda: c.completions.create(model=MODEL, prompt="word " * 1000),
           400, "context_length_exceeded")
    expect(openai.BadRequestError,
           lambda: c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2),
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
    proc, base_url = start(args.bin, args.model)
    base = base_url + "/v1"
    c = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=600)
    checks = [check_models, check_chat, check_chat_stream, check_chat_stop_and_length,
              check_completions, check_sampling_fields, check_seed_reproducible, check_concurrent,
              check_errors]
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
