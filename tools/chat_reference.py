#!/usr/bin/env python3
"""Chat-template references -> testdata/chat/{llama3,smollm2,llama2}.json.

Every expected token id comes from a tool other than camelid:

- llama3.json: the Llama 3 Instruct template of assets/llama3-hf/tokenizer_config.json applied by
  transformers (`apply_chat_template(tokenize=True)`) -> "template_ids"; and Meta's llama3
  `ChatFormat.encode_dialog_prompt` layout (llama3/llama/tokenizer.py: <|begin_of_text|>, then per
  message <|start_header_id|> role <|end_header_id|> "\\n\\n" content.strip() <|eot_id|>, then the
  assistant header when a reply is wanted), each piece tokenized separately by the HF tokenizer
  without special-token parsing -> "meta_ids".
- smollm2.json: the ChatML template stored in the SmolLM2 GGUF (`tokenizer.chat_template`, read
  with the gguf package) rendered by transformers' own Jinja renderer (trim_blocks, lstrip_blocks,
  loopcontrols, raise_exception) and the text tokenized by llama.cpp's llama-tokenize on the same
  GGUF (special tokens parsed, no BOS: the vocabulary's add_bos_token is false) -> "template_ids".
- llama2.json: Meta's llama `generation.py` `chat_completion` layout (system prompt merged into
  the first user turn as <<SYS>>\\n...\\n<</SYS>>\\n\\n; each (user, answer) pair as
  "[INST] {user.strip()} [/INST] {answer.strip()} " between BOS and EOS; the last user turn as
  "[INST] {user.strip()} [/INST]" after BOS) with every segment tokenized separately by
  llama-tokenize on assets/llama-spm/ggml-vocab-llama-spm.gguf (no BOS, no special-token
  parsing, no escape processing), BOS=1 and EOS=2 added as ids -> "meta_ids".

    $CAMELID_PEER/venv/bin/python tools/chat_reference.py [--peer DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "testdata/chat"

LLAMA3_HF = Path("assets/llama3-hf")
SMOLLM2 = Path("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMA_SPM = Path("assets/llama-spm/ggml-vocab-llama-spm.gguf")


def msg(role, content):
    return {"role": role, "content": content}


SYS = "You are a helpful assistant. Answer briefly."

# Dialogs shared by the three references: (name, messages, add_generation_prompt).
DIALOGS = [
    ("single_user", [msg("user", "What is the capital of France?")], True),
    ("system_user", [msg("system", SYS), msg("user", "Name three primary colors.")], True),
    ("multi_turn", [
        msg("system", SYS),
        msg("user", "Hello!"),
        msg("assistant", "Hi! How can I help you today?"),
        msg("user", "Write a haiku about llamas."),
    ], True),
    ("multi_turn_no_system", [
        msg("user", "1 + 1 = ?"),
        msg("assistant", "2"),
        msg("user", "And 2 + 2?"),
        msg("assistant", "4"),
        msg("user", "Thanks."),
    ], True),
    ("whitespace", [
        msg("system", "  \n Be terse. \n"),
        msg("user", "\n\n   Hello there!   \n"),
        msg("assistant", "  Hi!\n"),
        msg("user", "\tWhat's up?  "),
    ], True),
    ("unicode", [msg("user", "Ça va ? 日本語で答えて 🦙 — naïve café")], True),
    ("no_generation_prompt", [
        msg("user", "Say yes."),
        msg("assistant", "Yes."),
    ], False),
    ("no_generation_prompt_system", [
        msg("system", SYS),
        msg("user", "Say no."),
        msg("assistant", "No."),
    ], False),
]


def dumps(obj) -> str:
    """JSON with one case per line and id lists on a single line (small diffs, readable)."""
    lines = ["{"]
    keys = list(obj)
    for i, k in enumerate(keys):
        v = obj[k]
        comma = "," if i + 1 < len(keys) else ""
        if k == "cases":
            lines.append(f'  "cases": [')
            for j, c in enumerate(v):
                cc = "," if j + 1 < len(v) else ""
                lines.append("    " + json.dumps(c, ensure_ascii=False) + cc)
            lines.append("  ]" + comma)
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def llama_tokenize(peer: Path, gguf: Path, text: str, parse_special: bool) -> list[int]:
    exe = peer / "llama.cpp/build/bin/llama-tokenize"
    args = [str(exe), "-m", str(gguf), "--ids", "--no-bos", "--no-escape", "--stdin", "--log-disable"]
    if not parse_special:
        args.append("--no-parse-special")
    out = subprocess.run(args, input=text.encode(), capture_output=True, check=True).stdout.decode()
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def llama3(hf_dir: Path) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    template = json.loads((hf_dir / "tokenizer_config.json").read_text())["chat_template"]
    special = {t: tok.convert_tokens_to_ids(t) for t in
               ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}

    def enc(text):
        # Meta's Tokenizer.encode(bos=False, eos=False) with no special tokens allowed.
        return tok.encode(text, add_special_tokens=False, split_special_tokens=True)

    def header(role):
        return [special["<|start_header_id|>"], *enc(role), special["<|end_header_id|>"], *enc("\n\n")]

    cases = []
    for name, messages, gen in DIALOGS:
        out = tok.apply_chat_template(messages, chat_template=template, tokenize=True,
                                      add_generation_prompt=gen, return_dict=True)
        template_ids = list(out["input_ids"])
        meta = [special["<|begin_of_text|>"]]
        for m in messages:
            meta += header(m["role"]) + enc(m["content"].strip()) + [special["<|eot_id|>"]]
        if gen:
            meta += header("assistant")
        cases.append({"name": name, "messages": messages, "add_generation_prompt": gen,
                      "template_ids": template_ids, "meta_ids": meta})
    return {"source": "transformers apply_chat_template on assets/llama3-hf; Meta llama3 ChatFormat layout",
            "bos": special["<|begin_of_text|>"], "cases": cases}


def smollm2(peer: Path, gguf_path: Path) -> dict:
    import gguf
    from transformers.utils.chat_template_utils import render_jinja_template

    reader = gguf.GGUFReader(str(gguf_path))
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode()
    cases = []
    for name, messages, gen in DIALOGS:
        rendered, _ = render_jinja_template([messages], chat_template=template,
                                            add_generation_prompt=gen,
                                            bos_token="<|im_start|>", eos_token="<|im_end|>")
        text = rendered[0]
        ids = llama_tokenize(peer, gguf_path, text, parse_special=True)
        cases.append({"name": name, "messages": messages, "add_generation_prompt": gen,
                      "text": text, "template_ids": ids})
    return {"source": "GGUF tokenizer.chat_template rendered by transformers, tokenized by llama-tokenize",
            "template": template, "cases": cases}


B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"


def llama2_segments(messages):
    """Meta's chat_completion layout as (text, bos, eos) segments; None where Meta asserts."""
    if messages and messages[0]["role"] == "system":
        if len(messages) < 2:
            return None
        merged = B_SYS + messages[0]["content"] + E_SYS + messages[1]["content"]
        messages = [{"role": messages[1]["role"], "content": merged}] + messages[2:]
    roles = [m["role"] for m in messages]
    if any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)):
        return None
    segs = []
    for prompt, answer in zip(messages[::2], messages[1::2]):
        segs.append((f"{B_INST} {prompt['content'].strip()} {E_INST} {answer['content'].strip()} ", True, True))
    if len(messages) % 2 == 1:
        segs.append((f"{B_INST} {messages[-1]['content'].strip()} {E_INST}", True, False))
    return segs


def llama2(peer: Path, gguf_path: Path) -> dict:
    bos, eos = 1, 2
    cases = []
    for name, messages, gen in DIALOGS:
        segs = llama2_segments(messages)
        assert segs is not None, name
        # Meta's chat_completion asserts the dialog ends with a user turn; a finished dialog
        # (add_generation_prompt false, last turn an answer) is the pairs alone.
        assert gen == (messages[-1]["role"] == "user"), name
        ids = []
        for text, b, e in segs:
            ids += ([bos] if b else []) + llama_tokenize(peer, gguf_path, text, parse_special=False) + (
                [eos] if e else [])
        cases.append({"name": name, "messages": messages, "add_generation_prompt": gen,
                      "segments": [s[0] for s in segs], "meta_ids": ids})
    return {"source": "Meta llama generation.py chat_completion layout, segments tokenized by llama-tokenize",
            "bos": bos, "eos": eos, "cases": cases}


# A Mistral-style template (system folded into the first user turn, roles checked with
# raise_exception) and one that uses many Jinja and Python features at once.
FEATURE_TEMPLATES = {
    "alternating": (
        "{%- if messages[0]['role'] == 'system' %}\n"
        "    {%- set system_message = messages[0]['content'] | trim %}\n"
        "    {%- set loop_messages = messages[1:] %}\n"
        "{%- else %}\n"
        "    {%- set loop_messages = messages %}\n"
        "{%- endif %}\n"
        "{{- bos_token }}\n"
        "{%- for message in loop_messages %}\n"
        "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
        "        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n"
        "    {%- endif %}\n"
        "    {%- if message['role'] == 'user' %}\n"
        "        {%- if loop.first and system_message is defined %}\n"
        "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'].strip() + ' [/INST]' }}\n"
        "        {%- else %}\n"
        "            {{- ' [INST] ' + message['content'].strip() + ' [/INST]' }}\n"
        "        {%- endif %}\n"
        "    {%- elif message['role'] == 'assistant' %}\n"
        "        {{- ' ' + message['content'].strip() + eos_token }}\n"
        "    {%- endif %}\n"
        "{%- endfor %}\n"
    ),
    "features": (
        "{% set ns = namespace(n=0, sys=false) %}\n"
        "{% for m in messages %}\n"
        "  {% if m.role == 'system' %}{% set ns.sys = true %}{% continue %}{% endif %}\n"
        "  {% set ns.n = ns.n + 1 %}\n"
        "{{ ns.n }}. {{ m.role.upper() }}/{{ m['role'].title() }}: {{ m.content.strip().split(' ') | join('_') }}"
        "{% if m.content.lstrip().startswith('W') %} (W){% endif %}"
        "{% if m.content.rstrip().endswith('?') %} (Q){% endif %}\n"
        "  {% if ns.n >= 3 %}{% break %}{% endif %}\n"
        "{% endfor %}\n"
        "{{ messages | length }} {{ ns.sys }} {{ messages[-1]['content'][:5] | trim }}|"
        "{{ messages[0].content.replace('a', 'A') | lower }}|{{ (messages | last).role }}"
        "{% if add_generation_prompt %}>>{% endif %}\n"
    ),
}

FEATURE_DIALOGS = DIALOGS + [
    ("bad_order", [msg("user", "a"), msg("user", "b")], True),
    ("assistant_first", [msg("assistant", "I start."), msg("user", "Do you?")], True),
]


def jinja_features() -> dict:
    from transformers.utils.chat_template_utils import render_jinja_template

    cases = []
    for tname, template in FEATURE_TEMPLATES.items():
        for name, messages, gen in FEATURE_DIALOGS:
            case = {"template": tname, "name": name, "messages": messages, "add_generation_prompt": gen}
            try:
                rendered, _ = render_jinja_template([messages], chat_template=template,
                                                    add_generation_prompt=gen,
                                                    bos_token="<s>", eos_token="</s>")
                case["text"] = rendered[0]
            except Exception as e:  # jinja2.TemplateError from raise_exception
                case["error"] = str(e)
            cases.append(case)
    return {"source": "transformers render_jinja_template", "templates": FEATURE_TEMPLATES, "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    args = ap.parse_args()
    peer = args.peer.expanduser().resolve()
    for rel in (LLAMA3_HF, SMOLLM2, LLAMA_SPM):
        if not (REPO / rel).exists():
            raise SystemExit(f"{rel} is missing: run scripts/fetch-assets.sh")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in [("llama3", llama3(REPO / LLAMA3_HF)),
                       ("smollm2", smollm2(peer, REPO / SMOLLM2)),
                       ("llama2", llama2(peer, REPO / LLAMA_SPM)),
                       ("jinja_features", jinja_features())]:
        (OUT / f"{name}.json").write_text(dumps(data))
        print(f"wrote testdata/chat/{name}.json ({len(data['cases'])} dialogs)")


if __name__ == "__main__":
    main()
