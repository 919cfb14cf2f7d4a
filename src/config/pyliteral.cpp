// Python literal expressions: a recursive-descent parser that evaluates as it parses, and repr().
//
// Grammar (Python precedence; unary signs bind tighter than '*', as in Python):
//   sum     := product (('+' | '-') product)*
//   product := unary ('*' unary)*
//   unary   := ('-' | '+') unary | atom
//   atom    := number | string+ | True | False | None | '[' items ']' | '(' sum ')' | '(' items ')'
#include "config/pyliteral.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <system_error>

namespace dgpt {
namespace {

// Refuses results bigger than this: `['tp'] * 10**9` is a typo, not a config.
constexpr size_t kMaxSequenceLength = size_t{1} << 24;
// Brackets, parentheses and unary signs nested deeper than this are refused before the recursion
// can exhaust the stack (Python's own parser stops at 200 nested parentheses).
constexpr int kMaxNesting = 100;
// Error messages quote at most this much of the literal.
constexpr size_t kMaxQuotedLength = 200;

bool is_ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Multi-line statements from config files are shown on one line in messages.
std::string one_line(const std::string& text) {
  std::string out;
  bool after_newline = false;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
      after_newline = true;
    } else if (after_newline && (c == ' ' || c == '\t')) {
      continue;
    } else {
      if (after_newline && !out.empty()) out += ' ';
      after_newline = false;
      out += c;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_number(const PyValue& v) { return v.is_bool() || v.is_int() || v.is_float(); }
// Python's bool is an int subclass: True * 2 == 2, ['a'] * True == ['a'].
bool is_integral(const PyValue& v) { return v.is_bool() || v.is_int(); }
int64_t as_int(const PyValue& v) {
  return v.is_bool() ? int64_t{std::get<bool>(v.v)} : std::get<int64_t>(v.v);
}
double as_double(const PyValue& v) {
  return v.is_float() ? std::get<double>(v.v) : static_cast<double>(as_int(v));
}

class LiteralParser {
 public:
  explicit LiteralParser(const std::string& text) : text_(text) {}

  PyValue parse() {
    PyValue value = parse_sum();
    skip_space();
    if (!at_end()) fail(fmt::format("unexpected {} after the value", describe_here()));
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    // A huge value (a list nested thousands deep) is quoted by its start, so the message stays readable.
    std::string quoted = one_line(text_);
    if (quoted.size() > kMaxQuotedLength) quoted = quoted.substr(0, kMaxQuotedLength) + "...";
    throw UserError(fmt::format("bad literal \"{}\": {}", quoted, what));
  }

  // One level of nesting (a bracket, a parenthesis, a unary sign) for the lifetime of the guard.
  struct Nesting {
    explicit Nesting(LiteralParser& p) : parser(p) {
      if (++parser.depth_ > kMaxNesting)
        parser.fail(fmt::format("nested more than {} levels deep", kMaxNesting));
    }
    ~Nesting() { --parser.depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    LiteralParser& parser;
  };

  bool at_end() const { return pos_ >= text_.size(); }
  char peek(size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }

  // Whitespace includes newlines (statements spanning lines), comments and backslash-newline.
  void skip_space() {
    while (!at_end()) {
      char c = peek();
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else if (c == '\\' && (peek(1) == '\n' || (peek(1) == '\r' && peek(2) == '\n'))) {
        pos_ += peek(1) == '\r' ? 3 : 2;
      } else {
        break;
      }
    }
  }

  std::string describe_here() const {
    if (at_end()) return "end of input";
    if (is_ident_start(peek())) {
      size_t end = pos_;
      while (end < text_.size() && is_ident_char(text_[end])) ++end;
      return fmt::format("'{}'", text_.substr(pos_, end - pos_));
    }
    return fmt::format("'{}'", peek());
  }

  PyValue parse_sum() {
    PyValue value = parse_product();
    for (;;) {
      skip_space();
      char op = peek();
      if (op != '+' && op != '-') return value;
      ++pos_;
      PyValue rhs = parse_product();
      value = op == '+' ? add(value, rhs) : subtract(value, rhs);
    }
  }

  PyValue parse_product() {
    PyValue value = parse_unary();
    for (;;) {
      skip_space();
      char op = peek();
      if (op == '*' && peek(1) == '*') fail("operator '**' is not supported; write the number out");
      if (op == '/' || op == '%' || op == '@') {
        std::string name = (op == '/' && peek(1) == '/') ? "//" : std::string(1, op);
        fail(fmt::format("operator '{}' is not supported; only +, - and * are", name));
      }
      if (op != '*') return value;
      ++pos_;
      PyValue rhs = parse_unary();
      value = multiply(value, rhs);
    }
  }

  PyValue parse_unary() {
    skip_space();
    char op = peek();
    if (op != '-' && op != '+') return parse_atom();
    ++pos_;
    const Nesting nesting(*this);
    PyValue operand = parse_unary();
    if (!is_number(operand)) {
      fail(fmt::format("bad operand type for unary {}: '{}'", op, operand.type_name()));
    }
    if (op == '+') return operand.is_bool() ? PyValue{as_int(operand)} : operand;
    if (operand.is_float()) return PyValue{-std::get<double>(operand.v)};
    int64_t i = as_int(operand);
    if (i == std::numeric_limits<int64_t>::min()) fail("integer out of the 64-bit range");
    return PyValue{-i};
  }

  PyValue parse_atom() {
    skip_space();
    if (at_end()) fail("unexpected end of input");
    char c = peek();
    if (is_digit(c) || (c == '.' && is_digit(peek(1)))) return parse_number();
    if (c == '\'' || c == '"') {
      // Adjacent string literals concatenate, as in Python: 'a' 'b' == 'ab'.
      std::string s = parse_string();
      for (skip_space(); peek() == '\'' || peek() == '"'; skip_space()) s += parse_string();
      return PyValue{std::move(s)};
    }
    if (c == '[') {
      ++pos_;
      const Nesting nesting(*this);
      return PyValue{parse_items(']')};
    }
    if (c == '(') {
      const Nesting nesting(*this);
      return parse_parenthesised();
    }
    if (is_ident_start(c)) return parse_name();
    fail(fmt::format("unexpected {}", describe_here()));
  }

  PyValue parse_name() {
    size_t start = pos_;
    while (!at_end() && is_ident_char(peek())) ++pos_;
    std::string name = text_.substr(start, pos_ - start);
    if (name == "True") return PyValue{true};
    if (name == "False") return PyValue{false};
    if (name == "None") return PyValue{};
    if (peek() == '\'' || peek() == '"') {
      fail(fmt::format("string prefix '{}' is not supported; use a plain quoted string", name));
    }
    skip_space();
    if (peek() == '(') {
      fail(fmt::format("'{}(...)' is a function call; only literal values are allowed", name));
    }
    if (peek() == '.') fail(fmt::format("'{}.' is an attribute access; only literal values are allowed", name));
    fail(fmt::format("'{}' is a name, not a literal (a string needs quotes: '{}')", name, name));
  }

  // '(' already seen: a parenthesised expression, or a tuple (kept as a list) when a comma appears.
  PyValue parse_parenthesised() {
    ++pos_;
    skip_space();
    if (peek() == ')') {
      ++pos_;
      return PyValue{PyValue::List{}};
    }
    PyValue first = parse_sum();
    skip_space();
    if (peek() == ')') {
      ++pos_;
      return first;
    }
    if (peek() != ',') expected_separator(')');
    ++pos_;
    PyValue::List items = parse_items(')');
    items.insert(items.begin(), std::move(first));
    return PyValue{std::move(items)};
  }

  // Comma-separated values up to `close`; a trailing comma is allowed. The opener is consumed.
  PyValue::List parse_items(char close) {
    PyValue::List items;
    for (;;) {
      skip_space();
      if (peek() == close) {
        ++pos_;
        return items;
      }
      items.push_back(parse_sum());
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == close) {
        ++pos_;
        return items;
      }
      expected_separator(close);
    }
  }

  [[noreturn]] void expected_separator(char close) const {
    if (at_end()) fail("unexpected end of input");
    fail(fmt::format("expected ',' or '{}' but found {}", close, describe_here()));
  }

  PyValue parse_number() {
    size_t start = pos_;
    if (peek() == '0' && peek(1) != '\0' && std::strchr("xXoObB", peek(1)) != nullptr) {
      return parse_prefixed_int();
    }
    bool is_float = false;
    std::string digits;  // without underscores
    auto read_digits = [&](const char* part) {
      bool any = false;
      while (!at_end() && (is_digit(peek()) || peek() == '_')) {
        if (peek() == '_') {
          if (!any || !is_digit(peek(1))) fail(fmt::format("misplaced '_' in the {} of a number", part));
        } else {
          digits += peek();
          any = true;
        }
        ++pos_;
      }
      return any;
    };
    bool int_part = read_digits("digits");
    if (peek() == '.') {
      is_float = true;
      digits += '.';
      ++pos_;
      if (peek() == '_') fail("misplaced '_' in the digits of a number");
      bool frac_part = read_digits("digits");
      if (!int_part && !frac_part) fail("'.' is not a number");
    }
    if ((peek() == 'e' || peek() == 'E') &&
        (is_digit(peek(1)) || ((peek(1) == '+' || peek(1) == '-') && is_digit(peek(2))))) {
      is_float = true;
      digits += 'e';
      ++pos_;
      if (peek() == '+' || peek() == '-') digits += text_[pos_++];
      read_digits("exponent");
    }
    std::string written = text_.substr(start, pos_ - start);
    if (peek() == 'j' || peek() == 'J') fail(fmt::format("complex number '{}j' is not supported", written));
    if (is_ident_char(peek()) || peek() == '.') {
      fail(fmt::format("invalid number starting '{}{}'", written, peek()));
    }
    if (is_float) return PyValue{to_double(digits)};
    // Python 3 rejects 007: it used to mean octal.
    if (digits.size() > 1 && digits[0] == '0' && digits.find_first_not_of('0') != std::string::npos) {
      fail(fmt::format("leading zeros are not allowed in the integer '{}'", written));
    }
    return PyValue{to_int(digits, 10, written)};
  }

  PyValue parse_prefixed_int() {
    size_t start = pos_;
    char kind = static_cast<char>(std::tolower(static_cast<unsigned char>(peek(1))));
    int base = kind == 'x' ? 16 : kind == 'o' ? 8 : 2;
    pos_ += 2;
    std::string digits;
    while (!at_end() && (std::isxdigit(static_cast<unsigned char>(peek())) || peek() == '_')) {
      if (peek() != '_') digits += peek();
      ++pos_;
    }
    std::string written = text_.substr(start, pos_ - start);
    if (digits.empty() || is_ident_char(peek())) fail(fmt::format("invalid number '{}'", written));
    return PyValue{to_int(digits, base, written)};
  }

  int64_t to_int(const std::string& digits, int base, const std::string& written) const {
    int64_t value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
    if (ec == std::errc::result_out_of_range) {
      fail(fmt::format("integer {} is out of the 64-bit range", written));
    }
    if (ec != std::errc() || end != digits.data() + digits.size()) {
      fail(fmt::format("invalid number '{}'", written));
    }
    return value;
  }

  double to_double(const std::string& digits) const {
    double value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec == std::errc::result_out_of_range) {
      // Python gives inf for 1e999 and 0.0 for 1e-999; strtod does the same.
      return std::strtod(digits.c_str(), nullptr);
    }
    if (ec != std::errc() || end != digits.data() + digits.size()) {
      fail(fmt::format("invalid number '{}'", digits));
    }
    return value;
  }

  std::string parse_string() {
    const char quote = peek();
    const size_t start = pos_;
    if (peek(1) == quote && peek(2) == quote) fail("triple-quoted strings are not supported");
    ++pos_;
    std::string out;
    for (;;) {
      if (at_end() || peek() == '\n') {
        fail(fmt::format("unterminated string {}", text_.substr(start, pos_ - start)));
      }
      char c = text_[pos_++];
      if (c == quote) return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_end()) fail("unterminated string (it ends in a backslash)");
      char e = text_[pos_++];
      switch (e) {
        case '\n': break;  // backslash-newline continues the string
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'x': append_utf8(out, read_hex_escape(2, "\\x")); break;
        case 'u': append_utf8(out, read_hex_escape(4, "\\u")); break;
        case 'U': append_utf8(out, read_hex_escape(8, "\\U")); break;
        default:
          if (e >= '0' && e <= '7') {
            uint32_t code = static_cast<uint32_t>(e - '0');
            for (int n = 1; n < 3 && peek() >= '0' && peek() <= '7'; ++n) code = code * 8 + (text_[pos_++] - '0');
            append_utf8(out, code);
          } else {
            // Python keeps unknown escapes as written: '\d' is backslash + d.
            out += '\\';
            out += e;
          }
      }
    }
  }

  uint32_t read_hex_escape(int count, const char* name) {
    uint32_t code = 0;
    for (int i = 0; i < count; ++i) {
      char h = peek();
      if (!std::isxdigit(static_cast<unsigned char>(h))) {
        fail(fmt::format("truncated {} escape: it needs {} hex digits", name, count));
      }
      code = code * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                    ? h - '0'
                                                    : std::tolower(static_cast<unsigned char>(h)) - 'a' + 10);
      ++pos_;
    }
    if (code > 0x10FFFF) fail(fmt::format("{} escape out of the Unicode range", name));
    return code;
  }

  [[noreturn]] void unsupported(const char* op, const PyValue& a, const PyValue& b) const {
    fail(fmt::format("unsupported operand types for {}: '{}' and '{}'", op, a.type_name(), b.type_name()));
  }

  PyValue add(const PyValue& a, const PyValue& b) const {
    if (is_number(a) && is_number(b)) {
      if (a.is_float() || b.is_float()) return PyValue{as_double(a) + as_double(b)};
      int64_t sum = 0;
      if (__builtin_add_overflow(as_int(a), as_int(b), &sum)) fail("integer out of the 64-bit range");
      return PyValue{sum};
    }
    if (a.is_str() && b.is_str()) return PyValue{std::get<std::string>(a.v) + std::get<std::string>(b.v)};
    if (a.is_list() && b.is_list()) {
      PyValue::List joined = std::get<PyValue::List>(a.v);
      const auto& tail = std::get<PyValue::List>(b.v);
      joined.insert(joined.end(), tail.begin(), tail.end());
      return PyValue{std::move(joined)};
    }
    unsupported("+", a, b);
  }

  PyValue subtract(const PyValue& a, const PyValue& b) const {
    if (!is_number(a) || !is_number(b)) unsupported("-", a, b);
    if (a.is_float() || b.is_float()) return PyValue{as_double(a) - as_double(b)};
    int64_t diff = 0;
    if (__builtin_sub_overflow(as_int(a), as_int(b), &diff)) fail("integer out of the 64-bit range");
    return PyValue{diff};
  }

  PyValue multiply(const PyValue& a, const PyValue& b) const {
    if (is_number(a) && is_number(b)) {
      if (a.is_float() || b.is_float()) return PyValue{as_double(a) * as_double(b)};
      int64_t product = 0;
      if (__builtin_mul_overflow(as_int(a), as_int(b), &product)) fail("integer out of the 64-bit range");
      return PyValue{product};
    }
    if ((a.is_list() || a.is_str()) && is_integral(b)) return repeat(a, as_int(b));
    if (is_integral(a) && (b.is_list() || b.is_str())) return repeat(b, as_int(a));
    if (a.is_list() || a.is_str() || b.is_list() || b.is_str()) {
      const PyValue& other = (a.is_list() || a.is_str()) ? b : a;
      fail(fmt::format("can't multiply sequence by non-int of type '{}'", other.type_name()));
    }
    unsupported("*", a, b);
  }

  PyValue repeat(const PyValue& seq, int64_t times) const {
    // Python: a sequence times a count <= 0 is empty.
    size_t count = times > 0 ? static_cast<size_t>(times) : 0;
    if (seq.is_str()) {
      const auto& s = std::get<std::string>(seq.v);
      if (!s.empty() && count > kMaxSequenceLength / s.size()) fail("repeated string is too long");
      std::string out;
      out.reserve(s.size() * count);
      for (size_t i = 0; i < count; ++i) out += s;
      return PyValue{std::move(out)};
    }
    const auto& items = std::get<PyValue::List>(seq.v);
    if (!items.empty() && count > kMaxSequenceLength / items.size()) fail("repeated list is too long");
    PyValue::List out;
    out.reserve(items.size() * count);
    for (size_t i = 0; i < count; ++i) out.insert(out.end(), items.begin(), items.end());
    return PyValue{std::move(out)};
  }

  const std::string& text_;
  size_t pos_ = 0;
  int depth_ = 0;
};

// Python's float repr: the shortest digits that round-trip, in fixed notation when the decimal
// exponent is in [-4, 16) (always with a '.'), otherwise d.ddde+XX.
std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[64];
  // to_chars without a precision gives the shortest representation that round-trips.
  auto result = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, result.ptr);
  bool negative = !sci.empty() && sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exponent = std::atoi(sci.c_str() + e_pos + 1);

  std::string out = negative ? "-" : "";
  const int n = static_cast<int>(digits.size());
  if (exponent < -4 || exponent >= 16) {
    out += digits[0];
    if (n > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', std::abs(exponent));
  } else if (exponent < 0) {
    out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  } else if (exponent + 1 >= n) {
    out += digits + std::string(static_cast<size_t>(exponent + 1 - n), '0') + ".0";
  } else {
    out += digits.substr(0, static_cast<size_t>(exponent + 1)) + "." + digits.substr(static_cast<size_t>(exponent + 1));
  }
  return out;
}

// Python's str repr: single quotes unless the text has ' and no ", backslash escapes for the
// quote, backslash and control characters; other bytes (UTF-8 text) pass through.
std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20 || u == 0x7F) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

}  // namespace

const char* PyValue::type_name() const {
  static const char* const names[] = {"NoneType", "bool", "int", "float", "str", "list"};
  return names[v.index()];
}

std::string PyValue::repr() const {
  if (is_none()) return "None";
  if (is_bool()) return std::get<bool>(v) ? "True" : "False";
  if (is_int()) return std::to_string(std::get<int64_t>(v));
  if (is_float()) return float_repr(std::get<double>(v));
  if (is_str()) return string_repr(std::get<std::string>(v));
  std::string out = "[";
  const auto& items = std::get<List>(v);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += items[i].repr();
  }
  return out + "]";
}

PyValue parse_py_literal(const std::string& text) { return LiteralParser(text).parse(); }

std::string trim(const std::string& s) {
  size_t begin = 0, end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return s.substr(begin, end - begin);
}

PyValue PyValue::from(const std::vector<std::string>& strings) {
  List list;
  for (auto& s : strings) list.push_back({s});
  return {list};
}

}  // namespace dgpt
