// A Python literal, as nanoGPT's config files and --key=value overrides write them.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "base/errors.h"

namespace dgpt {

struct PyValue {
  using List = std::vector<PyValue>;
  std::variant<std::monostate, bool, int64_t, double, std::string, List> v;

  bool is_none() const { return v.index() == 0; }
  bool is_bool() const { return v.index() == 1; }
  bool is_int() const { return v.index() == 2; }
  bool is_float() const { return v.index() == 3; }
  bool is_str() const { return v.index() == 4; }
  bool is_list() const { return v.index() == 5; }
  const char* type_name() const;  // "NoneType", "bool", "int", "float", "str", "list"
  std::string repr() const;       // Python repr: None, True, 3, 0.001, 'cpu', ['tp', 'spd']
  static PyValue from(const std::vector<std::string>& strings);  // a list of str
};

// Structural equality: same type and same value. Stricter than Python, where 1 == 1.0 == True;
// tests and config round trips need to tell those apart.
inline bool operator==(const PyValue& a, const PyValue& b) { return a.v == b.v; }
inline bool operator!=(const PyValue& a, const PyValue& b) { return !(a == b); }

// Parses and evaluates one expression: ints, floats (1e-3, .5, 6e-4), True/False/None,
// '...' and "..." strings, lists (trailing comma allowed) and tuples (treated as lists),
// parentheses, unary minus, and the operators a Python user writes in configs:
// int/float * int/float, list * int, int * list, list + list, str + str, numeric + and -.
// Throws UserError naming the offending text on anything else.
PyValue parse_py_literal(const std::string& text);

// `s` without leading and trailing whitespace.
std::string trim(const std::string& s);

}  // namespace dgpt
