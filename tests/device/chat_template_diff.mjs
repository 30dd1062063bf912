// Differential test of splitlm's Jinja subset against @huggingface/jinja:
// every template in ../shared/tokenizers/*/tokenizer_config.json, every GGUF
// in ../shared/gguf that carries tokenizer.chat_template, and every built-in
// renders the same conversations; the outputs must be byte-identical (or
// both must refuse the conversation). So does CONSTRUCTS, a template using
// many constructs at once. Args: SPLITLM_BIN SHARED_DIR TMP_DIR CONSTRUCTS
import { Template } from "@huggingface/jinja";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const [bin, shared, tmp] = process.argv.slice(2);
const run = (args) => execFileSync(bin, args, { encoding: "utf8", maxBuffer: 64 << 20 });

const conversations = {
  system_user: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is the capital of France?" },
  ],
  user_only: [{ role: "user", content: "Hello!" }],
  multi_turn_system: [
    { role: "system", content: "Answer briefly." },
    { role: "user", content: "2+2?" },
    { role: "assistant", content: "4" },
    { role: "user", content: "And 3+3?" },
  ],
  multi_turn: [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello, how can I help?" },
    { role: "user", content: "Tell me a joke." },
    { role: "assistant", content: "Why did the chicken cross the road?" },
    { role: "user", content: "Why?" },
  ],
  ends_with_assistant: [
    { role: "user", content: "Say yes." },
    { role: "assistant", content: "Yes." },
  ],
  unicode: [
    { role: "system", content: "Réponds en français. 日本語も話せます。" },
    { role: "user", content: "你好，世界！ 👋🏽 👨‍👩‍👧‍👦 مرحبا Ελληνικά — naïve café ẞ" },
  ],
  braces: [{ role: "user", content: "{{ messages }} {% if true %}x{% endif %} {# c #} {{'a'}} }} %} '\" \\ \\n" }],
  whitespace: [
    { role: "system", content: "  \n padded system \n\n" },
    { role: "user", content: "\n\n  padded user  \t\n" },
  ],
  reasoning: [
    { role: "user", content: "Think first." },
    { role: "assistant", content: "<think>\nLet me see.\n</think>\n\nThe answer is 42." },
    { role: "user", content: "Again?" },
  ],
  tools: [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: "get_weather", arguments: { city: "Paris", days: 2 } } }] },
    { role: "tool", content: "{\"temp\": 21}" },
    { role: "tool", content: "sunny" },
    { role: "user", content: "Thanks" },
  ],
  empty_content: [{ role: "user", content: "" }],
};

// Tool definitions (the OpenAI API's "tools", the templates' `tools`),
// rendered with the conversations named here.
const toolDefs = [
  { type: "function", function: { name: "get_weather", description: "Current weather for a city.",
    parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city"] } } },
  { type: "function", function: { name: "now", description: "The time: \"UTC\" — ünïcode", parameters: { type: "object", properties: {} } } },
];
const withTools = ["system_user", "user_only", "tools"];

function tokenText(v) {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof v.content === "string") return v.content;
  return "";
}

// [name, --template argument, source, bos, eos]
const templates = [];
const tokDir = path.join(shared, "tokenizers");
for (const d of fs.existsSync(tokDir) ? fs.readdirSync(tokDir).sort() : []) {
  const f = path.join(tokDir, d, "tokenizer_config.json");
  if (!fs.existsSync(f)) continue;
  const cfg = JSON.parse(fs.readFileSync(f, "utf8"));
  if (typeof cfg.chat_template !== "string") continue;
  templates.push([d, f, cfg.chat_template, tokenText(cfg.bos_token), tokenText(cfg.eos_token)]);
}
const ggufDir = path.join(shared, "gguf");
for (const g of fs.existsSync(ggufDir) ? fs.readdirSync(ggufDir).sort() : []) {
  if (!g.endsWith(".gguf")) continue;
  const f = path.join(ggufDir, g);
  let src;
  try {
    src = run(["chat-render", "--template", f, "--print-template", "--log-level", "warn"]);
  } catch {
    continue;  // no tokenizer.chat_template
  }
  templates.push([g, f, src, "<s>", "</s>"]);
}
if (templates.length === 0) {
  console.error(`no chat templates found under ${shared}`);
  process.exit(1);
}
const constructsFile = process.argv[5];
if (constructsFile) templates.push(["constructs", constructsFile, fs.readFileSync(constructsFile, "utf8"), "<s>", "</s>"]);
for (const name of ["llama2", "llama3", "chatml", "mistral", "zephyr"]) {
  const src = run(["chat-render", "--template", name, "--print-template", "--log-level", "warn"]);
  templates.push([`built-in ${name}`, name, src, "<s>", "</s>"]);
}

let compared = 0, refused = 0, failures = 0;
for (const [name, arg, src, bos, eos] of templates) {
  const cases = [];
  for (const [conv, messages] of Object.entries(conversations)) {
    for (const add_generation_prompt of [true, false]) {
      cases.push({ conv, messages, add_generation_prompt, bos_token: bos, eos_token: eos });
      if (withTools.includes(conv)) {
        cases.push({ conv: conv + "+tools", messages, add_generation_prompt, bos_token: bos, eos_token: eos, tools: toolDefs });
      }
    }
  }
  const file = path.join(tmp, "cases.jsonl");
  fs.writeFileSync(file, cases.map((c) => JSON.stringify(c)).join("\n") + "\n");
  const ours = run(["chat-render", "--template", arg, "--jsonl", file, "--log-level", "warn"]).trimEnd().split("\n").map((l) => JSON.parse(l));
  const tmpl = new Template(src);
  cases.forEach((c, i) => {
    let want, wantError;
    try {
      const ctx = { messages: c.messages, add_generation_prompt: c.add_generation_prompt, bos_token: c.bos_token, eos_token: c.eos_token };
      if (c.tools) ctx.tools = c.tools;
      want = tmpl.render(ctx);
    } catch (e) {
      wantError = String(e.message || e);
    }
    const got = ours[i];
    const label = `${name} / ${c.conv} / add_generation_prompt=${c.add_generation_prompt}`;
    if (wantError !== undefined || (got && typeof got === "object")) {
      if (wantError !== undefined && got && typeof got === "object") {
        ++refused;
        return;
      }
      ++failures;
      console.error(`FAIL ${label}: @huggingface/jinja ${wantError !== undefined ? "refused: " + wantError : "rendered"}, ` +
                    `splitlm ${typeof got === "object" ? "refused: " + got.error : "rendered " + JSON.stringify(got)}`);
      return;
    }
    ++compared;
    if (got !== want) {
      ++failures;
      let k = 0;
      while (k < want.length && want[k] === got[k]) ++k;
      console.error(`FAIL ${label}: differs at character ${k}\n  want ${JSON.stringify(want.slice(Math.max(0, k - 30), k + 60))}\n  got  ${JSON.stringify(got.slice(Math.max(0, k - 30), k + 60))}`);
    }
  });
}
console.log(`${templates.length} templates: ${compared} renders byte-identical, ${refused} refused by both, ${failures} failures`);
process.exit(failures ? 1 : 0);
