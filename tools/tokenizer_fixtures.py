#!/usr/bin/env python3
"""Writes the tokenizer fixtures that tests/tokenizer_test.ts compares io/tokenizer.ts against.

Usage: python3 tools/tokenizer_fixtures.py tests/fixtures/tokenizers

Needs only the `tokenizers` package (0.2x) and the standard library; no network. It trains three
small tokenizers on the corpus below (deterministic: the trainers are single-threaded for this
corpus size and the corpus is fixed), then records what Python's `tokenizers` makes of a few
hundred test strings:

  bpe/             SentencePiece-style BPE as Llama 2 / Mistral ship it: no pre-tokenizer,
                   Prepend + Replace normalizers, byte fallback, a BOS template, the
                   Replace/ByteFallback/Fuse/Strip decoder. Chat template: list form.
  byte_level_bpe/  GPT-2 style byte-level BPE. Chat template: ChatML string.
  unigram/         SentencePiece-style Unigram (T5-like): NFKC + space-run normalizer,
                   Metaspace pre-tokenizer and decoder, an EOS template. No chat template.

Each folder gets tokenizer.json, tokenizer_config.json, cases.json (a list of
{text, ids, ids_no_special?, decoded, decoded_skip?}: `ids` is encode(text).ids with special
tokens, `ids_no_special` is there when add_special_tokens=False differs, `decoded` is
decode(ids, skip_special_tokens=False), `decoded_skip` is there when skipping differs) and
meta.json. Where jinja2 is importable, chat.json holds chat templates rendered the way
transformers renders them.

Folders it does not write (the hand-written tiny/ and tiny_byte_level/) are checked instead:
every case there must match Python, or the script exits with status 1.
"""

import json
import os
import random
import sys

import tokenizers
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

# Mixed prose, code and unicode. Documents are trained on whole, newlines included.
CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran "
    "into the forest before anyone could say a word.\nIt was the best of times, it was the "
    "worst of times, it was the age of wisdom, it was the age of foolishness.",
    "Language models predict the next token. A model with several heads predicts the next few "
    "tokens at once; a verifier keeps the longest prefix that the model itself would have "
    "written, so the output is the same as greedy decoding, in fewer steps.",
    "I'm sure you're right, but we've seen this before: they'll say it's fine and we'd "
    "believe them. Don't you think so? Yes! No... maybe; (perhaps) [probably] {certainly}.",
    "Numbers: 0 1 2 3 42 1234 3.14159 2.71828 1e-9 0x1F 100% $19.99 #7 2026-11-22 12:30:45.",
    "function add(a, b) {\n  return a + b;\n}\n\nconst xs = [1, 2, 3].map((x) => x * 2);\n"
    "console.log(`sum: ${xs.reduce((s, x) => s + x, 0)}`);\n",
    "export interface Token {\n  id: number;\n  text: string;\n}\n\nexport async function* "
    "stream(ids: number[]): AsyncGenerator<string> {\n\tfor (const id of ids) {\n\t\tyield "
    "String(id);\n\t}\n}\n",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + "
    "fib(n - 2)\n\n\nclass Greeter:\n    def __init__(self, name):\n        self.name = name\n"
    "\n    def greet(self):\n        print(f\"Hello, {self.name}!\")\n",
    "Windows line endings:\r\nfirst line\r\nsecond line\r\n\r\nTabs\tbetween\twords\t\tand "
    "    runs   of  spaces.",
    "Café, naïve, résumé, façade, jalapeño, Zürich, Ærøskøbing, Łódź, Škoda, Ångström, "
    "crème brûlée, déjà vu, coöperate. Decomposed: cafe\u0301, e\u0301te\u0301, n\u0303.",
    "Ελληνικά: καλημέρα κόσμε. Русский: привет, мир! Українська: добрий день. "
    "Български: здравей.",
    "日本語の文章です。東京は大きな都市です。ひらがなとカタカナ、そして漢字。"
    "中文：你好，世界！我们今天学习分词器。한국어: 안녕하세요, 세계!",
    "Emoji: 🙂 😀 🎉 👍 👍🏽 ❤️ 🚀 🌍 👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 ✨ 🔥 🤖 — "
    "and symbols: © ® ™ € £ ¥ ∑ ∞ ≠ ≤ ≥ → ← ✓ ½ ¼ °C µs.",
    "עברית: שלום עולם, מה שלומך? العربية: مرحبا بالعالم، كيف حالك؟ "
    "فارسی: سلام دنیا. Mixed: the word שלום means peace.",
    "हिन्दी: नमस्ते दुनिया। বাংলা: হ্যালো বিশ্ব। தமிழ்: வணக்கம் உலகம். ไทย: สวัสดีชาวโลก",
    "Combining marks: a\u0301 e\u0300 o\u0308 u\u0302 n\u0303 c\u0327 "
    "Z\u0351\u0354a\u0352l\u0357g\u0350o\u0346 and variation selectors: ☺\ufe0f ☺\ufe0e.",
    "Whitespace runs:      five spaces, \t\t two tabs, \n\n\n three newlines,\u00a0nbsp, "
    "\u2003em space, \u3000ideographic space.",
    "<html>\n  <body class=\"main\">\n    <p>Hello &amp; welcome!</p>\n  </body>\n</html>\n"
    "{\"key\": \"value\", \"list\": [1, 2, 3], \"nested\": {\"ok\": true, \"none\": null}}",
    "SELECT name, COUNT(*) AS n FROM users WHERE age >= 18 GROUP BY name ORDER BY n DESC;\n"
    "$ deno test -A tests/tokenizer_test.ts && git status --short | grep '^??'",
    "The engine reads the weights once, keeps the decode loop on the GPU, and streams the "
    "tokens back to the host in chunks. Each chunk is a list of token ids; the text stream "
    "turns them into text that never splits a character.",
]

SPECIALS = ["<unk>", "<s>", "</s>"]
CHAT_SPECIALS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]

LLAMA2_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
TOOL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}[{{ message['role'] }}] "
    "{{ message['content'] }}\n{% endfor %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CONVERSATIONS = [
    [{"role": "user", "content": "Hi there "}],
    [
        {"role": "user", "content": "Hi there "},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Héllo 🙂\nnew line"},
    ],
]


def build_bpe():
    """SentencePiece-style BPE, laid out as Llama 2's tokenizer.json."""
    # Trained with a Metaspace split so that no merge crosses a word boundary, as sentencepiece
    # trains; the shipped tokenizer has no pre-tokenizer, like Llama 2's.
    trainee = Tokenizer(models.BPE())
    trainee.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    trainee.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="never", split=True
    )
    # limit_alphabet leaves rare characters (most CJK, emoji) out, so they take the byte path.
    trainer = trainers.BpeTrainer(
        vocab_size=420, min_frequency=2, show_progress=False, limit_alphabet=90
    )
    trainee.train_from_iterator(CORPUS, trainer=trainer)
    learned = json.loads(trainee.to_str())["model"]

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]

    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0",
        pair="<s>:0 $A:0 <s>:1 $B:1",
        special_tokens=[("<s>", tok.token_to_id("<s>"))],
    )
    config = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": [
            {"name": "default", "template": LLAMA2_TEMPLATE},
            {"name": "tool_use", "template": TOOL_TEMPLATE},
        ],
    }
    return tok, config


def build_byte_level_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        min_frequency=2,
        show_progress=False,
        special_tokens=CHAT_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    config = {
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHATML_TEMPLATE,
    }
    return tok, config


def build_unigram():
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="always", split=True
    )
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(
        vocab_size=600,
        show_progress=False,
        special_tokens=SPECIALS,
        unk_token="<unk>",
        max_piece_length=12,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A:0 </s>:0",
        pair="$A:0 </s>:0 $B:1 </s>:1",
        special_tokens=[("</s>", tok.token_to_id("</s>"))],
    )
    config = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "T5TokenizerFast",
    }
    return tok, config


# Character pools for random strings. Left out on purpose: U+0085 and U+FEFF, which JavaScript's
# \s and Oniguruma's \s class differently (README.md in the fixtures folder), lone surrogates,
# which Python cannot encode, and characters of recent Unicode versions, where the regex
# engines' tables may differ.
POOL = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÉÎÕÜŁłŚśŽžĞğİı"
    "αβγδεζηθλμπσωΑΒΓΔΩабвгдежзийклмнопрстуфхцчшщыэюяЖЩЯ"
    "שלוםעברית" "مرحباعربي" "नमस्तेहिन्दी" "ািবাংলা"
    "日本語中文字漢東京你好世界学习分词器的一是不了人我在有他这"
    "ひらがなカタカナあいうえおアイウエオ" "한국어안녕하세요"
    "🙂😀🎉👍🏽❤🚀🌍✨🔥🤖" "\u200d\ufe0f\u0301\u0300\u0308\u0327\u0303"
    "©®™€£¥∑∞≠≤≥→←✓½°µﬁﬂ①②③ＡＢＣ１２３"
    "\u00a0\u2003\u3000\u2581"
)
WHITESPACE = [" ", "  ", "   ", "     ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\n    ", "\u00a0"]
PUNCT = list(".,;:!?()[]{}<>\"'`~@#$%^&*-_=+/\\|") + ["...", "->", "=>", "!=", "'s", "'ll", "n't"]
SPECIAL_TEXT = ["<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<s", "</", "|>"]

FIXED = [
    "", " ", "  ", "\n", "\t", "\r\n", "a", "Hello world", " Hello", "Hello ", "Hello  world",
    "hello\nworld", "<s>", "</s>", "<unk>", "<s>Hello</s>", "Hi <s> there </s> !",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "\u2581", "\u2581\u2581x",
    "café", "cafe\u0301", "naïve résumé", "日本語のテキスト", "中文字符", "🙂", "👍🏽",
    "👨\u200d👩\u200d👧\u200d👦", "שלום עולם", "مرحبا بالعالم", "नमस्ते", "한국어", "Ünïcödé",
    "ﬁ ligature", "①②③", "ＦＵＬＬ width", "x" * 1000, "ab" * 300, "🙂" * 64, "a\u0301" * 50,
    " " * 40, "\t\t\tindent", "line1\r\nline2\r\n", "def f(x):\n    return x ** 2\n",
    "const x = () => { return 42; };", "1234567890", "3.14159", "ok!?!?",
    "'s 't 're 've 'm 'll 'd", "I'm you're we've they'll", "a\u00a0b", "a\u2028b",
    "trailing spaces   ", "   leading spaces", "mixed \t \n whitespace", "🙂🙂 🙂", "é" * 33,
    "The quick brown fox jumps over the lazy dog.",
]


def make_texts(rng):
    texts = list(FIXED)
    flat = "\n\n".join(CORPUS)
    words = flat.split()
    for _ in range(110):
        n = rng.randint(1, 160)
        start = rng.randrange(0, len(flat) - n)
        texts.append(flat[start : start + n])
    for _ in range(160):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.35:
                parts.append(rng.choice(words))
            elif r < 0.55:
                parts.append(rng.choice(WHITESPACE))
            elif r < 0.75:
                parts.append("".join(rng.choice(POOL) for _ in range(rng.randint(1, 6))))
            elif r < 0.85:
                parts.append(rng.choice(PUNCT))
            elif r < 0.93:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
            else:
                parts.append(rng.choice(SPECIAL_TEXT))
        texts.append("".join(parts))
    seen = set()
    return [t for t in texts if not (t in seen or seen.add(t))]


def case_of(tok, text):
    ids = tok.encode(text).ids
    plain = tok.encode(text, add_special_tokens=False).ids
    case = {"text": text, "ids": ids}
    if plain != ids:
        case["ids_no_special"] = plain
    case["decoded"] = tok.decode(ids, skip_special_tokens=False)
    skipped = tok.decode(ids, skip_special_tokens=True)
    if skipped != case["decoded"]:
        case["decoded_skip"] = skipped
    return case


def write_json(path, value, indent=1):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def chat_cases(config):
    """Renders the conversations as transformers does; None where jinja2 is missing."""
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    template = config["chat_template"]
    if isinstance(template, list):
        template = next(t["template"] for t in template if t["name"] == "default")
    compiled = env.from_string(template)
    out = []
    for messages in CONVERSATIONS:
        for add_generation_prompt in (True, False):
            try:
                expected = compiled.render(
                    messages=messages,
                    add_generation_prompt=add_generation_prompt,
                    bos_token=config.get("bos_token") or "",
                    eos_token=config.get("eos_token") or "",
                )
            except jinja2.exceptions.TemplateError as e:
                expected = None
                error = str(e)
            entry = {"messages": messages, "add_generation_prompt": add_generation_prompt}
            if expected is None:
                entry["error"] = error
            else:
                entry["expected"] = expected
            out.append(entry)
    return out


def check_hand_written(root, generated):
    """Compares hand-written fixtures with Python; returns the number of mismatches."""
    bad = 0
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        cases_file = os.path.join(folder, "cases.json")
        if name in generated or not os.path.isfile(cases_file):
            continue
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        with open(cases_file, encoding="utf-8") as f:
            cases = json.load(f)
        for case in cases:
            got = case_of(tok, case["text"])
            for key in ("ids", "ids_no_special", "decoded", "decoded_skip"):
                want = case.get(key, case["ids"] if key == "ids_no_special" else case.get("decoded"))
                have = got.get(key, got["ids"] if key == "ids_no_special" else got.get("decoded"))
                if want != have:
                    bad += 1
                    print(f"MISMATCH {name} {case['text']!r} {key}: fixture {want!r}, python {have!r}")
        print(f"checked {name}: {len(cases)} cases")
    return bad


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tools/tokenizer_fixtures.py tests/fixtures/tokenizers")
    root = sys.argv[1]
    os.makedirs(root, exist_ok=True)
    texts = make_texts(random.Random(20261122))
    builders = {"bpe": build_bpe, "byte_level_bpe": build_byte_level_bpe, "unigram": build_unigram}
    for name, build in builders.items():
        tok, config = build()
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        tok.save(os.path.join(folder, "tokenizer.json"), pretty=False)
        write_json(os.path.join(folder, "tokenizer_config.json"), config)
        cases = [case_of(tok, t) for t in texts]
        write_json(os.path.join(folder, "cases.json"), cases, indent=None)
        write_json(
            os.path.join(folder, "meta.json"),
            {
                "generator": "tools/tokenizer_fixtures.py",
                "tokenizers": tokenizers.__version__,
                "vocab_size": tok.get_vocab_size(with_added_tokens=True),
                "cases": len(cases),
            },
        )
        chat_file = os.path.join(folder, "chat.json")
        chat = chat_cases(config) if "chat_template" in config else None
        if chat is not None:
            write_json(chat_file, chat)
        elif os.path.exists(chat_file):
            os.remove(chat_file)
        size = os.path.getsize(os.path.join(folder, "tokenizer.json"))
        print(f"wrote {name}: vocab {tok.get_vocab_size(True)}, {len(cases)} cases, tokenizer.json {size} bytes")
    if check_hand_written(root, set(builders)) > 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
