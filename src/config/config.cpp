// Config schema, nanoGPT-dialect config files, --key=value overrides and validation.
//
// One schema mechanism serves TrainConfig and SampleConfig: each config type has a table of
// keys (name, member pointer, help, whether None is allowed, an optional hook run after the
// key is set). Everything else — parsing, type checks, printing, help — is written once as
// templates over that table.
#include "config/config.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <ostream>
#include <sstream>
#include <type_traits>
#include <variant>

namespace dgpt {
namespace {

// Messages quote at most this much of what the user wrote (a value nested thousands deep).
constexpr size_t kMaxQuoted = 200;
std::string abbreviate(const std::string& s) {
  return s.size() <= kMaxQuoted ? s : s.substr(0, kMaxQuoted) + "...";
}


template <class Cfg>
using Field = std::variant<int64_t Cfg::*, double Cfg::*, bool Cfg::*, std::optional<bool> Cfg::*,
                           std::string Cfg::*, std::vector<std::string> Cfg::*>;

enum class KeyKind { Plain, NoneAllowed, MarksDevice };

template <class Cfg>
struct Key {
  const char* name;
  Field<Cfg> field;
  const char* help;
  KeyKind kind = KeyKind::Plain;
  bool none_allowed() const { return kind == KeyKind::NoneAllowed; }  // block_types: None = all 'tp'; top_k: None = 0
};

#define DGPT_SCHEMA_ENTRY(type, name, default_value, kind, help) Key<C>{#name, &C::name, help, KeyKind::kind},

template <class Cfg>
const std::vector<Key<Cfg>>& schema();

template <>
const std::vector<Key<TrainConfig>>& schema<TrainConfig>() {
  using C = TrainConfig;
  static const std::vector<Key<C>> keys = {DGPT_TRAIN_KEYS(DGPT_SCHEMA_ENTRY)};
  return keys;
}

template <>
const std::vector<Key<SampleConfig>>& schema<SampleConfig>() {
  using C = SampleConfig;
  static const std::vector<Key<C>> keys = {DGPT_SAMPLE_KEYS(DGPT_SCHEMA_ENTRY)};
  return keys;
}

// Keys of nanoGPT's train.py/sample.py that only mean something to the Python program.
bool is_python_only_key(const std::string& key) {
  return key == "compile" || key.rfind("wandb_", 0) == 0;
}

template <class Cfg>
const Key<Cfg>* find_key(const std::string& name) {
  for (const auto& key : schema<Cfg>()) {
    if (name == key.name) return &key;
  }
  return nullptr;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

template <class Cfg>
[[noreturn]] void throw_unknown_key(const std::string& name, const std::string& origin) {
  std::string message = fmt::format("unknown config key '{}' ({})", name.substr(0, 200), origin);
  const char* best = nullptr;
  size_t best_distance = std::max<size_t>(2, name.size() / 3);  // farther than this: no hint
  for (const auto& key : schema<Cfg>()) {
    size_t d = edit_distance(name, key.name);
    if (d <= best_distance) {
      best = key.name;
      best_distance = d;
      if (d == 0) break;
    }
  }
  if (best != nullptr) message += fmt::format("; did you mean '{}'?", best);
  throw UserError(message);
}

template <class Cfg>
bool is_string_key(const Key<Cfg>& key) {
  return std::holds_alternative<std::string Cfg::*>(key.field);
}

template <class Cfg>
std::string expected_type(const Key<Cfg>& key) {
  return std::visit(
      [&](auto member) -> std::string {
        using T = std::decay_t<decltype(std::declval<Cfg&>().*member)>;
        if constexpr (std::is_same_v<T, int64_t>) return key.none_allowed() ? "int or None" : "int";
        if constexpr (std::is_same_v<T, double>) return "float";
        if constexpr (std::is_same_v<T, bool>) return "bool (True or False)";
        if constexpr (std::is_same_v<T, std::optional<bool>>) return "True, False or None";
        if constexpr (std::is_same_v<T, std::string>) return "str";
        if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of str, or None";
      },
      key.field);
}

template <class Cfg>
void assign_value(Cfg& cfg, const Key<Cfg>& key, const PyValue& value, const std::string& origin,
                  std::ostream& notices) {
  auto type_error = [&] {
    throw UserError(fmt::format("config key '{}' ({}) expects {}, got {} ({})", key.name, origin,
                                expected_type(key), abbreviate(value.repr()), value.type_name()));
  };
  std::visit(
      [&](auto member) {
        auto& field = cfg.*member;
        using T = std::decay_t<decltype(field)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          if (value.is_int()) {
            field = std::get<int64_t>(value.v);
          } else if (key.none_allowed() && value.is_none()) {
            field = 0;
          } else {
            type_error();
          }
        } else if constexpr (std::is_same_v<T, double>) {
          // Python accepts an int where a float is expected (learning_rate = 1 is fine).
          if (value.is_float()) {
            field = std::get<double>(value.v);
          } else if (value.is_int()) {
            field = static_cast<double>(std::get<int64_t>(value.v));
          } else {
            type_error();
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!value.is_bool()) type_error();
          field = std::get<bool>(value.v);
        } else if constexpr (std::is_same_v<T, std::optional<bool>>) {  // None: not set
          if (value.is_none()) {
            field.reset();
          } else {
            if (!value.is_bool()) type_error();
            field = std::get<bool>(value.v);
          }
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (!value.is_str()) type_error();
          field = std::get<std::string>(value.v);
        } else {
          static_assert(std::is_same_v<T, std::vector<std::string>>);
          if (key.none_allowed() && value.is_none()) {
            field.clear();
            return;
          }
          if (!value.is_list()) type_error();
          // An empty list would silently mean None; it names no layer, so it is refused.
          if (std::get<PyValue::List>(value.v).empty()) {
            throw UserError(fmt::format("config key '{}' ({}) is an empty list, but it needs one entry per layer "
                                        "(n_layer of them); write None for all 'tp'",
                                        key.name, origin));
          }
          std::vector<std::string> items;
          for (const auto& item : std::get<PyValue::List>(value.v)) {
            if (!item.is_str()) type_error();
            items.push_back(std::get<std::string>(item.v));
          }
          field = std::move(items);
        }
      },
      key.field);
  if (key.kind == KeyKind::MarksDevice) cfg.device_was_set = true;
}

template <class Cfg>
PyValue get_value(const Cfg& cfg, const Key<Cfg>& key) {
  return std::visit(
      [&](auto member) -> PyValue {
        const auto& field = cfg.*member;
        using T = std::decay_t<decltype(field)>;
        if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          if (field.empty() && key.none_allowed()) return PyValue{};
          PyValue::List items;
          for (const auto& s : field) items.push_back(PyValue{s});
          return PyValue{std::move(items)};
        } else if constexpr (std::is_same_v<T, std::optional<bool>>) {
          return field ? PyValue{*field} : PyValue{};
        } else {
          return PyValue{field};
        }
      },
      key.field);
}

// A statement spanning lines, on one line.
std::string joined_lines(const std::string& s) {
  std::string out;
  std::istringstream lines(s);
  for (std::string line; std::getline(lines, line);) {
    line = trim(line);
    if (line.empty()) continue;
    if (!out.empty() && out.back() != '(' && out.back() != '[' && line[0] != ')' && line[0] != ']') {
      out += ' ';
    }
    out += line;
  }
  return out;
}

// A statement spanning lines is quoted on one line (and abbreviated) in messages and notices.
std::string one_line(const std::string& s) {
  return abbreviate(joined_lines(s));
}

bool is_identifier(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// Parses `value_text` for `name` and assigns it. Python-only keys are noted and not evaluated, so
// a value such as 'ft-' + str(time.time()) does not stop the file from loading.
template <class Cfg>
void assign_text(Cfg& cfg, const std::string& name, const std::string& value_text,
                 const std::string& origin, bool raw_string_fallback, std::ostream& notices) {
  if (is_python_only_key(name)) {
    notices << fmt::format("notice: ignoring {} = {} (Python-only key)\n", name, one_line(value_text));
    return;
  }
  const Key<Cfg>* key = find_key<Cfg>(name);
  if (key == nullptr) throw_unknown_key<Cfg>(name, origin);
  PyValue value;
  try {
    value = parse_py_literal(value_text);
  } catch (const UserError& e) {
    // nanoGPT's configurator: a value that is not a literal is the string itself (--device=cpu).
    if (raw_string_fallback && is_string_key(*key)) {
      value = PyValue{value_text};
    } else {
      std::string hint;
      // Help the user who wrote a bare list (tp,spd); a broken list speaks for itself.
      const bool bare = value_text.find_first_of("[(") == std::string::npos;
      if (bare && std::holds_alternative<std::vector<std::string> Cfg::*>(key->field)) {
        hint = fmt::format(" (write a Python list, e.g. {} = ['tp', 'spd'] * 2)", name);
      }
      throw UserError(fmt::format("config key '{}' ({}): {}{}", name, origin, e.what(), hint));
    }
  }
  assign_value(cfg, *key, value, origin, notices);
}

struct Statement {
  int line;          // where the statement starts
  std::string text;  // comments removed; lines of a multi-line statement joined with '\n'
};

// Splits Python source into statements: a newline ends a statement unless a bracket is open or
// the line ends in a backslash; ';' also ends one. Comments are dropped; strings are respected.
std::vector<Statement> split_statements(std::string source, const std::string& path) {
  source.erase(std::remove(source.begin(), source.end(), '\r'), source.end());  // CRLF files
  std::vector<Statement> statements;
  std::vector<std::pair<char, int>> open_brackets;  // bracket, line
  std::string current;
  bool has_content = false;
  int line = 1;
  int start_line = 1;
  auto flush = [&] {
    if (has_content) statements.push_back({start_line, trim(current)});
    current.clear();
    has_content = false;
  };
  auto append = [&](char c) {
    if (!has_content && !std::isspace(static_cast<unsigned char>(c))) {
      start_line = line;
      has_content = true;
    }
    current += c;
  };
  for (size_t i = 0; i < source.size(); ++i) {
    const char c = source[i];
    const char next = i + 1 < source.size() ? source[i + 1] : '\0';
    if (c == '\'' || c == '"') {
      const char quote = c;
      const int string_line = line;
      append(c);
      for (++i;; ++i) {
        if (i >= source.size() || source[i] == '\n') {
          throw UserError(fmt::format("{}:{}: unterminated string", path, string_line));
        }
        current += source[i];
        if (source[i] == '\\' && i + 1 < source.size()) {
          if (source[i + 1] == '\n') ++line;
          current += source[++i];
        } else if (source[i] == quote) {
          break;
        }
      }
    } else if (c == '#') {
      while (i + 1 < source.size() && source[i + 1] != '\n') ++i;
    } else if (c == '\\' && next == '\n') {
      ++i;
      ++line;
      current += ' ';
    } else if (c == '(' || c == '[' || c == '{') {
      open_brackets.emplace_back(c, line);
      append(c);
    } else if (c == ')' || c == ']' || c == '}') {
      const char opener = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (open_brackets.empty() || open_brackets.back().first != opener) {
        throw UserError(fmt::format("{}:{}: unmatched '{}'", path, line, c));
      }
      open_brackets.pop_back();
      append(c);
    } else if (c == '\n') {
      if (open_brackets.empty()) {
        flush();
      } else {
        current += '\n';
      }
      ++line;
    } else if (c == ';' && open_brackets.empty()) {
      flush();
    } else {
      append(c);
    }
  }
  if (!open_brackets.empty()) {
    throw UserError(fmt::format("{}:{}: '{}' opened on line {} is never closed", path, start_line,
                                open_brackets.back().first, open_brackets.back().second));
  }
  flush();
  return statements;
}

template <class Cfg>
void apply_statement(Cfg& cfg, const Statement& statement, const std::string& path,
                     std::ostream& notices) {
  const std::string origin = fmt::format("{}:{}", path, statement.line);
  const std::string& text = statement.text;
  if (text.rfind("import ", 0) == 0 || text.rfind("from ", 0) == 0) {
    notices << fmt::format("notice: skipping '{}' ({}): imports are not evaluated\n", one_line(text),
                           origin);
    return;
  }
  size_t name_end = 0;
  while (name_end < text.size() &&
         (std::isalnum(static_cast<unsigned char>(text[name_end])) || text[name_end] == '_')) {
    ++name_end;
  }
  const std::string name = text.substr(0, name_end);
  size_t eq = name_end;
  while (eq < text.size() && (text[eq] == ' ' || text[eq] == '\t')) ++eq;
  if (!is_identifier(name) || eq >= text.size() || text[eq] != '=' ||
      (eq + 1 < text.size() && text[eq + 1] == '=')) {
    throw UserError(fmt::format("{}: expected `key = value`, got: {}", origin, one_line(text)));
  }
  const std::string value_text = trim(text.substr(eq + 1));
  if (value_text.empty()) {
    throw UserError(fmt::format("{}: missing value in: {}", origin, one_line(text)));
  }
  assign_text(cfg, name, value_text, origin, /*raw_string_fallback=*/false, notices);
}

// A config file's text. Only a regular file of at most kMaxConfigBytes is read: a directory, a FIFO
// (which could block forever or stream without end), a device (/dev/zero) or a socket is refused
// before reading. A UTF-8 byte-order mark at the start (Windows editors write one) is skipped.
constexpr size_t kMaxConfigBytes = size_t{16} << 20;

std::string read_config_file(const std::string& path) {
  auto fail = [&](const std::string& why) {
    throw UserError(fmt::format("cannot read config file '{}': {}", path, why));
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail("it is a directory, not a file");
  if (!S_ISREG(st.st_mode))
    fail(std::string("it is not a regular file (") + (S_ISFIFO(st.st_mode) ? "a FIFO or pipe" : "a device or a socket") +
         ")");
  if (size_t(st.st_size) > kMaxConfigBytes)
    fail(fmt::format("it has {} bytes, more than a config file's limit of {}", st.st_size, kMaxConfigBytes));
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // never waits, should it have changed
  if (fd < 0) fail(std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail(std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, size_t(n));
    if (text.size() > kMaxConfigBytes) {
      ::close(fd);
      fail(fmt::format("it holds more than a config file's limit of {} bytes", kMaxConfigBytes));
    }
  }
  ::close(fd);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  return text;
}

template <class Cfg>
void load_file(Cfg& cfg, const std::string& path, std::ostream& notices) {
  for (const auto& statement : split_statements(read_config_file(path), path)) {
    apply_statement(cfg, statement, path, notices);
  }
}

template <class Cfg>
void apply_override(Cfg& cfg, const std::string& arg, std::ostream& notices) {
  const size_t eq = arg.find('=');
  const std::string name = eq == std::string::npos || arg.rfind("--", 0) != 0 ? "" : arg.substr(2, eq - 2);
  if (!is_identifier(name)) {
    throw UserError(fmt::format("bad override '{}': expected --key=value", abbreviate(arg)));
  }
  assign_text(cfg, name, arg.substr(eq + 1), fmt::format("override {}", abbreviate(arg)),
              /*raw_string_fallback=*/true, notices);
}

template <class Cfg>
Cfg load_config(const std::vector<std::string>& config_files, const std::vector<std::string>& overrides,
                std::ostream& notices) {
  Cfg cfg;
  for (const auto& path : config_files) load_file(cfg, path, notices);
  for (const auto& arg : overrides) apply_override(cfg, arg, notices);
  return cfg;
}

template <class Cfg>
std::vector<std::pair<std::string, PyValue>> items_of(const Cfg& cfg) {
  std::vector<std::pair<std::string, PyValue>> items;
  for (const auto& key : schema<Cfg>()) items.emplace_back(key.name, get_value(cfg, key));
  return items;
}

template <class Cfg>
std::string keys_help() {
  const Cfg defaults;
  size_t name_width = 0, default_width = 0;
  std::vector<std::string> default_reprs;
  for (const auto& key : schema<Cfg>()) {
    default_reprs.push_back(get_value(defaults, key).repr());
    name_width = std::max(name_width, std::strlen(key.name));
    default_width = std::max(default_width, default_reprs.back().size());
  }
  std::string out;
  for (size_t i = 0; i < schema<Cfg>().size(); ++i) {
    const auto& key = schema<Cfg>()[i];
    out += fmt::format("  {:<{}}  {:<{}}  {}\n", key.name, name_width, default_reprs[i], default_width,
                       key.help);
  }
  return out;
}

std::string list_repr(const std::vector<std::string>& items) {
  PyValue::List list;
  for (const auto& s : items) list.push_back(PyValue{s});
  return PyValue{std::move(list)}.repr();
}

std::string str_repr(const std::string& s) { return PyValue{s}.repr(); }
std::string float_repr(double x) { return PyValue{x}.repr(); }

bool one_of(const std::string& value, std::initializer_list<const char*> allowed) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return value == a; });
}

}  // namespace

std::vector<std::string> TrainConfig::resolved_block_types() const {
  if (!block_types.empty()) return block_types;
  return std::vector<std::string>(static_cast<size_t>(std::max<int64_t>(n_layer, 0)), ModelArgs::kBaselineBlockType);
}

TrainConfig load_train_config(const std::vector<std::string>& config_files,
                              const std::vector<std::string>& overrides, std::ostream& notices) {
  return load_config<TrainConfig>(config_files, overrides, notices);
}

SampleConfig load_sample_config(const std::vector<std::string>& config_files,
                                const std::vector<std::string>& overrides, std::ostream& notices) {
  return load_config<SampleConfig>(config_files, overrides, notices);
}

namespace {

// Every float key holds a finite number: 1e999 parses as inf (as in Python) and 1e999 - 1e999 as
// nan, and neither is a learning rate, a temperature or a timeout. Run after the keys' own range
// checks, whose messages say more (learning_rate = -inf is "must be >= 0").
template <class Cfg>
void validate_finite_floats(const Cfg& cfg) {
  for (const auto& key : schema<Cfg>()) {
    if (auto member = std::get_if<double Cfg::*>(&key.field)) {
      const double value = cfg.**member;
      if (!std::isfinite(value))
        throw UserError(fmt::format("{} must be a finite number, got {}", key.name, float_repr(value)));
    }
  }
}

// The keys train and sample share: dtype, backend, tp_procs, comm_timeout.
template <class Cfg>
void validate_system_keys(const Cfg& cfg) {
  if (!one_of(cfg.dtype, {"float32", "bfloat16", "float16", "float64"})) {
    throw UserError(fmt::format("dtype must be 'float32', 'bfloat16', 'float16' or 'float64', got {}",
                                str_repr(cfg.dtype)));
  }
  if (!one_of(cfg.backend, {"sim", "gloo", "nccl"})) {
    throw UserError(fmt::format("backend must be 'sim', 'gloo' or 'nccl', got {}", str_repr(cfg.backend)));
  }
  if (cfg.tp_procs < 0) throw UserError(fmt::format("tp_procs must be >= 0, got {}", cfg.tp_procs));
  if (!(cfg.comm_timeout > 0)) {
    throw UserError(fmt::format("comm_timeout must be positive, got {}", float_repr(cfg.comm_timeout)));
  }
}

}  // namespace

void validate(const TrainConfig& cfg, const std::vector<std::string>& known_block_types) {
  const std::pair<const char*, int64_t> positive_keys[] = {
      {"n_layer", cfg.n_layer},
      {"n_head", cfg.n_head},
      {"n_embd", cfg.n_embd},
      {"block_size", cfg.block_size},
      {"batch_size", cfg.batch_size},
      {"gradient_accumulation_steps", cfg.gradient_accumulation_steps},
      {"tp_size", cfg.tp_size},
      {"eval_iters", cfg.eval_iters},
      {"log_interval", cfg.log_interval},
      {"eval_interval", cfg.eval_interval},
  };
  for (const auto& [name, value] : positive_keys) {
    if (value <= 0) throw UserError(fmt::format("{} must be positive, got {}", name, value));
  }
  const std::pair<const char*, int64_t> non_negative_keys[] = {
      {"max_iters", cfg.max_iters},
      {"warmup_iters", cfg.warmup_iters},
      {"lr_decay_iters", cfg.lr_decay_iters},
  };
  for (const auto& [name, value] : non_negative_keys) {
    if (value < 0) throw UserError(fmt::format("{} must be >= 0, got {}", name, value));
  }

  // GPT-2 weights bring their own n_layer, n_head and n_embd: the rules that involve them are checked
  // on those when the weights load (pretrained_run_args).
  const bool sizes_from_weights = is_gpt2_model_name(cfg.init_from) || is_checkpoint_path(cfg.init_from);
  if (!sizes_from_weights && !cfg.block_types.empty() && static_cast<int64_t>(cfg.block_types.size()) != cfg.n_layer) {
    throw UserError(fmt::format("block_types has {} entries but n_layer is {}: block_types = {}",
                                cfg.block_types.size(), cfg.n_layer, list_repr(cfg.block_types)));
  }
  const std::vector<std::string> types = cfg.resolved_block_types();
  for (const auto& type : types) {
    if (std::find(known_block_types.begin(), known_block_types.end(), type) == known_block_types.end()) {
      throw UserError(fmt::format("unknown block type '{}' in block_types; known block types: {}", type,
                                  list_repr(known_block_types)));
    }
  }
  if (!sizes_from_weights && cfg.n_head % cfg.tp_size != 0) {
    throw UserError(fmt::format(
        "n_head ({}) must be divisible by tp_size ({}): each shard owns whole attention heads",
        cfg.n_head, cfg.tp_size));
  }
  if (!sizes_from_weights && (4 * cfg.n_embd) % cfg.tp_size != 0) {
    throw UserError(fmt::format("the MLP hidden width 4*n_embd ({}) must be divisible by tp_size ({})",
                                4 * cfg.n_embd, cfg.tp_size));
  }
  if (!sizes_from_weights && cfg.n_embd % cfg.n_head != 0) {
    throw UserError(fmt::format("n_embd ({}) must be divisible by n_head ({})", cfg.n_embd, cfg.n_head));
  }

  if (!one_of(cfg.model_type, {"gpt", "distributed_gpt"})) {
    throw UserError(fmt::format("model_type must be 'gpt' or 'distributed_gpt', got {}",
                                str_repr(cfg.model_type)));
  }
  if (cfg.model_type == "gpt") {
    if (cfg.vocab_parallel) {
      throw UserError(
          "model_type='gpt' is the dense model and has no shards to split the vocabulary over, but "
          "vocab_parallel=True; set model_type='distributed_gpt' to shard the embedding and the loss");
    }
    if (cfg.tp_size != 1) {
      throw UserError(fmt::format(
          "model_type='gpt' is the dense model and has no tensor parallelism, but tp_size={}; "
          "set model_type='distributed_gpt' to shard blocks",
          cfg.tp_size));
    }
    for (const auto& type : types) {
      if (type != ModelArgs::kBaselineBlockType) {
        throw UserError(fmt::format(
            "model_type='gpt' is the dense model, but block_types contains '{}'; "
            "set model_type='distributed_gpt' to use {} blocks",
            type, type));
      }
    }
  }
  if (!one_of(cfg.init_from, {"scratch", "resume"}) && !is_gpt2_model_name(cfg.init_from) &&
      !is_checkpoint_path(cfg.init_from)) {
    throw UserError(fmt::format(
        "init_from must be 'scratch', 'resume', 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl' or a checkpoint "
        "file ('out-dir/ckpt.pt': its weights, a fresh optimizer), got {}",
        str_repr(cfg.init_from)));
  }
  if (!one_of(cfg.activation, {"gelu", "gelu_tanh"}))
    throw UserError(fmt::format("activation must be 'gelu' (exact, nanoGPT's) or 'gelu_tanh' (GPT-2's gelu_new), got {}",
                                str_repr(cfg.activation)));
  if (!one_of(cfg.parallel_merge, {"sum", "mean"})) {
    throw UserError(fmt::format("parallel_merge must be 'sum' or 'mean', got {}",
                                str_repr(cfg.parallel_merge)));
  }
  validate_system_keys(cfg);

  // Written as !(in range) so that NaN fails too.
  if (!(cfg.dropout >= 0.0 && cfg.dropout < 1.0)) {
    throw UserError(fmt::format("dropout must be in [0, 1), got {}", float_repr(cfg.dropout)));
  }
  const std::pair<const char*, double> non_negative_floats[] = {
      {"learning_rate", cfg.learning_rate},
      {"min_lr", cfg.min_lr},
      {"weight_decay", cfg.weight_decay},
      {"grad_clip", cfg.grad_clip},
  };
  for (const auto& [name, value] : non_negative_floats) {
    if (!(value >= 0.0)) throw UserError(fmt::format("{} must be >= 0, got {}", name, float_repr(value)));
  }
  const std::pair<const char*, double> betas[] = {{"beta1", cfg.beta1}, {"beta2", cfg.beta2}};
  for (const auto& [name, value] : betas) {
    if (!(value >= 0.0 && value < 1.0)) {
      throw UserError(fmt::format("{} must be in [0, 1), got {}", name, float_repr(value)));
    }
  }
  validate_finite_floats(cfg);
}

void validate(const SampleConfig& cfg) {
  if (cfg.num_samples < 1) throw UserError(fmt::format("num_samples must be >= 1, got {}", cfg.num_samples));
  if (cfg.max_new_tokens < 0) throw UserError(fmt::format("max_new_tokens must be >= 0, got {}", cfg.max_new_tokens));
  if (cfg.top_k < 0) throw UserError(fmt::format("top_k must be >= 0 (0 or None keeps all), got {}", cfg.top_k));
  if (cfg.tp_size < 0) throw UserError(fmt::format("tp_size must be >= 0 (0 uses the checkpoint's), got {}", cfg.tp_size));
  // Written as !(in range) so that NaN fails too.
  if (!(cfg.temperature >= 0.0))
    throw UserError(fmt::format("temperature must be >= 0 (0 is greedy), got {}", float_repr(cfg.temperature)));
  if (!(cfg.top_p > 0.0 && cfg.top_p <= 1.0))
    throw UserError(fmt::format("top_p must be in (0, 1] (1 keeps every token), got {}", float_repr(cfg.top_p)));
  validate_system_keys(cfg);
  validate_finite_floats(cfg);
}

TrainConfig validated_with_sizes(const TrainConfig& cfg, const ModelArgs& sizes,
                                 const std::vector<std::string>& known_block_types, const std::string& where) {
  TrainConfig check = cfg;
  check.init_from = "scratch";
  check.n_layer = sizes.n_layer;
  check.n_head = sizes.n_head;
  check.n_embd = sizes.n_embd;
  check.bias = sizes.bias;
  try {
    validate(check, known_block_types);
  } catch (const UserError& e) {
    throw UserError(fmt::format("init_from='{}' (n_layer={}, n_head={}, n_embd={}{}): {}", cfg.init_from, sizes.n_layer,
                                sizes.n_head, sizes.n_embd, where, e.what()));
  }
  return check;
}

bool is_checkpoint_path(const std::string& init_from) {
  return init_from.size() > 3 && init_from.compare(init_from.size() - 3, 3, ".pt") == 0;
}

bool is_gpt2_model_name(const std::string& init_from) {
  return one_of(init_from, {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"});
}

uint64_t config_hash(const std::vector<std::pair<std::string, PyValue>>& items) {
  uint64_t h = 1469598103934665603ull;
  for (auto& [key, value] : items)
    for (char c : key + "=" + value.repr() + ";") {
      h ^= uint8_t(c);
      h *= 1099511628211ull;
    }
  return h;
}

std::vector<std::pair<std::string, PyValue>> config_items(const TrainConfig& cfg) {
  return items_of(cfg);
}

std::vector<std::pair<std::string, PyValue>> config_items(const SampleConfig& cfg) {
  return items_of(cfg);
}

void set_config_key(TrainConfig& cfg, const std::string& key, const PyValue& value) {
  // Checkpoints written by nanoGPT store wandb_* and compile too; they mean nothing here.
  if (is_python_only_key(key)) return;
  const Key<TrainConfig>* spec = find_key<TrainConfig>(key);
  if (spec == nullptr) throw_unknown_key<TrainConfig>(key, "stored config");
  std::ostream discard(nullptr);
  // Restoring a stored config is not the user naming the device.
  const bool device_was_set = cfg.device_was_set;
  assign_value(cfg, *spec, value, "stored config", discard);
  cfg.device_was_set = device_was_set;
}

std::string format_config(const std::vector<std::pair<std::string, PyValue>>& items) {
  size_t width = 0;
  for (const auto& item : items) width = std::max(width, item.first.size());
  std::string out;
  for (const auto& [key, value] : items) out += fmt::format("{:<{}} = {}\n", key, width, value.repr());
  return out;
}

std::string train_keys_help() { return keys_help<TrainConfig>(); }
std::string sample_keys_help() { return keys_help<SampleConfig>(); }

}  // namespace dgpt
