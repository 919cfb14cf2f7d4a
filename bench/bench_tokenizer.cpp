// GPT-2 BPE throughput: bench_tokenizer TEXT_FILE [--mb N] [--threads N] [--repeat N]
//
// The text is repeated in memory to at least N MB (default 20). Prints
//  - encode_ordinary on one thread, the whole text as one string (best of --repeat runs), and
//  - `prepare openwebtext` (reader + tokenizer threads + writer) on the text cut into documents of
//    about 4 KB at line ends, written as a .jsonl file, with 1 thread and with --threads (default:
//    every core); MB/s of text.
// tests/bpe_reference/bench.mjs measures npm's js-tiktoken the same way (first figure).
// The tokenizer files are looked up as by dgpt (data/gpt2/, then $DGPT_GPT2_DIR).
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "files/bpe.h"
#include "files/prepare_gpt2.h"
#include "base/errors.h"

using namespace dgpt;

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      std::cerr << "usage: bench_tokenizer TEXT_FILE [--mb N] [--threads N] [--repeat N]\n";
      return 2;
    }
    double mb = 20;
    int threads = int(std::max(1u, std::thread::hardware_concurrency())), repeat = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
      const std::string k = argv[i];
      if (k == "--mb")
        mb = std::atof(argv[i + 1]);
      else if (k == "--threads")
        threads = std::atoi(argv[i + 1]);
      else if (k == "--repeat")
        repeat = std::atoi(argv[i + 1]);
      else
        throw UserError("unknown option " + k);
    }
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) throw UserError(std::string("cannot read ") + argv[1]);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string unit = ss.str();
    if (unit.empty()) throw UserError("empty text");
    std::string text;
    int copies = 0;
    while (double(text.size()) < mb * 1e6) {
      text += unit;
      ++copies;
    }
    const double t_load = now();
    const auto bpe = Gpt2Bpe::load();
    std::printf("load encoder.json + vocab.bpe: %.0f ms\n", (now() - t_load) * 1e3);

    size_t tokens = 0;
    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
      std::vector<uint16_t> ids;
      ids.reserve(text.size() / 3);
      const double t0 = now();
      bpe->encode_ordinary_into(text, ids);
      best = std::min(best, now() - t0);
      tokens = ids.size();
    }
    std::printf("text: %.2f MB (%s x%d), %zu tokens\n", double(text.size()) / 1e6, argv[1], copies, tokens);
    std::printf("encode_ordinary, 1 thread: %.2f MB/s (best of %d: %.3f s)\n", double(text.size()) / 1e6 / best,
                repeat, best);

    // Documents of ~4 KB in a .jsonl file, through `prepare openwebtext`.
    char dir_template[] = "/tmp/dgpt_bench_XXXXXX";
    if (!::mkdtemp(dir_template)) throw UserError("cannot make a temporary folder");
    const std::string dir = dir_template;
    {
      std::ofstream out(dir + "/docs.jsonl", std::ios::binary);
      size_t pos = 0;
      while (pos < text.size()) {
        size_t end = std::min(text.size(), pos + 4000);
        const size_t nl = text.find('\n', end);
        end = nl == std::string::npos ? text.size() : nl + 1;
        out << nlohmann::json{{"text", text.substr(pos, end - pos)}}.dump() << "\n";
        pos = end;
      }
    }
    std::vector<int> counts{1};
    if (threads > 1) counts.push_back(threads);
    for (int t : counts) {
      OpenWebTextOptions opt;
      opt.inputs = {dir + "/docs.jsonl"};
      opt.out_dir = dir + "/out";
      opt.threads = t;
      opt.progress = 0;
      opt.val_fraction = 0.0005;
      std::ostringstream log;
      const double t0 = now();
      const auto s = prepare_openwebtext(opt, log);
      const double el = now() - t0;
      std::printf("prepare openwebtext, %d thread%s: %.2f MB/s of text (%llu documents, %llu tokens, %.3f s)\n", t,
                  t == 1 ? "" : "s", double(text.size()) / 1e6 / el,
                  static_cast<unsigned long long>(s.documents),
                  static_cast<unsigned long long>(s.train_tokens + s.val_tokens), el);
    }
    std::system(("rm -rf '" + dir + "'").c_str());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
