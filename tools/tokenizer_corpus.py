#!/usr/bin/env python3
"""Builds the tokenizer fixture corpus: testdata/tokenizer/corpus.jsonl (+ spm-tiny.model).

Every string gets reference ids from implementations independent of camelid:
  llama3     tiktoken with Meta's assets/llama3-meta/tokenizer.model and Meta's pattern;
             cross-checked with Hugging Face `tokenizers` on assets/llama3-hf/tokenizer.json
             (special tokens not parsed) and with llama.cpp on assets/llama-bpe/*.gguf
  llama_spm  llama.cpp (libllama, vocab only) on assets/llama-spm/ggml-vocab-llama-spm.gguf
  smollm2    llama.cpp on assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  spm_tiny   the `sentencepiece` library on testdata/tokenizer/spm-tiny.model, a small BPE model
             that this script trains on the Shakespeare corpus (byte fallback, user-defined pieces)
  spm_tiny_json  Hugging Face `tokenizers` on testdata/tokenizer/spm-tiny.json, the same vocabulary
             as a Llama 2-style tokenizer.json built here with the `tokenizers` library (stored only
             where it differs from spm_tiny)
Strings that look like special tokens also get "special": ids with special tokens parsed
(tiktoken allowed_special="all", llama.cpp parse_special; "llama3_gguf" is llama.cpp on the Llama 3
GGUF, whose special-token names are Llama 3.0's).

The 100 KB line is not stored: `long_line(SEED)` below and the Rust tests generate it alike
(splitmix64 over a fixed list of atoms); only its ids are stored, with its length and FNV-1a hash.

Setup (once):
  python3 -m venv ~/.cache/camelid-tok-venv
  ~/.cache/camelid-tok-venv/bin/pip install tiktoken tokenizers sentencepiece
  ../shared/peer/build-llama-cpp.sh     # llama.cpp at ~/.cache/camelid-peer/llama.cpp (or LLAMA_CPP_DIR)
Run from the repository root:
  ~/.cache/camelid-tok-venv/bin/python tools/tokenizer_corpus.py
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("CAMELID_ASSETS", ROOT / "assets"))
OUT_DIR = ROOT / "testdata" / "tokenizer"
LLAMA_CPP = Path(os.environ.get("LLAMA_CPP_DIR", Path.home() / ".cache/camelid-peer/llama.cpp"))
CACHE = Path.home() / ".cache" / "camelid-tok"

LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

# ---------------------------------------------------------------------------------------------
# The 100 KB line. Keep in step with `long_line` in crates/camelid-tokenizer/tests/tokenizer.rs.
SEED = 20240501
LONG_ATOMS = [
    "the", "The", "camel", "llama", "don't", "I'll", "WE'VE", "it's", "naïve", "café",
    "Việt", "Nam", "日本語", "東京", "中文", "한국어", "русский", "язык", "العربية", "हिन्दी",
    "0", "7", "42", "1234", "3.14159", "2024-05-01", "1,000,000", "٣٤٥", "½",
    "fn", "main()", "{", "}", "x+=1;", "==", "->", "&&", "//", "#include", "<div>", "\"quoted\"",
    "!", "?", "...", "—", "(", ")", "[]", "@", "$5", "100%",
    "🦙", "👍🏽", "👨\u200d👩\u200d👧", "🇯🇵", "é", "ñ", "ü", "ß", "Ω",
]
LONG_SEPS = [" ", " ", " ", " ", "  ", ", ", ". ", "\t", " - ", ""]
LONG_BYTES = 100_000
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def long_line(seed):
    state = seed
    parts = []
    n = 0
    while n < LONG_BYTES:
        state, a = splitmix64(state)
        state, b = splitmix64(state)
        piece = LONG_ATOMS[a % len(LONG_ATOMS)] + LONG_SEPS[b % len(LONG_SEPS)]
        parts.append(piece)
        n += len(piece.encode("utf-8"))
    return "".join(parts)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


# ---------------------------------------------------------------------------------------------
# Hand-written material (written for this corpus).
MULTILINGUAL = [
    # Japanese
    "東京は日本の首都です。今日はいい天気ですね。",
    "吾輩は猫である。名前はまだ無い。",
    "カタカナとひらがなと漢字を混ぜた文章：ラーメン、すし、てんぷら。",
    "ｶﾀｶﾅの半角と全角ＡＢＣ１２３。",
    # Chinese
    "我们今天去公园散步，然后吃了北京烤鸭。",
    "人工智能正在改变世界。機器學習與深度學習。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    # Korean
    "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 좋네요!",
    "한국어 문장은 띄어쓰기를 합니다. 서울특별시",
    "ㅎㅏㄴㄱㅡㄹ 자모 분리",
    # Arabic
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "اللغة العربية جميلة جدًا، وَالْحَرَكَاتُ تُكْتَبُ أَحْيَانًا.",
    "الرقم ١٢٣٤٥ والرقم 67890",
    # Hindi
    "नमस्ते दुनिया! आप कैसे हैं?",
    "हिन्दी में संयुक्ताक्षर: क्षत्रिय, ज्ञान, श्रीमान्।",
    "संख्याएँ: १२३४५६७८९०",
    # Russian
    "Привет, мир! Как дела? Ёлки-палки, это ЗДОРОВО.",
    "Съешь же ещё этих мягких французских булок да выпей чаю.",
    # Vietnamese, precomposed and decomposed (combining marks)
    "Tiếng Việt có dấu: Xin chào các bạn, hôm nay trời đẹp quá!",
    unicodedata.normalize("NFD", "Tiếng Việt có dấu: Xin chào các bạn, hôm nay trời đẹp quá!"),
    unicodedata.normalize("NFD", "Người Việt Nam yêu nước; phở bò và bánh mì."),
    "Z̴̡͕̈a̶̰͐l̷̲͠g̵̣̾o̸̭̊ text with stacked combining marks",
    # Others
    "Ελληνικά: Καλημέρα κόσμε! Thai: สวัสดีครับ Hebrew: שלום עולם",
    "Ünïcödé àçćéñtś: façade, coöperate, Zürich, São Paulo, Øresund, Łódź",
    "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　ｗｉｔｈ　ideographic　spaces",
]

EMOJI = [
    "🦙", "🦙🦙🦙", "I ❤️ llamas 🦙!", "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder", "🏳️‍🌈 flag", "🇯🇵🇫🇷🇺🇸",
    "1️⃣2️⃣3️⃣", "👍🏻👍🏼👍🏽👍🏾👍🏿", "🧑‍🤝‍🧑", "❤️‍🔥", "😀😃😄😁😆😅😂🤣", "🫠🫥🪿",
    "text🙂text", " 🙂 ", "emoji at end 🎉", "👁️‍🗨️", "♀️♂️⚕️", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland",
]

CODE = [
    'fn main() {\n    println!("Hello, world!");\n}\n',
    "def f(x):\n\treturn x ** 2 + 1  # square\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\n",
    "const add = (a, b) => a + b;\nconsole.log(add(1, 2));",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "<html>\n  <body class=\"main\">\n    <p>Hi &amp; bye</p>\n  </body>\n</html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "for (int i = 0; i < n; ++i) { a[i] = b[i] * c[i]; }",
    "x=1;y=2;z=x<<y|0xFF&~0b1010",
    "    indented\n        more\n\t\ttabs\n",
    "if __name__ == '__main__':\n    main()\r\n",
    "let s: Vec<&str> = line.split(',').collect::<Vec<_>>();",
    "$ cargo test -p camelid-tokenizer -- --nocapture 2>&1 | tee log.txt",
    "a_b_c snake_case camelCase PascalCase SCREAMING_CASE kebab-case",
    "https://example.com/path?query=1&x=y#frag user@example.org",
    "// comment\n/* block\n   comment */\n/// doc",
    "```python\nprint('hi')\n```",
    "λx.x ∀x∈ℝ: x²≥0 ∑_{i=1}^{n} i = n(n+1)/2",
]

SPECIAL_LIKE = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>",
    "<s>", "</s>", "<unk>", "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nhello [/INST] answer </s>",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
    "<|endoftext|>", "<|reserved_special_token_5|>", "<|python_tag|>", "<|finetune_right_pad_id|>",
    "<0x41>", "<0xE6><0x97>", "<|eot_id", "eot_id|>", "<|<|eot_id|>|>", "<<|eot_id|>>", "<|EOT_ID|>",
    "text<|eot_id|>text", " <s> ", "a</s>b", "<|im_end|><|im_end|>", "<repo_name>x<file_sep>",
]

CONTRACTIONS = ["s", "t", "re", "ve", "m", "ll", "d"]


def contraction_strings():
    out = []
    for c in CONTRACTIONS:
        variants = {c, c.upper(), c.capitalize(), c[0] + c[1:].upper() if len(c) > 1 else c}
        if len(c) == 2:
            variants |= {c[0].upper() + c[1], c[0] + c[1].upper()}
        for v in sorted(variants):
            out.append(f"it'{v} he'{v} '{v} x'{v}y I'{v}")
            out.append(f"WORD'{v}")
            out.append(f"'{v}'{v}'{v}")
    out += [
        "don't DON'T Don't dOn'T won’t it’s", "we're WE'RE We'Re they've THEY'VE", "I'm I'M i'm",
        "you'll YOU'LL You'Ll", "he'd HE'D", "'tis 'TIS", "rock'n'roll", "o'clock O'CLOCK",
        "ſ long s: it'ſ", "''''", "' s", "'\ns", "'1", "'é", "l'été L'ÉTÉ",
    ]
    return out


def number_strings(rng):
    out = []
    digits = "12345678901234567890123456789012345678901234567890"
    for n in range(1, 41):
        out.append(digits[:n])
        out.append(" " + digits[:n])
        out.append("x" + digits[n - 1::-1] + "y")
    out += [
        "3.14159265358979", "-42", "+7", "1e10", "6.022e23", "0x1F", "1,234,567.89", "1 000 000",
        "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳", "१२३४", "１２３４５", "²³¹", "½ ¼ ¾", "Ⅻ ⅻ Ⅳ", "①②③", "𝟙𝟚𝟛",
        "2024-05-01T12:34:56Z", "v1.2.3", "$19.99", "100%", "(555) 123-4567", "007", "0000000",
    ]
    for _ in range(60):
        k = rng.randint(1, 30)
        out.append("".join(rng.choice("0123456789") for _ in range(k)))
    return out


WS = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \t\n",
      "\u00a0", "\u3000", "\u2009", "\u200b", "\u000b", "\u000c", "\u0085", "\u2028"]


def whitespace_strings(rng):
    out = list(WS)
    for a in WS:
        out.append("a" + a + "b")
        out.append(a + "word" + a)
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(WS) * rng.randint(1, 4))
            parts.append(rng.choice(["x", "Hello", "123", "!", "日本", "", "é", "—"]))
        out.append("".join(parts))
    return out


POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" \t\n\r'\"!?.,;:-_()[]{}<>|/\\@#$%^&*+=~`")
    + list("éèêëàáâäçñöüßøåæœÿĳŀłđħ")
    + list("日本語中文字한국어русскийالعربيةहिन्दी")
    + ["\u0301", "\u0308", "\u0323", "\u093e", "\u0651", "\u200d", "\ufe0f", "\u00a0", "\u3000", "\u2028"]
    + list("½²٣१１Ⅻ①")
    + ["🦙", "👍", "🏽", "🇯", "🇵", "😀", "\U0001F9D1", "\U0001D400"]
)


def random_strings(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(1, 60)
        out.append("".join(rng.choice(POOL) for _ in range(k)))
    return out


def shakespeare(rng):
    out = []
    for name in ["hamlet_gut.txt", "julius_caesar_gut.txt", "macbeth_gut.txt"]:
        text = (ASSETS / "corpus" / name).read_text(encoding="utf-8")
        lines = text.split("\n")
        for _ in range(300):
            out.append(rng.choice(lines))
        for _ in range(60):
            i = rng.randrange(len(lines))
            out.append("\n".join(lines[i:i + rng.randint(2, 12)]))
        # the same lines with Windows line ends and as one long paragraph
        i = rng.randrange(len(lines))
        out.append("\r\n".join(lines[i:i + 20]))
        out.append(" ".join(l.strip() for l in lines[i:i + 40]))
    return out


def mixed(rng, n):
    # words of several scripts, joined by varied whitespace and punctuation
    words = []
    for s in MULTILINGUAL + CODE + EMOJI:
        words += s.split()
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        out.append("".join(rng.choice(words) + rng.choice([" ", " ", "", "\n", ", ", "  ", "\t"]) for _ in range(k)))
    return out


def build_strings():
    rng = random.Random(SEED)
    strings = []
    strings += MULTILINGUAL
    strings += [s + " " + t for s in MULTILINGUAL[:6] for t in MULTILINGUAL[6:12]]
    strings += EMOJI
    strings += CODE
    strings += SPECIAL_LIKE
    strings += contraction_strings()
    strings += number_strings(rng)
    strings += whitespace_strings(rng)
    strings += random_strings(rng, 500)
    strings += shakespeare(rng)
    strings += mixed(rng, 300)
    seen = set()
    out = []
    for s in strings:
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


def is_special_like(s):
    return "<" in s and ">" in s


# ---------------------------------------------------------------------------------------------
# llama.cpp, through a small C program against libllama (one process for all strings).
HELPER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include "llama.h"
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l; (void)t; (void)u; }
int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s model.gguf input.bin\n", argv[0]); return 2; }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    FILE *f = fopen(argv[2], "rb");
    if (!f) return 1;
    uint32_t len; unsigned char flag;
    while (fread(&len, 4, 1, f) == 1) {
        char *text = malloc(len + 1);
        if (len && fread(text, 1, len, f) != len) return 1;
        if (fread(&flag, 1, 1, f) != 1) return 1;
        int cap = (int)len + 16;
        llama_token *toks = malloc(sizeof(llama_token) * cap);
        int n = llama_tokenize(vocab, text, (int32_t)len, toks, cap, false, flag != 0);
        if (n < 0) { cap = -n; toks = realloc(toks, sizeof(llama_token) * cap);
                     n = llama_tokenize(vocab, text, (int32_t)len, toks, cap, false, flag != 0); }
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
        printf("\n");
        free(text); free(toks);
    }
    llama_model_free(model);
    return 0;
}
"""


def llama_cpp_helper():
    CACHE.mkdir(parents=True, exist_ok=True)
    src = CACHE / "tokenize_many.c"
    exe = CACHE / "tokenize_many"
    src.write_text(HELPER_C)
    bindir = LLAMA_CPP / "build" / "bin"
    subprocess.run(
        ["cc", "-O2", "-o", str(exe), str(src), f"-I{LLAMA_CPP / 'include'}", f"-I{LLAMA_CPP / 'ggml' / 'include'}",
         f"-L{bindir}", "-lllama", f"-Wl,-rpath,{bindir}"],
        check=True,
    )
    return exe


def llama_cpp_tokenize(exe, gguf, texts, parse_special):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        for t in texts:
            b = t.encode("utf-8")
            f.write(len(b).to_bytes(4, "little") + b + (b"\x01" if parse_special else b"\x00"))
        name = f.name
    try:
        out = subprocess.run([str(exe), str(gguf), name], check=True, capture_output=True).stdout.decode()
    finally:
        os.unlink(name)
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == len(texts) + 1, (len(lines), len(texts))
    return [[int(x) for x in l.split()] for l in lines[:-1]]


# ---------------------------------------------------------------------------------------------
def tiktoken_llama3():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(ASSETS / "llama3-meta" / "tokenizer.model"))
    n = len(ranks)
    # Meta's llama-models 0.3.0 `llama3/tokenizer.py`: the special tokens after the ranked ones.
    named = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
             "<|eot_id|>", "<|python_tag|>", "<|image|>"]
    specials = named + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(named))]
    return tiktoken.Encoding(name="llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                             special_tokens={t: n + i for i, t in enumerate(specials)})


def train_spm_tiny():
    import sentencepiece as spm

    text = "\n".join((ASSETS / "corpus" / n).read_text(encoding="utf-8")
                     for n in ["hamlet_gut.txt", "julius_caesar_gut.txt", "macbeth_gut.txt"])
    with tempfile.TemporaryDirectory() as d:
        inp = Path(d) / "train.txt"
        inp.write_text(text, encoding="utf-8")
        spm.set_random_generator_seed(SEED)  # training samples sentences at random
        spm.SentencePieceTrainer.train(
            input=str(inp), model_prefix=str(Path(d) / "m"), model_type="bpe", vocab_size=1000,
            byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=True, split_digits=True, character_coverage=1.0,
            user_defined_symbols=["<ud>", "camelid"], control_symbols=["<ctrl>"],
            num_threads=1, minloglevel=2,
        )
        data = (Path(d) / "m.model").read_bytes()
    # The trainer records its input and output paths; drop them (machine-specific, and they
    # would make every run's file differ).
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(data)
    proto.trainer_spec.ClearField("input")
    proto.trainer_spec.ClearField("model_prefix")
    data = proto.SerializeToString()
    (OUT_DIR / "spm-tiny.model").write_bytes(data)
    return spm.SentencePieceProcessor(model_proto=data)


def spm_tiny_json(sp):
    """The same vocabulary as a Hugging Face tokenizer.json of the Llama 2 kind, built with the
    `tokenizers` library: BPE with byte fallback whose merges are every split of a piece into two
    pieces, best merged score first (as transformers' SentencePiece converter orders them), a
    Prepend("▁") + Replace(" ", "▁") normalizer, control pieces as special added tokens and
    user-defined pieces as plain added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    vocab = {p: i for i, p in enumerate(pieces)}
    mergeable = [i for i in range(n) if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))]
    merges = []
    for i in sorted(mergeable, key=lambda i: (-sp.get_score(i), i)):
        p = pieces[i]
        for k in range(1, len(p)):
            left, right = p[:k], p[k:]
            if left in vocab and right in vocab and vocab[left] in mergeable and vocab[right] in mergeable:
                merges.append((left, right))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(pieces[i], special=True, normalized=False)
                            for i in range(n) if sp.is_control(i) or sp.is_unknown(i)])
    user = [pieces[i] for i in mergeable if pieces[i] in ("<ud>", "camelid")]
    tok.add_tokens([AddedToken(p, special=False, normalized=False) for p in user])
    tok.save(str(OUT_DIR / "spm-tiny.json"))
    tok.encode_special_tokens = True
    return tok


def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    strings = build_strings()
    line = long_line(SEED)
    print(f"{len(strings)} strings; long line {len(line.encode())} bytes", file=sys.stderr)

    enc = tiktoken_llama3()
    llama3 = [enc.encode(s, allowed_special=set(), disallowed_special=()) for s in strings]
    llama3_special = {i: enc.encode(s, allowed_special="all") for i, s in enumerate(strings) if is_special_like(s)}

    # Cross-check: Hugging Face tokenizers on tokenizer.json, special tokens not parsed.
    from tokenizers import Tokenizer as HfTokenizer

    hf = HfTokenizer.from_file(str(ASSETS / "llama3-hf" / "tokenizer.json"))
    hf.encode_special_tokens = True
    hf_bad = [i for i, s in enumerate(strings) if hf.encode(s, add_special_tokens=False).ids != llama3[i]]
    hf.encode_special_tokens = False

    exe = llama_cpp_helper()
    gguf_bpe = ASSETS / "llama-bpe" / "ggml-vocab-llama-bpe.gguf"
    gguf_spm = ASSETS / "llama-spm" / "ggml-vocab-llama-spm.gguf"
    gguf_smol = ASSETS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    cpp_llama3 = llama_cpp_tokenize(exe, gguf_bpe, strings, False)
    cpp_bad = [i for i in range(len(strings)) if cpp_llama3[i] != llama3[i]]

    spm_ids = llama_cpp_tokenize(exe, gguf_spm, strings, False)
    smol_ids = llama_cpp_tokenize(exe, gguf_smol, strings, False)
    special_idx = sorted(llama3_special)
    special_texts = [strings[i] for i in special_idx]
    spm_special = dict(zip(special_idx, llama_cpp_tokenize(exe, gguf_spm, special_texts, True)))
    smol_special = dict(zip(special_idx, llama_cpp_tokenize(exe, gguf_smol, special_texts, True)))
    # The GGUF and tokenizer.json of Llama 3 name some special tokens as Llama 3.0 did
    # (<|reserved_special_token_2|> where Meta's newer tokenizer.py says <|finetune_right_pad_id|>),
    # so with special tokens parsed their reference is llama.cpp on the GGUF, checked against HF.
    bpe_special = dict(zip(special_idx, llama_cpp_tokenize(exe, gguf_bpe, special_texts, True)))
    hf_special_bad = [i for i in special_idx if hf.encode(strings[i], add_special_tokens=False).ids != bpe_special[i]]
    print(f"llama3 (GGUF names, special parsed): HF tokenizers differs from llama.cpp on {len(hf_special_bad)}",
          file=sys.stderr)

    sp = train_spm_tiny()
    tiny = [sp.encode(s) for s in strings]
    tiny_hf = spm_tiny_json(sp)
    tiny_json = [tiny_hf.encode(s, add_special_tokens=False).ids for s in strings]
    n_same = sum(a == b for a, b in zip(tiny, tiny_json))
    print(f"spm_tiny: HF tokenizers on spm-tiny.json equals sentencepiece on {n_same} of {len(strings)}",
          file=sys.stderr)

    for name, bad in [("HF tokenizers", hf_bad), ("llama.cpp llama-bpe", cpp_bad)]:
        print(f"llama3: {name} differs from tiktoken on {len(bad)} strings", file=sys.stderr)
        for i in bad[:10]:
            print(f"  {strings[i]!r}", file=sys.stderr)
    # Strings where the Llama 3 references disagree are kept (tiktoken is the reference) but
    # marked, so the tests can say which reference they follow.
    with open(OUT_DIR / "corpus.jsonl", "w", encoding="utf-8") as f:
        header = {
            "generator": "tools/tokenizer_corpus.py",
            "references": {
                "llama3": "tiktoken " + __import__("tiktoken").__version__ + ", Meta tokenizer.model and pattern",
                "llama_spm": "llama.cpp (llama-cpp-python 0.3.36 vendor tree), ggml-vocab-llama-spm.gguf",
                "smollm2": "llama.cpp, SmolLM2-135M-Instruct.Q4_1.gguf",
                "spm_tiny": "sentencepiece " + __import__("sentencepiece").__version__ + ", spm-tiny.model",
                "spm_tiny_json": "HF tokenizers " + __import__("tokenizers").__version__ + ", spm-tiny.json",
            },
            "long_line": {"seed": SEED, "bytes": len(line.encode()), "fnv1a64": f"{fnv1a64(line.encode()):016x}"},
        }
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for i, s in enumerate(strings):
            rec = {"text": s, "llama3": llama3[i], "llama_spm": spm_ids[i], "smollm2": smol_ids[i], "spm_tiny": tiny[i]}
            # Stored only where HF tokenizers and sentencepiece disagree; elsewhere it equals spm_tiny.
            if tiny_json[i] != tiny[i]:
                rec["spm_tiny_json"] = tiny_json[i]
            if i in hf_bad:
                rec["hf_differs"] = True
            if i in cpp_bad:
                rec["llama_cpp_llama3"] = cpp_llama3[i]
            if i in llama3_special:
                rec["special"] = {"llama3": llama3_special[i], "llama3_gguf": bpe_special[i],
                                  "llama_spm": spm_special[i], "smollm2": smol_special[i]}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        rec = {
            "long_line": True,
            "llama3": enc.encode(line, allowed_special=set(), disallowed_special=()),
            "llama_spm": llama_cpp_tokenize(exe, gguf_spm, [line], False)[0],
            "smollm2": llama_cpp_tokenize(exe, gguf_smol, [line], False)[0],
            "spm_tiny": sp.encode(line),
            "spm_tiny_json": tiny_hf.encode(line, add_special_tokens=False).ids,
        }
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    size = (OUT_DIR / "corpus.jsonl").stat().st_size
    print(f"wrote {OUT_DIR / 'corpus.jsonl'} ({size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
