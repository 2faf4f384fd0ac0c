#!/usr/bin/env python3
"""Golden fixtures for the tokenizer (common/tokenizer/), made with HF `tokenizers` (the reference implementation).

Writes two small byte-level BPE tokenizers and the ids / decodes HF gives for a few hundred strings:
  data/tokenizer/            Falcon-style: Falcon's exact pre-tokenizer Sequence (Punctuation,
                             ByteLevel, Digits, Split "[0-9][0-9][0-9]"), Falcon's special tokens
                             as ids 0..11 and the OpenAssistant tokens appended. Merges are stored
                             in the old "a b" string form, as in Falcon's real tokenizer.json.
                             The tiny golden models use this tokenizer.json too.
  data/tokenizer_bytelevel/  GPT-2 / SmolLM2-style: ByteLevel pre-tokenizer alone, merges in the
                             ["a", "b"] list form.
  data/tokenizer_variants/   cases.json only: variants of the ByteLevel tokenizer (other
                             pre-tokenizers and behaviours, added-token options, ignore_merges) and
                             small whole tokenizers (unk tokens, no decoder), with HF's results.
Each folder gets tokenizer.json and cases.json: [{"text", "ids", "decode", "decode_skip"}], where
ids come from encode(text, add_special_tokens=False), decode from decode(ids,
skip_special_tokens=False) and decode_skip from decode(ids, skip_special_tokens=True).

It also regenerates common/tokenizer/unicode.c: the character classes HF's Rust code uses outside
its regexes (Punctuation's is_punctuation, Digits' char::is_numeric, the regex crate's \\w for
single_word added tokens), probed from HF itself so that the C tables follow HF's Unicode versions
rather than Oniguruma's.

Deterministic: the training text is written here or read from this interpreter's stdlib sources,
random strings use a fixed seed. Run with /work/refenv/bin/python; CI only reads the outputs.
"""
import inspect
import json
import os
import random

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers import AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))

FALCON_SPECIAL = [">>TITLE<<", ">>ABSTRACT<<", ">>INTRODUCTION<<", ">>SUMMARY<<", ">>COMMENT<<",
                  ">>ANSWER<<", ">>QUESTION<<", ">>DOMAIN<<", ">>PREFIX<<", ">>SUFFIX<<",
                  ">>MIDDLE<<", "<|endoftext|>"]
OA_SPECIAL = ["<|system|>", "<|prefix_end|>", "<|prefix_begin|>", "<|assistant|>", "<|prompter|>"]

PROSE = """\
The Falcon family of large language models was trained on RefinedWeb, a filtered web corpus.
FalconLite serves 11,000-token prompts on four A10G GPUs: 4-bit GPTQ weights, group size 128.
Dynamic NTK scaling changes the rotary base when the sequence grows beyond 2048 positions.
Question: what is 12 + 30? Answer: 42. Question: what's 1,234,567 * 89? It's 109,876,463.
"Hello," she said; 'it's done!' -- (really?) [yes] {ok} <tag> a/b\\c @user #hash $100 50% ^_^ ~x
We'll see; they're sure you've seen it, I'm told he'd go and she'll stay.
Prices: $3.99, EUR 4,50, 1e-5, 0x1F, 3.14159265358979, 2026-11-27T16:52:01Z, v1.2.3-rc.4.
Les élèves étudient à l'école; naïve café, façade, Ærøskøbing, straße, Ελληνικά, русский язык.
日本語のテキストと中文文本，还有한국어 문장。 Emoji: 🦅🚀👍🏽 👨‍👩‍👧 ❤️ ✨.
العربية تكتب من اليمين إلى اليسار. עברית גם כן.
Combining marks: e\u0301 a\u0308 n\u0303; ligatures ﬁ ﬂ; math ∑ ∫ √ ≤ ≥ ≠ ∞ π µ.
	Tabs	and    multiple   spaces,
trailing spaces   
and blank lines


end.
"""

CODE = '''\
def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

int main(int argc, char **argv) {
    for (int i = 0; i < argc; ++i) printf("%d: %s\\n", i, argv[i]);
    return 0;
}
x = {"key": [1, 2, 3], 'other': None}  # comment
if (a && b || !c) { y += 2; z -= 3; w *= 4; } // done
SELECT name, COUNT(*) FROM users WHERE id >= 100 GROUP BY name;
'''


def training_text():
    import textwrap, string, json.decoder, argparse, shlex, fractions
    parts = [PROSE * 20, CODE * 20]
    for mod in (textwrap, string, json.decoder, argparse, shlex, fractions):
        parts.append(inspect.getsource(mod))
    return parts


def falcon_pre_tokenizer():
    # Falcon's tokenizer.json pre_tokenizer, component for component.
    return pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated", invert=False),
    ])


def train(pre_tok, vocab_size, special, appended):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[AddedToken(s, special=True, normalized=False)
                                                  for s in special],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer=trainer)
    if appended:
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in appended])
    return tok


def case_strings(special_tokens, n_random):
    s = ["", " ", "a", "Hello world", "Hello, world!", " Hello", "hello  world", "HELLO World"]
    # digit runs of every length, alone and inside text
    for n in range(1, 13):
        d = "1234567890123"[:n]
        s += [d, "x" + d + "y", " " + d, "v" + d + "." + d[::-1]]
    s += ["0", "00", "000", "0000", "12,345", "3.14159", "1e10", "-42", "+7", "2026-11-27"]
    # whitespace runs
    s += ["  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "a \n b", "a\t\tb", "a   b",
          "a    ", "   a", "a\n", "\n\na", "x \t\n y", "tail \t ", "word\n\n\n\nword", "\u00a0a\u3000b",
          " \u2003 x", "a\u000bb\u000cc"]
    # punctuation runs, ASCII and Unicode
    s += ["!", "!!", "!!!", "?!?", "...", "…", "--", "—", "a--b", "(a)", "[[x]]", "{}", "'''",
          '"""', "a,b,c", "a, b, c", "«quoted»", "¿Qué?", "¡Hola!", "“smart” ‘quotes’", "@#$%^&*",
          "a.b.c.", "end.", "x=y+z", "a->b", "::", "//", "/* c */", "~~~", "§¶†‡", "中文，标点。",
          "x!y", " ,", ", ", "«»", "‐‑‒–—―", "(((((", ")))", "\\\\", "`code`"]
    # contractions and the GPT-2 regex alternatives
    s += ["don't", "I'm", "we'll", "you've", "they're", "he'd", "it's", "'s", "'S", "DON'T",
          "o'clock", "rock'n'roll", " 's", "'''s"]
    # unicode
    s += ["日本語", "中文文本", "한국어", "🦅", "🚀🚀", "👍🏽", "👨‍👩‍👧", "❤️", "e\u0301", "a\u0308\u0301",
          "Zalgo: z\u0351\u0307a\u0308\u0301l\u0352g\u0350o\u0303", "العربية", "עברית", "مرحبا بالعالم",
          "Ελληνικά", "русский язык", "naïve café", "straße", "ﬁ ﬂ", "∑∫√≤≥", "😀 😃 😄", "🏳️‍🌈",
          "\U0001f9d1\u200d\U0001f4bb", "\u200b", "\ufeffBOM", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ＡＢＣ１２３", "١٢٣٤٥",
          "Ⅻ ½ ² ³", "x²+y²", "\u0001soh", "\u007fdel", "\u0080\u00ff", "\U0010fffd"]
    # special tokens inside text
    for t in special_tokens:
        s += [t, "a" + t + "b", " " + t + " ", t + t]
    s += ["<|endoftext|><|endoftext|>x", "<|endoftext", "|endoftext|>", "<|endoftext|", ">>TITLE<",
          "<<TITLE>>", ">>title<<", "text >>TITLE<< text", "<|prompter|> hi <|assistant|>"]
    # the OpenAssistant prompt template
    s += ["<|prompter|>What is the capital of France?<|endoftext|><|assistant|>",
          "<|prompter|>Write a poem about falcons.<|endoftext|><|assistant|>Falcons soar.<|endoftext|>",
          "<|system|>You are helpful.<|endoftext|><|prompter|>Hi<|endoftext|><|assistant|>",
          "<|prefix_begin|>context<|prefix_end|><|prompter|>q<|endoftext|><|assistant|>"]
    # code and prose lines
    s += [line for line in CODE.split("\n") if line]
    s += [line for line in PROSE.split("\n") if line]
    s += [CODE, PROSE, (PROSE + CODE) * 3]
    rng = random.Random(1234)
    pool = (list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789     \t\n.,;:!?'\"()[]{}-_/\\@#$%&*+=<>|~`^")
            + list("éüßøñçЖжλΩ中文日本語한국🦅👍🏽❤️\u0301\u200d—…«»¿¡")
            + special_tokens[:3] + ["'s", "'re", "000", "  ", "\n\n"])
    for _ in range(n_random):
        s.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 60))))
    # dedup, keep order
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def byte_to_unicode():
    # GPT-2's reversible byte -> printable character map (the ByteLevel alphabet).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for x in range(256):
        if x not in bs:
            bs.append(x)
            cs.append(256 + n)
            n += 1
    return {x: chr(c) for x, c in zip(bs, cs)}


def hf_cases(tok, strings):
    cases = []
    for t in strings:
        ids = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": ids,
                      "decode": tok.decode(ids, skip_special_tokens=False),
                      "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    return cases


def merge_json(base, override):
    """override's keys replace base's; nested objects merge (what the C test does)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge_json(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def write_variants(folder, base_dir):
    """Pipeline pieces the two main fixtures do not use, as overrides of the ByteLevel fixture's
    tokenizer.json (or whole small tokenizers), each with HF's results on a few strings."""
    bl = lambda aps, regex: {"type": "ByteLevel", "add_prefix_space": aps, "trim_offsets": True,
                             "use_regex": regex}
    split = lambda pattern, behavior, invert=False: {"type": "Split", "pattern": pattern,
                                                     "behavior": behavior, "invert": invert}
    seq = lambda *p: {"type": "Sequence", "pretokenizers": list(p)}
    llama3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
              "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    added = lambda i, content, special=False, **kw: dict(
        {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": not special, "special": special}, **kw)
    small_vocab = {"a": 0, "b": 1, "c": 2, "-": 3, " ": 4, "ab": 5, "<unk>": 6, "b-": 7, "-c": 8}
    small = lambda **model: {"version": "1.0", "added_tokens": [], "normalizer": None,
                             "pre_tokenizer": None, "post_processor": None, "decoder": None,
                             "model": dict({"type": "BPE", "dropout": None, "unk_token": None,
                                            "continuing_subword_prefix": None,
                                            "end_of_word_suffix": None, "fuse_unk": False,
                                            "byte_fallback": False, "ignore_merges": False,
                                            "vocab": small_vocab, "merges": ["a b", "b -", "- c"]},
                                           **model)}
    variants = [
        ("punctuation_isolated", {"pre_tokenizer": seq({"type": "Punctuation", "behavior": "Isolated"},
                                                       bl(False, True))}),
        ("punctuation_merged_with_previous_prefix_space", {"pre_tokenizer": seq(
            {"type": "Punctuation", "behavior": "MergedWithPrevious"}, bl(True, True))}),
        ("punctuation_merged_with_next", {"pre_tokenizer": seq(
            {"type": "Punctuation", "behavior": "MergedWithNext"}, bl(False, True))}),
        ("punctuation_removed", {"pre_tokenizer": seq({"type": "Punctuation", "behavior": "Removed"},
                                                      bl(False, True))}),
        ("digits_individual", {"pre_tokenizer": seq({"type": "Digits", "individual_digits": True},
                                                    bl(False, True))}),
        ("bytelevel_prefix_space", {"pre_tokenizer": bl(True, True)}),
        ("bytelevel_no_regex", {"pre_tokenizer": bl(False, False)}),
        ("llama3_split_then_bytelevel", {"pre_tokenizer": seq(split({"Regex": llama3}, "Isolated"),
                                                              bl(False, False))}),
        ("split_invert_contiguous", {"pre_tokenizer": seq(split({"Regex": "\\p{L}+"}, "Contiguous", True),
                                                          bl(False, True))}),
        ("split_string_literals", {"pre_tokenizer": seq(split({"String": "'s"}, "MergedWithNext"),
                                                        bl(False, True),
                                                        split({"String": "\u0120"}, "Removed"),
                                                        split({"String": "a.b"}, "Isolated"))}),
        ("no_pre_tokenizer", {"pre_tokenizer": None}),
        ("ignore_merges", {"model": {"ignore_merges": True}}),
        ("added_token_options", {"added_tokens": [
            added(0, "<|endoftext|>", True), added(700, "[L]", True, lstrip=True),
            added(701, "[R]", rstrip=True), added(702, "the", single_word=True),
            added(703, " \u00e9", lstrip=True, rstrip=True, normalized=False),
            added(704, "<|endoftext|>x", normalized=False), added(705, "\u0120x", normalized=False)]}),
        ("small_split_string_behaviors", None),
        ("small_unk", small(unk_token="<unk>")),
        ("small_fused_unk", small(unk_token="<unk>", fuse_unk=True)),
    ]
    base = json.load(open(os.path.join(base_dir, "tokenizer.json"), encoding="utf-8"))
    rng = random.Random(99)
    pool = list("abc -xyz'sthe.é1234567890\t\n,;!?()[]") + ["[L]", "[R]", " the ", "'s", " é",
                                                              "<|endoftext|>", "a.b", "Ġx", "中文", "🦅"]
    strings = ["", "a", "ab-c--c", "Hello, world!", "don't stop", "x's", "12345678", "  a  b  ",
               "the cat", "athe the_ 3the the", "a [L]  [R]  b", "x é y", "<|endoftext|>xy",
               "a.b.c", "é1²³", "...!?", "\t\n x \n", "ⅷ½ 中文！", "🦅🦅 'S 's"]
    strings += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 25))) for _ in range(12)]
    out = []
    for name, override in variants:
        if name == "small_split_string_behaviors":
            for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
                tj = dict(small(), pre_tokenizer=split({"String": "-"}, behavior))
                tok = Tokenizer.from_str(json.dumps(tj))
                out.append({"name": "small_split_" + behavior, "base": None, "tokenizer": tj,
                            "cases": hf_cases(tok, ["ab-c--c", "-a-", "--", "abc"])})
            continue
        if "model" in override and "vocab" in override["model"]:
            tj, base_name = override, None
        else:
            tj, base_name = merge_json(base, override), "tokenizer_bytelevel"
        tok = Tokenizer.from_str(json.dumps(tj))
        out.append({"name": name, "base": base_name, "tokenizer": override,
                    "cases": hf_cases(tok, strings if base_name else ["abc", "axyzb", "axyb-c", "zz"])})
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
    return out


def write_fixture(tok, folder, strings, merges_as_strings):
    os.makedirs(folder, exist_ok=True)
    data = json.loads(tok.to_str())
    if merges_as_strings:
        data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                                   for m in data["model"]["merges"]]
    text = json.dumps(data, ensure_ascii=False, indent=1)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(text)
    # Re-load what was written so the cases describe the committed file.
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    cases = hf_cases(tok, strings)
    # Some id sequences that no encode produces: broken UTF-8 from splitting multi-byte tokens,
    # lone continuation bytes, specials mid-character.
    vocab = tok.get_vocab()
    alphabet = byte_to_unicode()
    b = lambda *xs: [vocab[alphabet[x]] for x in xs]  # ids of single-byte tokens
    eot = vocab["<|endoftext|>"]
    raw = [b(0xF0, 0x9F), b(0x9F), b(0xF0), b(0xF0, 0x61), b(0xF0) + [eot] + b(0x9F, 0xA6, 0x85),
           b(0xC3), b(0xC3, 0xA9), b(0xE2, 0x82), b(0xFF, 0xFE), b(0xED, 0xA0, 0x80),
           b(0xC0, 0xAF), b(0xF4, 0x90, 0x80, 0x80), b(0xE6, 0x97) + b(0xA5)]
    for ids in raw:
        cases.append({"text": None, "ids": ids,
                      "decode": tok.decode(ids, skip_special_tokens=False),
                      "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(folder, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    return tok, cases


def char_ranges(pred):
    """Inclusive codepoint ranges (surrogates excluded) where pred(char) holds."""
    out, start = [], None
    for cp in range(0x110001):
        ok = cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF and pred(chr(cp))
        if ok and start is None:
            start = cp
        if not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def write_unicode_tables(path):
    punct = pre_tokenizers.Punctuation(behavior="isolated")
    digits = pre_tokenizers.Digits(individual_digits=True)
    word = Tokenizer.from_str(json.dumps({
        "version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
        "added_tokens": [{"id": 1, "content": "Q", "single_word": True, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": False}]}))
    # A class member splits "a?a" in three / keeps "Q" from matching as a single word.
    tables = [
        ("tok_class_punctuation", "Punctuation pre-tokenizer: is_ascii_punctuation || is_punctuation",
         char_ranges(lambda c: len(punct.pre_tokenize_str("a" + c + "a")) == 3)),
        ("tok_class_numeric", "Digits pre-tokenizer: char::is_numeric",
         char_ranges(lambda c: len(digits.pre_tokenize_str("a" + c + "a")) == 3)),
        ("tok_class_word", "single_word added tokens: the regex crate's \\w",
         char_ranges(lambda c: 1 not in word.encode("Q" + c).ids)),
    ]
    lines = ["// Generated by tests/golden/make_tokenizer.py from HF tokenizers %s; do not edit."
             % tokenizers.__version__,
             "// Character classes HF's Rust code tests outside Oniguruma, as inclusive codepoint ranges.",
             '#include "common/tokenizer/impl.h"', "", "// clang-format off"]
    for name, what, ranges in tables:
        lines.append("// %s" % what)
        lines.append("static const uint32_t %s_ranges[][2] = {" % name)
        row = []
        for a, b in ranges:
            row.append("{0x%X, 0x%X}," % (a, b))
            if len(row) == 6:
                lines.append("    " + " ".join(row))
                row = []
        if row:
            lines.append("    " + " ".join(row))
        lines.append("};")
        lines.append("const tok_char_class %s = {%s_ranges, %d};" % (name, name, len(ranges)))
        lines.append("")
    lines.append("// clang-format on")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    write_unicode_tables(os.path.join(HERE, "..", "..", "common", "tokenizer", "unicode.c"))

    falcon = train(falcon_pre_tokenizer(), 1600, FALCON_SPECIAL, OA_SPECIAL)
    strings = case_strings(FALCON_SPECIAL + OA_SPECIAL, 120)
    _, cases = write_fixture(falcon, os.path.join(HERE, "data", "tokenizer"), strings, True)
    print("falcon-style:", falcon.get_vocab_size(), "tokens,", len(cases), "cases")

    gpt2 = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), 700,
                 ["<|endoftext|>"], [])
    strings = case_strings(["<|endoftext|>"], 10)[::5]
    _, cases = write_fixture(gpt2, os.path.join(HERE, "data", "tokenizer_bytelevel"), strings, False)
    print("bytelevel:", gpt2.get_vocab_size(), "tokens,", len(cases), "cases")

    variants = write_variants(os.path.join(HERE, "data", "tokenizer_variants"),
                              os.path.join(HERE, "data", "tokenizer_bytelevel"))
    print("variants:", len(variants), "tokenizers,", sum(len(v["cases"]) for v in variants), "cases")


if __name__ == "__main__":
    main()
