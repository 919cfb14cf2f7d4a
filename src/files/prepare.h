// `dgpt prepare`: builds a dataset folder in nanoGPT's format.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace dgpt {

// nanoGPT's data/shakespeare_char/prepare.py: the first 90% of the characters to train.bin, the
// rest to val.bin, ids of the sorted distinct characters, and meta.json with the vocabulary.
// The text is `input` if given, else out_dir/input.txt, else downloaded from nanoGPT's URL.
void prepare_shakespeare_char(const std::string& input, const std::string& out_dir, std::ostream& log);

// The path of the tinyshakespeare text: `input` if given, else out_dir/input.txt, downloaded there
// from nanoGPT's URL when missing (out_dir must exist). Throws UserError saying how to provide it.
std::string tinyshakespeare_source(const std::string& input, const std::string& out_dir, std::ostream& log);
// A whole file. Throws UserError when it cannot be read.
std::string read_text_file(const std::string& path);

// Writes ids as little-endian uint16 (nanoGPT's .bin), atomically.
void write_token_file(const std::string& path, const std::vector<int64_t>& ids);

extern const char* const kTinyShakespeareUrl;

}  // namespace dgpt
