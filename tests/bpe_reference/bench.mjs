// js-tiktoken's GPT-2 throughput, as bench/bench_tokenizer.cpp measures dgpt's:
// node bench.mjs TEXT_FILE [MB] [REPEAT] -- the text repeated to at least MB (default 20) megabytes,
// encoded as one string (encode_ordinary), best of REPEAT (default 3) runs.
import { getEncoding } from "js-tiktoken";
import { readFileSync } from "node:fs";

const [file, mbArg, repeatArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: node bench.mjs TEXT_FILE [MB] [REPEAT]");
  process.exit(2);
}
const mb = Number(mbArg ?? 20), repeat = Number(repeatArg ?? 3);
const unit = readFileSync(file, "utf8");
let text = "", copies = 0;
while (Buffer.byteLength(text, "utf8") < mb * 1e6) { text += unit; copies++; }
const bytes = Buffer.byteLength(text, "utf8");
const enc = getEncoding("gpt2");
let best = Infinity, tokens = 0;
for (let r = 0; r < repeat; r++) {
  const t0 = process.hrtime.bigint();
  tokens = enc.encode(text, [], []).length;
  best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
}
console.log(`text: ${(bytes / 1e6).toFixed(2)} MB (${file} x${copies}), ${tokens} tokens`);
console.log(`js-tiktoken encode_ordinary, 1 thread: ${(bytes / 1e6 / best).toFixed(2)} MB/s (best of ${repeat}: ${best.toFixed(3)} s)`);
