// Reads a JSON array of strings on stdin; prints, as JSON, what js-tiktoken's "gpt2" encoding
// makes of each: {"encoder": ..., "cases": [{"text", "ordinary", "special"}]}, where "ordinary" is
// tiktoken's encode_ordinary (<|endoftext|> is plain text) and "special" is
// encode(text, allowed_special="all") (<|endoftext|> is id 50256).
// Usage: node reference.mjs < corpus.json > expected.json
import { getEncoding } from "js-tiktoken";
import { readFileSync } from "node:fs";

const texts = JSON.parse(readFileSync(0, "utf8"));
if (!Array.isArray(texts) || !texts.every((t) => typeof t === "string")) {
  console.error("stdin must be a JSON array of strings");
  process.exit(2);
}
const enc = getEncoding("gpt2");
let version = "?";
try {
  version = JSON.parse(readFileSync(new URL("./node_modules/js-tiktoken/package.json", import.meta.url))).version;
} catch {}
const cases = texts.map((text) => ({
  text,
  ordinary: enc.encode(text, [], []),
  special: enc.encode(text, "all"),
}));
process.stdout.write(JSON.stringify({ encoder: `js-tiktoken ${version} gpt2`, cases }) + "\n");
