// Small file-system helpers with user-facing errors.
#pragma once
#include <string>

namespace dgpt {

// Writes `bytes` to `path` through a temporary file and a rename, so `path` is never torn.
void write_file_atomically(const std::string& path, const std::string& bytes);
// mkdir -p. Throws UserError when the folder cannot be made.
void make_dirs(const std::string& dir);

}  // namespace dgpt
