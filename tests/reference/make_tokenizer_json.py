#!/usr/bin/env python3
"""Reference data for tests/test_tokenizer_json.cc: two byte-level BPE tokenizer.json files
trained with Hugging Face `tokenizers`, a corpus of varied lines and the ids `tokenizers`
gives each line.

Pinned: tokenizers==0.23.3 (the only package needed). Run by hand from the repository root:

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers==0.23.3
    /tmp/tokvenv/bin/python tests/reference/make_tokenizer_json.py

It trains on the plain-English fortunes corpus (/usr/share/games/fortunes, Debian package
`fortunes`) plus generated text, and writes, under tests/golden/:

    tokenizer_llama3/   tokenizer.json, tokenizer_config.json   Llama 3 style: Split(Llama 3
                        regex) + ByteLevel(use_regex=false), ignore_merges, special tokens after
                        the vocabulary, TemplateProcessing adding <|begin_of_text|>; merges
                        as ["a", "b"] pairs (transformers 5 / tokenizers >= 0.20)
    tokenizer_qwen2/    tokenizer.json, tokenizer_config.json   Qwen2 style: NFC normalizer,
                        Split(Qwen2 regex) + ByteLevel(use_regex=false), <|endoftext|> inside
                        the model vocabulary, <|im_start|>/<|im_end|> after it, <think> as a
                        non-special added token, ByteLevel post-processor; merges as "a b"
                        strings (the transformers 4 spelling)
    tokenizer_gpt2/     tokenizer.json   GPT-2 style: ByteLevel(add_prefix_space=true,
                        use_regex=true) alone, no ignore_merges
    fuzz/corpus/tokenizer_json/   small seeds for fuzz/fuzz_tokenizer_json.cc: the three styles
                        trained to 300 tokens on a few lines, compact, plus refused variants
    tokenizer_corpus.txt     one corpus line per line; backslash, CR, LF and other control
                             characters (not tab) are escaped as \\\\, \\r, \\n, \\xHH
    tokenizer_<name>/expected_ids.txt   the ids of each corpus line (add_special_tokens=False),
                             space-separated, one line per corpus line (gpt2: the first 3000)
    tokenizer_<name>/decoded_diff.txt   "line<TAB>escaped text" for each corpus line whose
                             decode(encode(line)) is not the line itself (NFC changed it);
                             not for gpt2, whose add_prefix_space puts a space before pieces

The output is deterministic (fixed seeds, one thread); running it twice gives the same bytes.
"""
import json
import os
import random
import sys
import unicodedata
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"

import tokenizers  # noqa: E402
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,  # noqa: E402
                        pre_tokenizers, processors, trainers)

PINNED = "0.23.3"
if tokenizers.__version__ != PINNED:
    sys.exit(f"make_tokenizer_json.py: needs tokenizers=={PINNED}, found {tokenizers.__version__}")

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
FORTUNES = Path("/usr/share/games/fortunes")

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
VOCAB = 3000
CORPUS_LINES = 10000


def fortunes():
    """The fortune entries (text between '%' lines), in a fixed file order."""
    entries = []
    for f in sorted(FORTUNES.iterdir()):
        if f.suffix in (".dat", ".u8") or not f.is_file():
            continue
        text = f.read_bytes().decode("utf-8", errors="replace")
        for e in text.split("\n%\n"):
            e = e.strip("\n")
            if e and e != "%":
                entries.append(e)
    return entries


WORDS_OTHER = [
    "café", "naïve", "façade", "Ångström", "Øresund", "straße", "Œuvre", "jalapeño", "São Paulo",
    "Ελληνικά", "Καλημέρα", "κόσμε", "ΑΒΓΔ", "Привет", "мир", "Ёлка", "Україна", "съешь",
    "日本語", "東京", "你好", "世界", "中文字符", "한국어", "안녕하세요", "ひらがな", "カタカナ",
    "नमस्ते", "مرحبا", "שלום", "ภาษาไทย", "Tiếng Việt", "ǅemal", "ﬁne", "①②③", "Ⅻ", "½",
    "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🤖", "🎉🎉", "∑∫√∞", "€100", "£5", "¥", "→←↑", "©®™",
]
# Decomposed and otherwise non-NFC text: NFC (Qwen2's normalizer) changes these.
NON_NFC = [
    "e\u0301", "cafe\u0301", "a\u0308o\u0308u\u0308", "\u212b", "\u2126hm", "\u1100\u1161\u11a8",
    "q\u0323\u0307", "q\u0307\u0323", "\u0041\u030a", "\u00c5\u0301", "\u0958", "\uf900",
    "n\u0303", "\u03b1\u0313\u0301", "\u0344", "\u1e9b\u0323", "x\u0301\u0301\u0301",
    "\u0301start", "\u0928\u093c", "\u09c7\u09be", "\uac00\u11a8", "\u0390", "\u0340",
]
CONTRACTIONS = ["DON'T", "don't", "We'Re", "i'M", "they'LL", "it'S", "You'VE", "he'D", "'s",
                "O'Neil", "rock'n'roll", "''", "'ll'll", "I'd've", "can't", "WON'T", "ʼs"]
PUNCT = ["!!!", "???", "...", "---", "<<>>", "{{}}", "()", "[]", ";;", "::", "#!", "@@", "$$",
         "%%", "^^", "&&", "**", "__", "==", "++", "~~", "||", "//", "\\\\", "\"", "“”", "«»",
         "—", "–", "…", "¿¡", "、。", "！？", "'", "`", ",", ".", "-", "<", "|"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", " \t ", "\n", "\n\n", "\n\n\n", "\r\n", " \n ",
          "\u00a0", "\u3000", "\u2009", "\u2028", "\u0085", "\u000b", "\u000c", "\u200b", "\u180e",
          "        ", " \n\n  \n"]
MARKERS = ["<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n", "<|endoftext|>",
           "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>",
           "<|start_header_id|>assistant<|end_header_id|>\n\n",
           "<|start_header_id|>user<|end_header_id|>", "<think>", "</think>", "<|im_start",
           "<|eot_id", "<|begin_of_text|><|begin_of_text|>", "< |im_end| >", "<|>", "<|"]


def number(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randrange(10))
    if kind == 1:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 40)))
    if kind == 2:
        return f"{rng.randrange(10**9):,}"
    if kind == 3:
        return f"{rng.random() * 10**rng.randint(0, 8):.{rng.randint(1, 6)}f}"
    if kind == 4:
        return f"-{rng.randrange(10**5)}e{rng.randint(-20, 20)}"
    return rng.choice(["٣٤٥", "१२३", "１２３", "²³", "0x1F", "v1.2.3", "2024-01-31", "12:30:45"])


def generated_line(rng, fortune_words):
    parts = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.40:
            parts.append(rng.choice(fortune_words))
        elif r < 0.50:
            parts.append(rng.choice(WORDS_OTHER))
        elif r < 0.55:
            parts.append(rng.choice(NON_NFC))
        elif r < 0.62:
            parts.append(rng.choice(CONTRACTIONS))
        elif r < 0.70:
            parts.append(number(rng))
        elif r < 0.78:
            parts.append(rng.choice(PUNCT) * rng.randint(1, 3))
        elif r < 0.85:
            parts.append(rng.choice(MARKERS))
        else:
            word = rng.choice(fortune_words)
            parts.append(rng.choice([word.upper(), word.title(), word.swapcase()]))
        sep = rng.choice(SPACES) if rng.random() < 0.3 else " "
        parts.append(sep)
    if rng.random() < 0.7:
        parts.pop()  # most lines do not end in whitespace
    return "".join(parts)


def corpus(rng, entries):
    words = sorted({w for e in entries[:3000] for w in e.split()})
    lines = []
    while len(lines) < CORPUS_LINES:
        r = rng.random()
        if r < 0.12:
            lines.append(rng.choice(entries))  # a whole fortune, newlines and all
        elif r < 0.25:
            e = rng.choice(entries).split("\n")
            lines.append(rng.choice(e))
        else:
            lines.append(generated_line(rng, words))
    lines.append("")  # the empty line
    lines.append("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>")
    lines.append("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>")
    lines.append(" " * 40 + "\t" * 5 + "\n" * 7)
    lines.append("9" * 200)
    lines.append("a" * 300)
    return lines


def training_texts(entries):
    rng = random.Random(1)
    words = sorted({w for e in entries for w in e.split()})
    return entries + [generated_line(rng, words) for _ in range(20000)]


def escape(line):
    out = []
    for ch in line:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch != "\t" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def bpe_trainer(special_tokens):
    return trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, show_progress=False,
                               special_tokens=special_tokens,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def llama3(texts):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, bpe_trainer([]))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
              "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, config


def qwen2(texts):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, bpe_trainer(["<|endoftext|>"]))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in ["<|im_start|>", "<|im_end|>"]])
    tok.add_tokens([AddedToken(s, special=False, normalized=False)
                    for s in ["<think>", "</think>"]])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "tokenizer_class": "Qwen2Tokenizer"}
    return tok, config


def gpt2(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, bpe_trainer(["<|endoftext|>"]))
    return tok, None


def write(name, tok, config, lines, legacy_merges=False, prefix_space=False, limit=None):
    out = GOLDEN / f"tokenizer_{name}"
    out.mkdir(parents=True, exist_ok=True)
    data = json.loads(tok.to_str())
    if legacy_merges:
        data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    (out / "tokenizer.json").write_text(text, encoding="utf-8")
    if config is not None:
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))  # what was written, read back
    ids_out, diff_out = [], []
    for i, line in enumerate(lines[:limit]):
        ids = tok.encode(line, add_special_tokens=False).ids
        ids_out.append(" ".join(map(str, ids)))
        back = tok.decode(ids, skip_special_tokens=False)
        if back != line:
            expected = unicodedata.normalize("NFC", line)
            if not prefix_space and back != expected:
                sys.exit(f"{name}: line {i + 1} decodes to {back!r}, not {expected!r}")
            diff_out.append(f"{i + 1}\t{escape(back)}")
    (out / "expected_ids.txt").write_text("\n".join(ids_out) + "\n", encoding="utf-8")
    if not prefix_space:  # with a space before every piece, decoding is not checked
        (out / "decoded_diff.txt").write_text("".join(d + "\n" for d in diff_out),
                                              encoding="utf-8")
    if data["model"].get("ignore_merges"):
        data["model"]["ignore_merges"] = False
        plain = Tokenizer.from_str(json.dumps(data))
        changed = sum(plain.encode(x, add_special_tokens=False).ids != list(map(int, y.split()))
                      for x, y in zip(lines, ids_out))
        print(f"{name}: ignore_merges changes the ids of {changed} lines")
    print(f"{name}: vocab {tok.get_vocab_size()}, {sum(len(x.split()) for x in ids_out)} ids, "
          f"{len(diff_out)} lines changed by decode(encode())")


def fuzz_seeds(entries):
    out = ROOT / "fuzz" / "corpus" / "tokenizer_json"
    out.mkdir(parents=True, exist_ok=True)
    texts = entries[:200]
    global VOCAB
    saved, VOCAB = VOCAB, 300
    try:
        styles = {"llama3_tiny": llama3(texts)[0], "qwen2_tiny": qwen2(texts)[0],
                  "gpt2_tiny": gpt2(texts)[0]}
    finally:
        VOCAB = saved
    for name, tok in styles.items():
        data = json.loads(tok.to_str())
        if name == "qwen2_tiny":
            data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
        (out / name).write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                                encoding="utf-8")
    base = json.loads(styles["gpt2_tiny"].to_str())
    refused = {
        "unigram": lambda d: d["model"].update(type="Unigram"),
        "nfkc": lambda d: d.update(normalizer={"type": "NFKC"}),
        "unknown_merge": lambda d: d["model"]["merges"].append(["\u0120", "zzz"]),
    }
    for name, edit in refused.items():
        d = json.loads(json.dumps(base))
        edit(d)
        (out / name).write_text(json.dumps(d, ensure_ascii=False, separators=(",", ":")),
                                encoding="utf-8")


def main():
    entries = fortunes()
    fuzz_seeds(entries)
    texts = training_texts(entries)
    lines = corpus(random.Random(0), entries)
    (GOLDEN / "tokenizer_corpus.txt").write_text("".join(escape(x) + "\n" for x in lines),
                                                  encoding="utf-8")
    write("llama3", *llama3(texts), lines)
    write("qwen2", *qwen2(texts), lines, legacy_merges=True)
    write("gpt2", *gpt2(texts), lines, prefix_space=True, limit=3000)


if __name__ == "__main__":
    main()
