// The reference side of the tokenizer differential test, @huggingface/tokenizers.
//   node tokenizer_reference.mjs encode NPM_DIR TOKENIZER_DIR CORPUS OUT
//     writes one JSON array of ids per corpus line (encode(text, {add_special_tokens: false}))
//     to OUT, and the reference's decoding of them, one JSON string per line, to OUT.text
//   node tokenizer_reference.mjs compare NAME CORPUS REF_IDS OUR_IDS OUR_TEXTS
//     exits 1 naming the first differing lines: ids against the reference, our
//     decoded texts against the reference's (the corpus itself, unless the
//     normalizer changed it: Qwen's NFC)
//   node tokenizer_reference.mjs bench NPM_DIR TOKENIZER_DIR TEXT_FILE
//     prints the encode throughput of one text, in MB/s
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const lines = (path) => readFileSync(path, "utf8").split("\n").filter((l, i, a) => i < a.length - 1 || l !== "");

function load(npmDir, dir) {
  const require = createRequire(join(npmDir, "package.json"));
  const { Tokenizer } = require("@huggingface/tokenizers");
  const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  const config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  return new Tokenizer(json, config);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "encode") {
  const [npmDir, dir, corpus, out] = args;
  const tok = load(npmDir, dir);
  const texts = lines(corpus).map((l) => JSON.parse(l));
  const res = [], back_texts = [];
  let selfMismatch = 0;
  for (const t of texts) {
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    res.push(JSON.stringify(ids));
    const back = ids.length === 0 ? "" : tok.decode(ids, { clean_up_tokenization_spaces: false });
    back_texts.push(JSON.stringify(back));
    if (back !== t && back !== t.normalize("NFC") && selfMismatch++ < 3) {
      console.error(`note: the reference itself does not decode back ${JSON.stringify(t)}`);
    }
  }
  writeFileSync(out, res.join("\n") + "\n");
  writeFileSync(out + ".text", back_texts.join("\n") + "\n");
  console.error(`reference ${dir}: ${texts.length} texts encoded; ${selfMismatch} do not decode back to the text or its NFC in the reference`);
} else if (mode === "compare") {
  const [name, corpus, refIds, ourIds, ourTexts] = args;
  const texts = lines(corpus).map((l) => JSON.parse(l));
  const ref = lines(refIds), ours = lines(ourIds), decoded = lines(ourTexts), refDecoded = lines(refIds + ".text");
  let bad = 0;
  const report = (msg) => {
    if (bad++ < 10) console.error(`${name}: ${msg}`);
  };
  if (ref.length !== texts.length || ours.length !== texts.length || decoded.length !== texts.length) {
    report(`line counts differ: corpus ${texts.length}, reference ${ref.length}, splitlm ids ${ours.length}, splitlm texts ${decoded.length}`);
  }
  for (let i = 0; i < texts.length; i++) {
    if (JSON.stringify(JSON.parse(ours[i] ?? "null")) !== JSON.stringify(JSON.parse(ref[i] ?? "null"))) {
      report(`line ${i + 1} ${JSON.stringify(texts[i])}: reference ${ref[i]}, splitlm ${ours[i]}`);
    }
    const want = JSON.parse(refDecoded[i] ?? "null");
    if (JSON.parse(decoded[i] ?? "null") !== want) {
      report(`line ${i + 1}: splitlm decodes ${decoded[i]}, the reference ${JSON.stringify(want)}`);
    }
  }
  console.error(`${name}: ${texts.length} texts, ${bad} differences`);
  process.exit(bad === 0 ? 0 : 1);
} else if (mode === "bench") {
  const [npmDir, dir, file] = args;
  const t0 = process.hrtime.bigint();
  const tok = load(npmDir, dir);
  const text = readFileSync(file, "utf8");
  const t1 = process.hrtime.bigint();
  const ids = tok.encode(text, { add_special_tokens: false }).ids;
  const t2 = process.hrtime.bigint();
  const enc = Number(t2 - t1) / 1e9, all = Number(t2 - t0) / 1e9;
  const mb = Buffer.byteLength(text) / 1e6;
  console.log(`@huggingface/tokenizers: ${mb.toFixed(2)} MB -> ${ids.length} ids; encode ${enc.toFixed(2)} s = ${(mb / enc).toFixed(2)} MB/s; with loading ${all.toFixed(2)} s = ${(mb / all).toFixed(2)} MB/s`);
} else {
  console.error("usage: see the comment at the top of tokenizer_reference.mjs");
  process.exit(2);
}
