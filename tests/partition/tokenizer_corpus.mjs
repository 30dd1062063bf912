// Deterministic corpus for the tokenizer differential test and benchmark.
//   node tokenizer_corpus.mjs jsonl COUNT SEED > corpus.jsonl   one JSON string per line
//   node tokenizer_corpus.mjs text BYTES SEED > text.txt        one mixed-script text
// Same arguments, same bytes, on every machine (a seeded PRNG, no Math.random).
import { writeFileSync } from "node:fs";

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeGenerator(seed) {
  const rnd = mulberry32(seed);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (xs) => xs[int(xs.length)];
  const cp = (lo, hi) => String.fromCodePoint(lo + int(hi - lo + 1));

  // [lo, hi] code point ranges by script.
  const scripts = {
    latin: [[0x61, 0x7a], [0x41, 0x5a]],
    latin1: [[0xc0, 0xff], [0x100, 0x17f]],
    greek: [[0x3b1, 0x3c9], [0x391, 0x3a9]],
    cyrillic: [[0x430, 0x44f], [0x410, 0x42f]],
    arabic: [[0x621, 0x64a], [0x660, 0x669], [0x64b, 0x652]],
    hebrew: [[0x5d0, 0x5ea]],
    devanagari: [[0x905, 0x939], [0x93e, 0x94d], [0x966, 0x96f]],
    thai: [[0xe01, 0xe2e], [0xe30, 0xe3a], [0xe40, 0xe4e], [0xe50, 0xe59]],
    hangul: [[0xac00, 0xd7a3]],
    jamo: [[0x1100, 0x1112], [0x1161, 0x1175], [0x11a8, 0x11c2]],
    cjk: [[0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df]],
    kana: [[0x3041, 0x3096], [0x30a1, 0x30fa]],
    emoji: [[0x1f600, 0x1f64f], [0x1f300, 0x1f5ff], [0x1f900, 0x1f9ff], [0x2600, 0x26ff]],
    symbols: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e], [0x2010, 0x2027], [0x20a0, 0x20bf], [0x2190, 0x21ff]],
    digits_other: [[0x660, 0x669], [0x966, 0x96f], [0xff10, 0xff19], [0x1d7ce, 0x1d7ff], [0xb2, 0xb3], [0xbc, 0xbe]],
    combining: [[0x300, 0x36f], [0x1ab0, 0x1abe], [0x20d0, 0x20f0]],
    control: [[0x1, 0x8], [0xe, 0x1f], [0x7f, 0x9f]],
    odd: [[0xfff9, 0xfffd], [0xe000, 0xe0ff], [0x1f1e6, 0x1f1ff], [0xfe00, 0xfe0f], [0xe0020, 0xe007f]],
  };
  const scriptNames = Object.keys(scripts);
  const word = (name, len) => {
    let s = "";
    for (let i = 0; i < len; i++) {
      const r = pick(scripts[name]);
      s += cp(r[0], r[1]);
    }
    return s;
  };
  const spaces = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u00a0", "\u3000", "\u2003", "\u200b", "\u2028", "\u0085", "\f", "\v"];
  const whitespaceRun = () => {
    let s = "";
    for (let n = 1 + int(6); n > 0; n--) s += pick(spaces).repeat(1 + int(3));
    return s;
  };
  const digits = () => {
    const n = 1 + int(42);
    let s = "";
    for (let i = 0; i < n; i++) s += String(int(10));
    return pick(["", "", "-", "+", "$", "#", " "]) + s + pick(["", "", ".5", ",000", "%", "th", "\n", " "]);
  };
  const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'M", "'LL", "'Ll", "'lL", "'D", "’s", "'x"];
  const contraction = () => pick(["I", "you", "WE", "they", "It", "don", "can", "she", "O", ""]) + pick(contractions) + pick(["", " ", "s", "!", "'", "  go"]);
  const specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|reserved_special_token_5|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
    "<|fim_prefix|>", "<|eot_id", "<|im_start", "|>", "<|", "<s>", "</s>", "<unk>", "<|im_end|><|im_end|>", "<<|eot_id|>>"];
  const code = [
    "for (int i = 0; i < n; ++i) {\n    sum += a[i];\n}", "def f(x):\n\treturn x ** 2  # square\n", "if x != None and y >= 3:\n    print(f\"{x!r}\")",
    "const re = /\\s+(?!\\S)/gu;", "#include <stdio.h>\nint main(void) { return 0; }", "SELECT * FROM t WHERE id=42;",
    "    \t  indented();\r\n", "<div class=\"a\">&nbsp;</div>", "x=>x*2;;;;;", "std::vector<int32_t> ids{1, 2, 3};",
    "$ ls -la | grep '^d' && echo \"ok\"", "{\"key\": [1, 2.5e-3, null, true]}", "a.b.c.d...", "___init___", "0x1F 0b1010 1e10",
  ];
  const accents = [
    "e\u0301", "\u00e9", "a\u0308", "\u00e4", "A\u030a", "\u00c5", "\u212b", "o\u0302\u0301", "\u1ed1", "n\u0303", "\u00f1",
    "\u1100\u1161\u11a8", "\u1112\u1161\u11ab", "\u0915\u093c", "\u0958", "\u0627\u0653", "\u0622", "\u0e01\u0e34\u0e4a",
    "\ufb01", "\u2460", "\u00bd", "\u3131", "\uff21", "\u1e9b\u0323", "\u0301", "\u0301\u0301", " \u0308", "\u20dd",
  ];
  const emojiSeq = () => pick([
    "\u{1f468}\u200d\u{1f469}\u200d\u{1f467}\u200d\u{1f466}", "\u{1f44d}\u{1f3fd}", "\u{1f44b}\u{1f3ff}", "\u{1f3f3}\ufe0f\u200d\u{1f308}",
    "\u{1f1e9}\u{1f1ea}", "\u{1f1ef}\u{1f1f5}", "\u2764\ufe0f", "\u{1f9d1}\u{1f3fb}\u200d\u{1f4bb}", "\u{1f469}\u200d\u2764\ufe0f\u200d\u{1f48b}\u200d\u{1f468}",
    "1\ufe0f\u20e3", "\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}", "\u{1f415}\u200d\u{1f9ba}", "\u{1f600}\u{1f600}\u{1f600}",
  ]) + pick(["", " ", "\u200d", "\u{1f3fc}"]);
  const piece = () => {
    switch (int(12)) {
      case 0: case 1: return word(pick(scriptNames), 1 + int(12));
      case 2: return word(pick(["latin", "latin", "cyrillic", "greek"]), 1 + int(10));
      case 3: return whitespaceRun();
      case 4: return digits();
      case 5: return contraction();
      case 6: return pick(specials);
      case 7: return pick(code);
      case 8: return pick(accents) + (rnd() < 0.5 ? word("latin", 1 + int(4)) : "");
      case 9: return emojiSeq();
      case 10: return word(pick(["cjk", "hangul", "kana", "thai", "arabic", "devanagari"]), 1 + int(30));
      default: return pick([" ", " ", "", ", ", ". ", "\n", "-", "'", "\""]);
    }
  };
  const sentence = () => {
    let s = "";
    for (let n = 1 + int(int(2) ? 6 : 25); n > 0; n--) s += piece();
    return s;
  };
  return { sentence, rnd, int };
}

if (process.argv[1] && process.argv[1].endsWith("tokenizer_corpus.mjs")) {
  const [mode, sizeArg, seedArg] = process.argv.slice(2);
  const size = Number(sizeArg), seed = Number(seedArg ?? 1);
  if (!["jsonl", "text"].includes(mode) || !(size > 0)) {
    console.error("usage: node tokenizer_corpus.mjs (jsonl COUNT | text BYTES) [SEED]");
    process.exit(2);
  }
  const g = makeGenerator(seed);
  const out = [];
  if (mode === "jsonl") {
    out.push(JSON.stringify(""));
    for (let i = 1; i < size; i++) out.push(JSON.stringify(g.sentence()));
    writeFileSync(1, out.join("\n") + "\n");
  } else {
    let bytes = 0;
    while (bytes < size) {
      const s = g.sentence() + (g.int(4) ? " " : "\n");
      bytes += Buffer.byteLength(s);
      out.push(s);
    }
    writeFileSync(1, out.join(""));
  }
}
