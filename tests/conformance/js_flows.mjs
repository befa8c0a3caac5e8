// Conformance flows with the official JavaScript SDK, @google/genai, against a Gemini API endpoint.
// Usage: node js_flows.mjs BASE_URL   (next to a node_modules holding @google/genai)
// Prints one JSON line {"sdk": version, "passed": [...], "failed": {flow: error}}; exit status 1 on failure.
import { readFileSync } from "node:fs";
import { GoogleGenAI } from "@google/genai";

const MODEL = "gemini-2.5-flash";
const EMBED_MODEL = "gemini-embedding-001";
const LONG_TEXT = "The archive holds letters, ledgers and maps. ".repeat(120);
const tokens = (text) => Math.max(1, Math.ceil(text.length / 4));
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function check(condition, what) {
  if (!condition) throw new Error(`failed: ${what}`);
}

async function refused(call) {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error("the call was not refused");
}

const flows = {
  async generate(ai) {
    const response = await ai.models.generateContent({ model: MODEL, contents: "hello" });
    check(response.text === "echo: hello", `text ${response.text}`);
    check(response.candidates[0].finishReason === "STOP", "finishReason");
    check(response.usageMetadata.promptTokenCount === tokens("hello"), "promptTokenCount");
  },
  async streamAndCount(ai) {
    let text = "";
    for await (const chunk of await ai.models.generateContentStream({ model: MODEL, contents: "stream me" })) {
      text += chunk.text ?? "";
    }
    check(text === "echo: stream me", `stream ${text}`);
    const counted = await ai.models.countTokens({ model: MODEL, contents: "count these words" });
    check(counted.totalTokens === tokens("count these words"), "countTokens");
  },
  async settings(ai) {
    const cut = await ai.models.generateContent({
      model: MODEL,
      contents: "hello there friend",
      config: { maxOutputTokens: 3, candidateCount: 2 },
    });
    check(cut.candidates.length === 2, "candidateCount");
    check(cut.candidates[0].finishReason === "MAX_TOKENS", "MAX_TOKENS");
    check(cut.candidates[0].content.parts[0].text === "echo: hello ", "truncated text");
  },
  async validation(ai) {
    const hot = await refused(() =>
      ai.models.generateContent({ model: MODEL, contents: "x", config: { temperature: 5 } }),
    );
    check(hot.status === 400, `status ${hot.status}`);
    check(hot.message.includes("temperature must be in the range [0.0, 2.0]"), hot.message);
    const penalty = await refused(() =>
      ai.models.generateContent({ model: MODEL, contents: "x", config: { presencePenalty: 0.5 } }),
    );
    check(penalty.message.includes(`Penalty is not enabled for models/${MODEL}`), penalty.message);
  },
  async models(ai) {
    const model = await ai.models.get({ model: MODEL });
    check(model.inputTokenLimit === 1048576 && model.outputTokenLimit === 65536, "limits");
    const names = [];
    for await (const each of await ai.models.list()) names.push(each.name);
    check(names.includes(`models/${EMBED_MODEL}`), "list");
  },
  async embeddings(ai) {
    const one = await ai.models.embedContent({ model: EMBED_MODEL, contents: "same text" });
    const short = await ai.models.embedContent({
      model: EMBED_MODEL,
      contents: "same text",
      config: { outputDimensionality: 8 },
    });
    check(one.embeddings[0].values.length === 3072, "dimension");
    check(JSON.stringify(short.embeddings[0].values) === JSON.stringify(one.embeddings[0].values.slice(0, 8)), "prefix");
  },
  async caches(ai) {
    const cache = await ai.caches.create({ model: MODEL, config: { contents: LONG_TEXT, ttl: "300s" } });
    const answer = await ai.models.generateContent({
      model: MODEL,
      contents: "which maps?",
      config: { cachedContent: cache.name },
    });
    check(answer.usageMetadata.cachedContentTokenCount === tokens(LONG_TEXT), "cachedContentTokenCount");
    await ai.caches.delete({ name: cache.name });
    const gone = await refused(() => ai.caches.get({ name: cache.name }));
    check(gone.status === 403, `status ${gone.status}`);
  },
  async filesAndBatch(ai) {
    const file = await ai.files.upload({
      file: new Blob(["plain notes"], { type: "text/plain" }),
      config: { mimeType: "text/plain" },
    });
    check(file.state === "ACTIVE", `state ${file.state}`);
    let job = await ai.batches.create({
      model: MODEL,
      src: [{ contents: [{ role: "user", parts: [{ text: "first" }] }], metadata: { key: "a" } }],
    });
    for (let i = 0; i < 200 && !["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"].includes(job.state); i++) {
      await sleep(100);
      job = await ai.batches.get({ name: job.name });
    }
    check(job.state === "JOB_STATE_SUCCEEDED", `state ${job.state}`);
    check(job.dest.inlinedResponses[0].response.candidates[0].content.parts[0].text === "echo: first", "answer");
  },
};

const sdkPackage = new URL("./node_modules/@google/genai/package.json", import.meta.url);
const version = JSON.parse(readFileSync(sdkPackage, "utf8")).version;
const ai = new GoogleGenAI({ apiKey: "conformance-key", httpOptions: { baseUrl: process.argv[2], apiVersion: "v1beta" } });
const passed = [];
const failed = {};
for (const [name, flow] of Object.entries(flows)) {
  try {
    await flow(ai);
    passed.push(name);
  } catch (error) {
    failed[name] = String(error?.stack ?? error);
  }
}
console.log(JSON.stringify({ sdk: version, passed, failed }));
process.exit(Object.keys(failed).length ? 1 : 0);
