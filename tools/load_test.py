#!/usr/bin/env python3
"""Load benchmark for `camelid serve` (standard library only). Loopback addresses only; every
run is bounded in requests and time.

Start a server first, e.g. (release build):
    target/release/camelid serve -m assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --parallel 16 --ctx 2048 --port 8080

Then one of:
    # 200 streamed requests, 16 at a time: failures, latency and time-to-first-token
    # percentiles, aggregate generated tokens per second.
    python3 tools/load_test.py load --requests 200 --concurrency 16 --max-tokens 32

    # Decode throughput of 1 stream against N concurrent streams (greedy, long outputs); with
    # --rounds the counts alternate order round by round and the mean rates are compared.
    python3 tools/load_test.py scaling --streams 1,8 --max-tokens 128 --rounds 6

    # Prefix reuse: time to first token of two requests sharing a ~1000-token system prompt.
    python3 tools/load_test.py prefix --prefix-tokens 1000

Options common to all: --base (default http://127.0.0.1:8080), --model (default: the first of
/v1/models), --api-key.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

PROMPTS = [
    "Once upon a time",
    "The history of the printing press",
    "Here is a recipe for bread:",
    "The three laws of motion are",
    "A short poem about the sea:",
    "def quicksort(xs):",
    "The best way to learn a language is",
    "In the year 2050, cities will",
]

# Each request is bounded; the whole run too.
REQUEST_TIMEOUT_S = 600
RUN_LIMIT_S = 3600


class Server:
    def __init__(self, base: str, api_key: str | None):
        u = urlparse(base)
        if u.scheme != "http" or not u.hostname or not u.port:
            sys.exit("--base must look like http://127.0.0.1:PORT")
        if not is_loopback(u.hostname):
            sys.exit(f"{u.hostname} is not a loopback address; this tool only targets this machine")
        self.host, self.port = u.hostname, u.port
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def get(self, path: str):
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        c.request("GET", path, headers=self.headers)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def stream(self, path: str, body: dict) -> dict:
        """One streamed request: status, latency, time to first text, tokens, text."""
        body = dict(body, stream=True, stream_options={"include_usage": True})
        t0 = time.perf_counter()
        out = {"ok": False, "status": None, "latency": None, "ttft": None, "tokens": 0,
               "prompt_tokens": 0, "cached_tokens": 0, "text": "", "error": None}
        try:
            c = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
            c.request("POST", path, json.dumps(body), headers=self.headers)
            r = c.getresponse()
            out["status"] = r.status
            if r.status != 200:
                out["error"] = r.read().decode(errors="replace")[:300]
                return out
            done = False
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    done = True
                    break
                ev = json.loads(data)
                if "error" in ev:
                    out["error"] = ev["error"].get("message")
                    return out
                for ch in ev.get("choices", []):
                    piece = ch.get("text") or (ch.get("delta") or {}).get("content") or ""
                    if piece and out["ttft"] is None:
                        out["ttft"] = time.perf_counter() - t0
                    out["text"] += piece
                if ev.get("usage"):
                    u = ev["usage"]
                    out["tokens"] = u["completion_tokens"]
                    out["prompt_tokens"] = u["prompt_tokens"]
                    out["cached_tokens"] = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            c.close()
            out["ok"] = done
            if not done:
                out["error"] = "stream ended without [DONE]"
        except (OSError, http.client.HTTPException, ValueError) as e:
            out["error"] = repr(e)
        finally:
            out["latency"] = time.perf_counter() - t0
        return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback
                       for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def model_id(s: Server, given: str | None) -> str:
    if given:
        return given
    status, body = s.get("/v1/models")
    if status != 200:
        sys.exit(f"/v1/models answered {status}: {body[:200]!r}")
    return json.loads(body)["data"][0]["id"]


def run_load(s: Server, model: str, a) -> None:
    def one(i: int) -> dict:
        body = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": a.max_tokens,
                "temperature": 0.8, "seed": i}
        return s.stream("/v1/completions", body)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.concurrency) as ex:
        results = list(ex.map(one, range(a.requests), timeout=RUN_LIMIT_S))
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    lat = [r["latency"] for r in ok]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    tokens = sum(r["tokens"] for r in ok)
    print(f"requests {len(results)}, concurrency {a.concurrency}, max_tokens {a.max_tokens}")
    print(f"failures {len(failed)}")
    for r in failed[:5]:
        print(f"  status {r['status']}: {r['error']}")
    print(f"wall {wall:.1f} s, {len(ok) / wall:.2f} requests/s")
    print(f"latency p50 {pct(lat, 50):.2f} s, p99 {pct(lat, 99):.2f} s")
    print(f"time to first token p50 {pct(ttft, 50):.3f} s, p99 {pct(ttft, 99):.3f} s")
    print(f"generated tokens {tokens}, aggregate {tokens / wall:.1f} tokens/s")
    if failed:
        sys.exit(1)


def run_scaling(s: Server, model: str, a) -> None:
    # Rounds alternate the order of the stream counts (1, 8 then 8, 1, ...), so that a drift of
    # the machine's speed during the run weighs on both sides alike; the speed-up is the ratio
    # of the mean decode rates.
    counts = [int(x) for x in a.streams.split(",")]
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for rnd in range(a.rounds):
        for n in (counts if rnd % 2 == 0 else counts[::-1]):
            def one(i: int) -> dict:
                body = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)],
                        "max_tokens": a.max_tokens, "temperature": 0}
                return s.stream("/v1/completions", body)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=n) as ex:
                results = list(ex.map(one, range(n), timeout=RUN_LIMIT_S))
            wall = time.perf_counter() - t0
            bad = [r for r in results if not r["ok"]]
            if bad:
                sys.exit(f"{len(bad)} of {n} streams failed: {bad[0]['error']}")
            tokens = sum(r["tokens"] for r in results)
            # Decode rate: tokens after the first, over the time after the first token arrived.
            decode = sum(r["tokens"] - 1 for r in results) / max(
                1e-9, max(r["latency"] for r in results) - min(r["ttft"] for r in results))
            rates[n].append(decode)
            print(f"round {rnd + 1}: {n:3d} streams: {tokens} tokens in {wall:.2f} s = "
                  f"{tokens / wall:.1f} tokens/s overall, decode {decode:.1f} tokens/s")
    ns = sorted(rates)
    mean = {n: statistics.mean(v) for n, v in rates.items()}
    for n in ns:
        print(f"{n:3d} streams: decode {mean[n]:.1f} tokens/s (mean of {len(rates[n])})")
    if len(ns) > 1:
        print(f"decode speed-up {ns[-1]} streams / {ns[0]}: {mean[ns[-1]] / mean[ns[0]]:.2f}x")


def run_prefix(s: Server, model: str, a) -> None:
    # About 9 tokens per rule with Llama-family BPE vocabularies.
    system = "".join(f"Rule {i}: answer politely and briefly. " for i in range(1, a.prefix_tokens // 9 + 1))
    out = []
    for q in ["What is the capital of France?", "Name a large animal."]:
        body = {"model": model, "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": q}],
                "max_tokens": 1, "temperature": 0}
        r = s.stream("/v1/chat/completions", body)
        if not r["ok"]:
            sys.exit(f"request failed: {r['error']}")
        out.append(r)
        print(f"prompt {r['prompt_tokens']} tokens, cached {r['cached_tokens']}, "
              f"time to first token {r['ttft']:.3f} s")
    print(f"first / second time to first token: {out[0]['ttft'] / out[1]['ttft']:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["load", "scaling", "prefix"])
    ap.add_argument("--base", default="http://127.0.0.1:8080")
    ap.add_argument("--model")
    ap.add_argument("--api-key")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--rounds", type=int, default=1, help="scaling: rounds, alternating the order")
    ap.add_argument("--prefix-tokens", type=int, default=1000)
    a = ap.parse_args()
    if not (0 < a.requests <= 10000 and 0 < a.concurrency <= 256 and 0 < a.rounds <= 100):
        sys.exit("--requests must be in 1..10000, --concurrency in 1..256 and --rounds in 1..100")
    s = Server(a.base, a.api_key)
    model = model_id(s, a.model)
    {"load": run_load, "scaling": run_scaling, "prefix": run_prefix}[a.mode](s, model, a)


if __name__ == "__main__":
    main()
