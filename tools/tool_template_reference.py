#!/usr/bin/env python3
"""Tool-calling chat-template reference -> testdata/chat/llama31_tools.json.

Meta's Llama 3.1 Instruct chat template (assets/templates/meta-llama-Llama-3.1-8B-Instruct.jinja,
fetched by scripts/fetch-assets.sh) applied by transformers'
`apply_chat_template(messages, tools=..., add_generation_prompt=True, tokenize=False)` with the
Llama 3 tokenizer of assets/llama3-hf; the rendered text is tokenized by the same transformers
tokenizer (special tokens parsed, none added) -> "text" and "ids".

The conversations are OpenAI-shaped: an assistant turn with `tool_calls` (arguments as an
object, as transformers' documentation passes them; camelid parses OpenAI's JSON-string
arguments into that object before rendering) and a `tool` message with `tool_call_id`.

    ~/.cache/camelid-peer/venv/bin/python tools/tool_template_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
OUT = REPO / "testdata/chat/llama31_tools.json"
TEMPLATE = "templates/meta-llama-Llama-3.1-8B-Instruct.jinja"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER = {"role": "user", "content": "What is the weather in Paris, in celsius?"}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"}

CASES = [
    ("tools_first_turn", [SYSTEM, USER]),
    ("tools_no_system", [USER]),
    ("tool_result_follow_up", [SYSTEM, USER, CALL, RESULT]),
]


def main() -> None:
    tok = AutoTokenizer.from_pretrained(ASSETS / "llama3-hf")
    template = (ASSETS / TEMPLATE).read_text()
    cases = []
    for name, messages in CASES:
        text = tok.apply_chat_template(
            messages,
            tools=TOOLS,
            add_generation_prompt=True,
            tokenize=False,
            chat_template=template,
        )
        ids = tok(text, add_special_tokens=False)["input_ids"]
        cases.append({"name": name, "messages": messages, "text": text, "ids": ids})
    out = {
        "source": "transformers apply_chat_template(tools=...) with assets/" + TEMPLATE
        + " on assets/llama3-hf; ids from the same tokenizer",
        "template": TEMPLATE,
        "tools": TOOLS,
        "cases": cases,
    }
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(REPO)}: {len(cases)} cases")


if __name__ == "__main__":
    main()
