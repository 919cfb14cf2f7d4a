#include "files/prepare.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <ostream>
#include <sstream>

#include "files/atomic_file.h"
#include "base/errors.h"
#include "files/tokenizer.h"

namespace dgpt {

const char* const kTinyShakespeareUrl =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

namespace {

bool readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Tries curl, then wget. Returns true when `dest` was written.
bool download(const std::string& url, const std::string& dest, std::ostream& log) {
  const std::string tmp = dest + ".download";
  for (const std::string cmd : {"curl -fsSL --connect-timeout 15 --max-time 120 -o '" + tmp + "' '" + url + "'",
                                "wget -q -T 30 -O '" + tmp + "' '" + url + "'"}) {
    log << "downloading " << url << "\n";
    if (std::system((cmd + " 2>/dev/null").c_str()) == 0 && std::rename(tmp.c_str(), dest.c_str()) == 0)
      return true;
    std::remove(tmp.c_str());
  }
  return false;
}

}  // namespace

void write_token_file(const std::string& path, const std::vector<int64_t>& ids) {
  std::string bytes(ids.size() * 2, '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] > 65535) throw UserError("token id " + std::to_string(ids[i]) + " does not fit uint16");
    bytes[2 * i] = char(ids[i] & 0xFF);
    bytes[2 * i + 1] = char((ids[i] >> 8) & 0xFF);
  }
  write_file_atomically(path, bytes);
}

std::string tinyshakespeare_source(const std::string& input, const std::string& out_dir, std::ostream& log) {
  std::string source = input;
  if (source.empty()) {
    source = out_dir + "/input.txt";
    if (!readable(source) && !download(kTinyShakespeareUrl, source, log))
      throw UserError(std::string("no input text: pass --input PATH to tinyshakespeare's input.txt, ") +
                      "or put it at " + source + " (it is " + kTinyShakespeareUrl + ")");
  }
  if (!readable(source)) throw UserError("cannot read input " + source);
  return source;
}

std::string read_text_file(const std::string& path) { return read_file(path); }

void prepare_shakespeare_char(const std::string& input, const std::string& out_dir, std::ostream& log) {
  make_dirs(out_dir);

  const std::string source = tinyshakespeare_source(input, out_dir, log);
  const std::string text = read_file(source);
  const auto chars = utf8_decode(text);
  if (chars.size() < 2) throw UserError("input " + source + " is too short");
  const auto vocab = CharTokenizer::from_text(text);
  log << "length of dataset in characters: " << chars.size() << "\n";
  log << "vocab size: " << vocab.vocab_size() << "\n";
  if (vocab.vocab_size() > 65536) throw UserError("more than 65536 distinct characters do not fit uint16");

  const auto ids = vocab.encode(text);
  const size_t n_train = size_t(double(ids.size()) * 0.9);  // nanoGPT: int(n * 0.9)
  write_token_file(out_dir + "/train.bin", {ids.begin(), ids.begin() + long(n_train)});
  write_token_file(out_dir + "/val.bin", {ids.begin() + long(n_train), ids.end()});
  vocab.write_meta_json(out_dir + "/meta.json");
  log << "train has " << n_train << " tokens\n";
  log << "val has " << ids.size() - n_train << " tokens\n";
  log << "wrote " << out_dir << "/train.bin, val.bin, meta.json\n";
}

}  // namespace dgpt
