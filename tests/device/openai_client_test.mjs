// The device's HTTP API through the stock `openai` npm client (and raw fetch
// for malformed requests). Run by openai_test.sh:
//   node openai_client_test.mjs BASE_URL "EXPECTED TEXT OR IDS" HAS_TOKENIZER
import OpenAI from 'openai';

const [base, expectedIds, hasTokenizer] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'not-needed', maxRetries: 0 });
let passed = 0;
let failed = 0;
function check(ok, what, detail = '') {
  if (ok) {
    passed++;
    console.log(`ok   ${what}`);
  } else {
    failed++;
    console.log(`FAIL ${what} ${detail}`);
  }
}

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].object === 'model', 'GET /v1/models lists the model');
const model = models.data[0].id;

// Greedy completion from token ids: the text (space-separated ids without a
// tokenizer) is the local run's continuation.
const prompt = [1, 5, 9];
const c = await client.completions.create({ model, prompt, max_tokens: 8, temperature: 0 });
const got = c.choices[0].text.trim();
check(c.object === 'text_completion' && c.usage.prompt_tokens === 3, 'non-streaming completion');
check(got === expectedIds.trim(), 'completion equals the local greedy run (split at cut 2)', `got "${got}" want "${expectedIds}"`);

const stream = await client.completions.create({ model, prompt, max_tokens: 8, temperature: 0, stream: true });
let streamed = '';
let finish = null;
for await (const chunk of stream) {
  streamed += chunk.choices[0].text;
  finish = chunk.choices[0].finish_reason ?? finish;
}
check(streamed === c.choices[0].text, 'streamed completion equals the non-streamed one', JSON.stringify([streamed, c.choices[0].text]));
check(finish === c.choices[0].finish_reason, 'stream ends with the finish reason');

// `stop` ends the text before the first occurrence of a stop string, the
// same streamed and not; finish_reason says why the generation ended.
check(c.usage.completion_tokens === 8 && c.choices[0].finish_reason === 'length', 'max_tokens ends with "length", usage counts it',
      JSON.stringify([c.usage, c.choices[0].finish_reason]));
const full = c.choices[0].text;
const stopAt = full.indexOf(full.trim().split(/\s+/)[2] ?? '\u0000', 1);
if (stopAt > 0) {
  const stopString = full.slice(stopAt, stopAt + 2);
  const want = full.slice(0, full.indexOf(stopString));
  const s = await client.completions.create({ model, prompt, max_tokens: 8, temperature: 0, stop: ['\u2603', stopString] });
  check(s.choices[0].text === want && s.choices[0].finish_reason === 'stop', 'a stop string ends the text, not returned',
        JSON.stringify([s.choices[0].text, want, s.choices[0].finish_reason]));
  const ss = await client.completions.create({ model, prompt, max_tokens: 8, temperature: 0, stop: stopString, stream: true });
  let text = '';
  let why = null;
  for await (const chunk of ss) {
    text += chunk.choices[0].text;
    why = chunk.choices[0].finish_reason ?? why;
  }
  check(text === want && why === 'stop', 'a stop string in a stream', JSON.stringify([text, want, why]));
}
try {
  await client.completions.create({ model, prompt, stop: ['a', 'b', 'c', 'd', 'e'] });
  check(false, '400 for five stop strings');
} catch (e) {
  check(e.status === 400 && e.error?.param === 'stop', '400 for five stop strings', `${e.status} ${e.message}`);
}

if (hasTokenizer === '1') {
  const chat = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 6, temperature: 0 });
  check(chat.object === 'chat.completion' && chat.choices[0].message.role === 'assistant', 'non-streaming chat');
  const chatStream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 6, temperature: 0, stream: true });
  let content = '';
  for await (const chunk of chatStream) content += chunk.choices[0].delta.content ?? '';
  check(content === chat.choices[0].message.content, 'streamed chat equals the non-streamed one');
  const text = await client.completions.create({ model, prompt: 'Hello', max_tokens: 4, temperature: 0 });
  check(text.usage.completion_tokens >= 1, 'text prompt through the tokenizer');
} else {
  console.log('skip chat: no tokenizer (../shared/tokenizers/llama2 absent)');
}

for (const [body, field] of [[{ model, prompt, max_tokens: 4, bogus: 1 }, 'bogus'],
                             [{ model, prompt: 'x'.repeat(3), max_tokens: 0 }, 'max_tokens'],
                             [{ model, prompt, temperature: -1 }, 'temperature']]) {
  try {
    await client.completions.create(body);
    check(false, `400 for bad ${field}`);
  } catch (e) {
    check(e.status === 400 && typeof e.error?.message === 'string', `400 for bad ${field}`, `${e.status} ${e.message}`);
  }
}
const raw = await fetch(`${base}/v1/completions`, { method: 'POST', body: '{"prompt": [1', headers: { 'content-type': 'application/json' } });
const rawBody = await raw.json();
check(raw.status === 400 && rawBody.error.type === 'invalid_request_error', '400 with an OpenAI error body for malformed JSON');
const notFound = await fetch(`${base}/v1/nope`);
check(notFound.status === 404, '404 for an unknown route');
check((await fetch(`${base}/health`)).ok, 'GET /health');
const metrics = await (await fetch(`${base}/metrics`)).text();
check(metrics.includes('splitlm_device_tokens_total') && metrics.includes('part="network"'), 'GET /metrics in Prometheus text');

console.log(`openai client: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
