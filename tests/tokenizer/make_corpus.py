#!/usr/bin/env python3
"""Generate tests/tokenizer/corpus.jsonl: varied strings for tokenizer equality tests.

Deterministic (seeded); standard library only. Each line is {"kind": ..., "text": ...}.
Mixes hand-written templates (prose in many scripts, code, chat turns, control tokens) with random
generation (code points from many Unicode blocks, whitespace runs, emoji sequences, word salads).

    python3 tests/tokenizer/make_corpus.py > tests/tokenizer/corpus.jsonl
"""
import json
import random
import sys

SEED = 20250101
rng = random.Random(SEED)

PROSE = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "It was the best of times, it was the worst of times.",
        "Don't panic! We'll fix it — I promise; it's only a test...",
        "Dr. Smith's appointment is at 3:45 p.m. on Tuesday, 12 March.",
        "Privacy matters: keep data on the device whenever you can.",
        "She said, \"Hello there,\" and walked away (quietly).",
        "E-mail me at jane.doe@example.com or visit https://example.org/path?q=1&r=2#frag.",
        "I've been waiting for you; you're late, and they'd already left.",
    ],
    "es": [
        "¿Dónde está la biblioteca? ¡Qué sorpresa!",
        "El niño comió una manzana y bebió agua con limón.",
        "Mañana iremos a la playa si no llueve.",
    ],
    "de": [
        "Die Straße ist nass, weil es geregnet hat.",
        "Äpfel, Öl und Übermut: Größenwahn ist ein schönes Wort.",
        "Donaudampfschifffahrtsgesellschaftskapitän",
    ],
    "fr": [
        "L'été dernier, nous sommes allés à la mer ; c'était très agréable.",
        "Où est le café ? « Je ne sais pas », répondit-il.",
        "Ça coûte 12,50 € — trop cher à mon goût.",
    ],
    "zh": [
        "我们今天去公园散步吧。",
        "机器学习是人工智能的一个分支，它使计算机能够从数据中学习。",
        "你好，世界！这是一个测试。",
    ],
    "ja": [
        "今日はいい天気ですね。散歩に行きましょう。",
        "東京タワーは高さ333メートルです。",
        "カタカナとひらがなと漢字を混ぜて書きます。",
    ],
    "ko": [
        "안녕하세요, 만나서 반갑습니다.",
        "한국어는 한글로 씁니다. 세종대왕이 만들었어요.",
    ],
    "ar": [
        "مرحبا بالعالم، كيف حالك اليوم؟",
        "اللغة العربية تكتب من اليمين إلى اليسار.",
    ],
    "he": [
        "שלום עולם, מה שלומך?",
        "עברית נכתבת מימין לשמאל.",
    ],
    "hi": [
        "नमस्ते, आप कैसे हैं?",
        "भारत एक विशाल देश है जिसमें अनेक भाषाएँ बोली जाती हैं।",
    ],
    "th": [
        "สวัสดีครับ วันนี้อากาศดีมาก",
        "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    ],
    "ru": [
        "Привет, мир! Как дела?",
        "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    ],
    "el": [
        "Γειά σου Κόσμε! Τι κάνεις;",
        "Η γλώσσα είναι ελληνική και γράφεται με το ελληνικό αλφάβητο.",
    ],
    "other": [
        "Tiếng Việt có nhiều dấu thanh: à á ả ã ạ.",
        "Türkçe: Şişli'de güzel bir gün, ığdır.",
        "Zażółć gęślą jaźń.",
        "Україна — це країна в Європі.",
        "فارسی زبان زیبایی است.",
        "বাংলা ভাষা সুন্দর।",
        "தமிழ் மொழி மிகவும் பழமையானது.",
        "Kiswahili ni lugha ya Afrika Mashariki.",
        "ქართული ენა ძალიან ლამაზია.",
        "Հայերեն լեզու",
        "አማርኛ ቋንቋ",
        "ᐃᓄᒃᑎᑐᑦ",
        "ꯃꯤꯇꯩꯂꯣꯟ",
    ],
}

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "const add = (a, b) => a + b;\nconsole.log(`sum=${add(1, 2)}`);\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<html>\n  <body>\n    <div class=\"a\"><p>Hello &amp; welcome</p></div>\n  </body>\n</html>",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "for f in *.txt; do echo \"$f\"; wc -l \"$f\" | awk '{print $1}'; done",
    "key: value\nlist:\n  - one\n  - two\nnested:\n  deep: [a, b]\n",
    "\\begin{equation} E = mc^2 \\quad \\sum_{i=0}^{n} x_i \\end{equation}",
    "public static void main(String[] args) { System.out.println(\"Hello\"); }",
    "    if (x != null && x.length > 0) { return x[0]; } // comment\n",
    "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\nimport os, sys\n",
    "x = [i**2 for i in range(100) if i % 3 == 0]\t# squares\r\n",
    "impl<T: Clone + Send> Trait for Wrapper<T> where T: 'static {}",
    "git commit -m \"fix: handle CRLF\" && git push origin main",
    "$ curl -sSL https://example.com/install.sh | bash -s -- --yes",
    "<table><tr><td>1</td><td>2</td></tr></table>",
    "<h1>Title</h1><br/><hr><img src=\"a.png\" alt=\"\">",
    "a=1;b=2;c=a<<b;d=c>>1;e=~d&0xFF|0b1010^0o17",
    "lambda x: x if x else None  # noqa: E731",
]

NUMBERS_FIXED = [
    "0", "1", "12", "123", "1234", "12345", "123456789012345678901234567890",
    "3.14159", "-2.5e-10", "1,000,000", "1.000.000,00", "+1 (555) 123-4567", "2024-07-23",
    "12:34:56", "$19.99", "€5", "¥1000", "50%", "0x1F", "1/3", "½ ¼ ¾", "①②③", "١٢٣", "१२३", "一二三",
]

EMOJI = [
    "😀", "👍🏽", "❤️", "👨‍👩‍👧‍👦", "👩🏾‍💻", "🏳️‍🌈", "🇺🇸", "🇯🇵🇫🇷🇩🇪", "1️⃣", "#️⃣", "🧑‍🤝‍🧑", "🫠",
    "🦙", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "✌🏿", "🤷‍♀️", "👁️‍🗨️", "🐈‍⬛", "☃️", "™", "©", "🇦🇶",
]

CONTROL = [
    "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>",
    "<start_of_image>", "<end_of_image>", "<unused0>", "<unused42>", "<unused6241>",
]

# Characters that have no piece in most vocabularies: they exercise byte fallback.
RARE = [
    "\U00020000", "\U0002A6D6", "\U00010000", "\U00012000", "\U0001D11E", "\U00017000", "\ue000",
    "\U000F0000", "\u0000", "\u0001", "\u001f", "\u007f", "\u0085", "\u00ad", "\u200b", "\u200d",
    "\u2028", "\u2029", "\ufeff", "\ufffd", "\ufffc", "\U0001F9FF", "\U00013000", "\U0001E900",
]

WS = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\u202f", "\v", "\f"]

BLOCKS = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F), (0x590, 0x5FF),
    (0x600, 0x6FF), (0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF),
    (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2190, 0x21FF),
    (0x2200, 0x22FF), (0x2500, 0x257F), (0x2600, 0x26FF), (0x3040, 0x309F), (0x30A0, 0x30FF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xFF00, 0xFFEF), (0x1F300, 0x1F5FF),
    (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0x10000, 0x1007F), (0x0, 0x1F),
]

WORDS = sorted({w for texts in PROSE.values() for t in texts for w in t.split()})


def rand_codepoints(n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(BLOCKS)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0x20
        out.append(chr(cp))
    return "".join(out)


def rand_ws():
    return "".join(rng.choice(WS) * rng.randint(1, 4) for _ in range(rng.randint(1, 4)))


def fragment():
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(rng.choice(list(PROSE.values())))
    if kind == 1:
        return rng.choice(CODE)
    if kind == 2:
        return rng.choice(NUMBERS_FIXED)
    if kind == 3:
        return rng.choice(EMOJI)
    if kind == 4:
        return rng.choice(CONTROL)
    if kind == 5:
        return rng.choice(RARE)
    if kind == 6:
        return rand_ws()
    return rand_codepoints(rng.randint(1, 8))


def main():
    rows = []

    def add(kind, text):
        rows.append({"kind": kind, "text": text})

    # --- hand-written templates -----------------------------------------------------------
    add("edge", "")
    for s in [" ", "a", "A", ".", "\n", "\t", "  a", "a  ", " a ", "x  y", "x\ty", "x\n\ny", "aaaaaaaa" * 8]:
        add("edge", s)
    for lang, texts in PROSE.items():
        for t in texts:
            add(f"prose-{lang}", t)
            add(f"prose-{lang}", " " + t)
            add(f"prose-{lang}", t.upper())
            add(f"prose-{lang}", t + "\n" + t)
    for c in CODE:
        add("code", c)
        add("code", c.replace("    ", "\t"))
        add("code", "```\n" + c + "```")
    for n in NUMBERS_FIXED:
        add("number", n)
        add("number", f"Total: {n} items")
    for _ in range(40):
        add("number", str(rng.randint(0, 10 ** rng.randint(1, 25))))
        add("number", f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}")
    for e in EMOJI:
        add("emoji", e)
        add("emoji", f"I {e} this{e}{e}")
    for c in CONTROL:
        add("control", c)
        add("control", f"hello{c}world")
        add("control", f" {c} ")
        add("control", c[:-1])  # an unterminated tag is plain text
    add("control", "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n")
    add("control", "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n")
    add("control", "<start_of_turn>system\nBe brief.\n\nHi<end_of_turn>")
    add("control", "<<bos>><eos></eos><end_of_turn><end_of_turn>")
    add("control", "<|im_start|>user\nhi<|im_end|>\n<|eot_id|>")
    for r in RARE:
        add("bytes", r)
        add("bytes", f"a{r}b")
        add("bytes", r * 3)
    for w in WS:
        for k in (1, 2, 3, 7, 16, 31, 33):
            add("whitespace", w * k)
        add("whitespace", f"a{w}b")
    for k in (1, 2, 5, 17, 40, 65):
        add("whitespace", "word" + " " * k + "word")
        add("whitespace", "line" + "\n" * k + "line")
        add("whitespace", "\t" * k + "indented")
        add("whitespace", " \n" * k)

    # --- random generation -----------------------------------------------------------------
    for _ in range(150):
        add("random-codepoints", rand_codepoints(rng.randint(1, 40)))
    for _ in range(120):
        add("random-words", " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25))))
    for _ in range(80):
        add("random-emoji", "".join(rng.choice(EMOJI) + rng.choice(["", " ", "\u200d", "\ufe0f"]) for _ in range(rng.randint(1, 8))))
    for _ in range(60):
        add("random-ws", "".join(rng.choice(["a", "b", "."]) + rand_ws() for _ in range(rng.randint(1, 6))))
    for _ in range(60):
        add("random-ascii", "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(1, 60))))
    for _ in range(250):
        add("mixed", "".join(fragment() for _ in range(rng.randint(2, 6))))
    for _ in range(30):
        add("long", "".join(fragment() for _ in range(rng.randint(20, 40))))

    for r in rows:
        sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} strings", file=sys.stderr)


if __name__ == "__main__":
    main()
