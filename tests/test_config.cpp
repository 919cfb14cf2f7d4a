// Python literals, config files in nanoGPT's dialect, overrides, validation, and the shipped configs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <unistd.h>

#include "config/config.h"
#include "config/pyliteral.h"

namespace Catch {
template <>
struct StringMaker<dgpt::PyValue> {
  static std::string convert(const dgpt::PyValue& v) { return v.repr() + " (" + v.type_name() + ")"; }
};
}  // namespace Catch

namespace {

namespace fs = std::filesystem;
using dgpt::parse_py_literal;
using dgpt::PyValue;
using dgpt::UserError;
using Catch::Matchers::Contains;

PyValue None() { return PyValue{}; }
PyValue B(bool b) { return PyValue{b}; }
PyValue I(int64_t i) { return PyValue{i}; }
PyValue F(double d) { return PyValue{d}; }
PyValue S(const std::string& s) { return PyValue{s}; }
PyValue L(std::initializer_list<PyValue> items) { return PyValue{PyValue::List(items)}; }
PyValue strs(const std::vector<std::string>& items) {
  PyValue::List list;
  for (const auto& s : items) list.push_back(S(s));
  return PyValue{list};
}

const std::vector<std::string> kKnownBlockTypes = {"tp", "spd", "parallel", "neox", "ladder"};

// The message of the UserError that `f` throws (fails the test if it throws none).
template <class Fn>
std::string error_of(Fn&& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  FAIL("expected a UserError");
  return "";
}

std::string literal_error(const std::string& text) {
  return error_of([&] { parse_py_literal(text); });
}

// A fresh directory under the system temp dir, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("dgpt_test_config_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string write(const std::string& name, const std::string& content) const {
    fs::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << content;
    return file.string();
  }

 private:
  fs::path path_;
};

dgpt::TrainConfig load_train(const std::vector<std::string>& files, const std::vector<std::string>& overrides,
                             std::string* notices = nullptr) {
  std::ostringstream out;
  dgpt::TrainConfig cfg = dgpt::load_train_config(files, overrides, out);
  if (notices != nullptr) *notices = out.str();
  return cfg;
}

dgpt::TrainConfig train_from_text(const std::string& text, std::string* notices = nullptr) {
  TempDir dir;
  return load_train({dir.write("config.py", text)}, {}, notices);
}

dgpt::TrainConfig train_with(const std::vector<std::string>& overrides) { return load_train({}, overrides); }

// SPEC §3: forward all-reduces per micro-step = 2*(#tp) + (#spd) + (#runs of parallel blocks).
int64_t forward_all_reduces(const std::vector<std::string>& block_types) {
  int64_t count = 0;
  for (size_t i = 0; i < block_types.size(); ++i) {
    if (block_types[i] == "tp") count += 2;
    if (block_types[i] == "spd") count += 1;
    if (block_types[i] == "parallel" && (i == 0 || block_types[i - 1] != "parallel")) count += 1;
    if (block_types[i] == "neox") count += 1;
    if (block_types[i] == "ladder") count += 2;
  }
  return count;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Literals

TEST_CASE("literal: None, booleans, ints", "[literal]") {
  CHECK(parse_py_literal("None") == None());
  CHECK(parse_py_literal("True") == B(true));
  CHECK(parse_py_literal("False") == B(false));
  CHECK(parse_py_literal("0") == I(0));
  CHECK(parse_py_literal("42") == I(42));
  CHECK(parse_py_literal("600000") == I(600000));
  CHECK(parse_py_literal("600_000") == I(600000));
  CHECK(parse_py_literal("1_000_000") == I(1000000));
  CHECK(parse_py_literal("00") == I(0));
  CHECK(parse_py_literal("0x10") == I(16));
  CHECK(parse_py_literal("0b101") == I(5));
  CHECK(parse_py_literal("0o17") == I(15));
  CHECK(parse_py_literal("9223372036854775807") == I(INT64_MAX));
  CHECK(parse_py_literal("-9223372036854775807") == I(-INT64_MAX));
  CHECK(parse_py_literal("  7  ") == I(7));
  CHECK(parse_py_literal("\t7\n") == I(7));
}

TEST_CASE("literal: floats", "[literal]") {
  CHECK(parse_py_literal("1e-3") == F(1e-3));
  CHECK(parse_py_literal("6e-4") == F(6e-4));
  CHECK(parse_py_literal("6e-5") == F(6e-5));
  CHECK(parse_py_literal(".5") == F(0.5));
  CHECK(parse_py_literal("3.") == F(3.0));
  CHECK(parse_py_literal("1E5") == F(1e5));
  CHECK(parse_py_literal("1e+5") == F(1e5));
  CHECK(parse_py_literal("0.99") == F(0.99));
  CHECK(parse_py_literal("1e-1") == F(0.1));
  CHECK(parse_py_literal("2.5e-05") == F(2.5e-5));
  CHECK(parse_py_literal("1_0.2_5") == F(10.25));
  CHECK(parse_py_literal("1.e2") == F(100.0));
  CHECK(parse_py_literal("0.0") == F(0.0));
  CHECK(parse_py_literal("1e999") == F(HUGE_VAL));
  CHECK(parse_py_literal("1e3").is_float());
}

TEST_CASE("literal: unary signs and negative numbers", "[literal]") {
  CHECK(parse_py_literal("-1") == I(-1));
  CHECK(parse_py_literal("+3") == I(3));
  CHECK(parse_py_literal("-1e-3") == F(-1e-3));
  CHECK(parse_py_literal("- 2") == I(-2));
  CHECK(parse_py_literal("--2") == I(2));
  CHECK(parse_py_literal("-(2 + 3)") == I(-5));
  CHECK(parse_py_literal("-2 * 3") == I(-6));
  CHECK(parse_py_literal("[-1, -2.5]") == L({I(-1), F(-2.5)}));
  CHECK(parse_py_literal("-True") == I(-1));
}

TEST_CASE("literal: strings and escapes", "[literal]") {
  CHECK(parse_py_literal("'cpu'") == S("cpu"));
  CHECK(parse_py_literal("\"cpu\"") == S("cpu"));
  CHECK(parse_py_literal("''") == S(""));
  CHECK(parse_py_literal("'a # not a comment'") == S("a # not a comment"));
  CHECK(parse_py_literal(R"('\n')") == S("\n"));
  CHECK(parse_py_literal(R"('a\tb')") == S("a\tb"));
  CHECK(parse_py_literal(R"('back\\slash')") == S("back\\slash"));
  CHECK(parse_py_literal(R"('it\'s')") == S("it's"));
  CHECK(parse_py_literal(R"("say \"hi\"")") == S("say \"hi\""));
  CHECK(parse_py_literal(R"("it's")") == S("it's"));
  CHECK(parse_py_literal(R"('say "hi"')") == S("say \"hi\""));
  CHECK(parse_py_literal(R"('\r\x41\101\u00e9')") == S("\rAA\xc3\xa9"));
  CHECK(parse_py_literal(R"('\d')") == S("\\d"));  // unknown escapes stay as written
  CHECK(parse_py_literal("'ab' 'cd'") == S("abcd"));
  CHECK(parse_py_literal("'FILE:prompt.txt'") == S("FILE:prompt.txt"));
}

TEST_CASE("literal: lists and tuples", "[literal]") {
  CHECK(parse_py_literal("[]") == L({}));
  CHECK(parse_py_literal("[ ]") == L({}));
  CHECK(parse_py_literal("['tp', 'spd']") == L({S("tp"), S("spd")}));
  CHECK(parse_py_literal("['tp', 'spd',]") == L({S("tp"), S("spd")}));
  CHECK(parse_py_literal("[1, 2.0, 'x', None, True]") == L({I(1), F(2.0), S("x"), None(), B(true)}));
  CHECK(parse_py_literal("[[1, 2], [3, [4, []]]]") == L({L({I(1), I(2)}), L({I(3), L({I(4), L({})})})}));
  CHECK(parse_py_literal("[\n  'tp',\n  'spd',\n]") == L({S("tp"), S("spd")}));
  CHECK(parse_py_literal("(1, 2)") == L({I(1), I(2)}));
  CHECK(parse_py_literal("(1,)") == L({I(1)}));
  CHECK(parse_py_literal("()") == L({}));
  CHECK(parse_py_literal("(1)") == I(1));
  CHECK(parse_py_literal("((('a')))") == S("a"));
  CHECK(parse_py_literal("[(1, 2), ('a',)]") == L({L({I(1), I(2)}), L({S("a")})}));
}

TEST_CASE("literal: arithmetic and precedence", "[literal]") {
  CHECK(parse_py_literal("2 + 3 * 4") == I(14));
  CHECK(parse_py_literal("(2 + 3) * 4") == I(20));
  CHECK(parse_py_literal("2 * 3 + 4") == I(10));
  CHECK(parse_py_literal("10 - 2 - 3") == I(5));
  CHECK(parse_py_literal("5 * 8") == I(40));
  CHECK(parse_py_literal("5*8").is_int());
  CHECK(parse_py_literal("2 * 0.5") == F(1.0));
  CHECK(parse_py_literal("1 + 1.5") == F(2.5));
  CHECK(parse_py_literal("3 - 1.0") == F(2.0));
  CHECK(parse_py_literal("1e-3 * 10") == F(1e-3 * 10));
  CHECK(parse_py_literal("True + True") == I(2));
  CHECK(parse_py_literal("'ab' * 3") == S("ababab"));
  CHECK(parse_py_literal("2 * 'ab'") == S("abab"));
  CHECK(parse_py_literal("'out-' + 'x'") == S("out-x"));
  CHECK(parse_py_literal("['spd']*6") == strs({"spd", "spd", "spd", "spd", "spd", "spd"}));
  CHECK(parse_py_literal("2 * ['tp']") == strs({"tp", "tp"}));
  CHECK(parse_py_literal("['tp'] * 0") == L({}));
  CHECK(parse_py_literal("['tp'] * -1") == L({}));
  CHECK(parse_py_literal("['tp'] * 2 + ['spd'] * 2") == strs({"tp", "tp", "spd", "spd"}));
  CHECK(parse_py_literal("['spd', 'parallel', 'parallel' ] * 4  # 8 syncs") ==
        strs({"spd", "parallel", "parallel", "spd", "parallel", "parallel", "spd", "parallel", "parallel",
              "spd", "parallel", "parallel"}));
  CHECK(parse_py_literal("['tp'] * (1 + 1)") == strs({"tp", "tp"}));
  CHECK(parse_py_literal("[['a'] * 2] * 2") == L({strs({"a", "a"}), strs({"a", "a"})}));
}

TEST_CASE("literal: errors quote the text and say what is wrong", "[literal]") {
  CHECK(literal_error("['spd'*") == "bad literal \"['spd'*\": unexpected end of input");
  CHECK_THAT(literal_error(""), Contains("unexpected end of input"));
  CHECK_THAT(literal_error("cpu"), Contains("\"cpu\"") && Contains("'cpu' is a name"));
  CHECK_THAT(literal_error("str(time.time())"), Contains("function call"));
  CHECK_THAT(literal_error("time.time"), Contains("attribute"));
  CHECK_THAT(literal_error("'abc"), Contains("unterminated string"));
  CHECK_THAT(literal_error("\"abc'"), Contains("unterminated string"));
  CHECK_THAT(literal_error("1 2"), Contains("unexpected '2' after the value"));
  CHECK_THAT(literal_error("[1, 2] x"), Contains("unexpected 'x'"));
  CHECK_THAT(literal_error("[1, 2"), Contains("unexpected end of input"));
  CHECK_THAT(literal_error("[1 2]"), Contains("expected ',' or ']'"));
  CHECK_THAT(literal_error("(1, 2]"), Contains("expected ',' or ')'"));
  CHECK_THAT(literal_error("'a' / 'b'"), Contains("operator '/' is not supported"));
  CHECK_THAT(literal_error("1 / 2"), Contains("operator '/' is not supported"));
  CHECK_THAT(literal_error("2 ** 3"), Contains("'**'"));
  CHECK_THAT(literal_error("'a' * 'b'"), Contains("can't multiply sequence by non-int of type 'str'"));
  CHECK_THAT(literal_error("['a'] * 2.0"), Contains("non-int of type 'float'"));
  CHECK_THAT(literal_error("'a' + 1"), Contains("unsupported operand types for +: 'str' and 'int'"));
  CHECK_THAT(literal_error("['a'] - ['a']"), Contains("unsupported operand types for -"));
  CHECK_THAT(literal_error("-'a'"), Contains("bad operand type for unary -: 'str'"));
  CHECK_THAT(literal_error("{'a': 1}"), Contains("unexpected '{'"));
  CHECK_THAT(literal_error("1_"), Contains("'_'"));
  CHECK_THAT(literal_error("1__0"), Contains("'_'"));
  CHECK_THAT(literal_error("007"), Contains("leading zeros"));
  CHECK_THAT(literal_error("1.2.3"), Contains("invalid number"));
  CHECK_THAT(literal_error("3abc"), Contains("invalid number"));
  CHECK_THAT(literal_error("99999999999999999999"), Contains("64-bit range"));
  CHECK_THAT(literal_error("9223372036854775807 + 1"), Contains("64-bit range"));
  CHECK_THAT(literal_error("r'raw'"), Contains("string prefix"));
  CHECK_THAT(literal_error("'''doc'''"), Contains("triple-quoted"));
  CHECK_THAT(literal_error("['a'] * 100000000"), Contains("too long"));
  CHECK(literal_error("[\n'a',\n") == "bad literal \"[ 'a',\": unexpected end of input");  // on one line
}

TEST_CASE("repr prints like Python", "[literal]") {
  CHECK(None().repr() == "None");
  CHECK(B(true).repr() == "True");
  CHECK(B(false).repr() == "False");
  CHECK(I(3).repr() == "3");
  CHECK(I(-40).repr() == "-40");
  CHECK(F(0.001).repr() == "0.001");
  CHECK(F(6e-4).repr() == "0.0006");
  CHECK(F(6e-5).repr() == "6e-05");
  CHECK(F(1e-4).repr() == "0.0001");
  CHECK(F(1.5e-7).repr() == "1.5e-07");
  CHECK(F(1.0).repr() == "1.0");
  CHECK(F(0.1).repr() == "0.1");
  CHECK(F(0.0).repr() == "0.0");
  CHECK(F(-0.0).repr() == "-0.0");
  CHECK(F(-2.5).repr() == "-2.5");
  CHECK(F(0.99).repr() == "0.99");
  CHECK(F(0.1 + 0.2).repr() == "0.30000000000000004");
  CHECK(F(1e15).repr() == "1000000000000000.0");
  CHECK(F(1e16).repr() == "1e+16");
  CHECK(F(1.2345e20).repr() == "1.2345e+20");
  CHECK(F(123456.789).repr() == "123456.789");
  CHECK(F(3e-5).repr() == "3e-05");
  CHECK(F(HUGE_VAL).repr() == "inf");
  CHECK(S("cpu").repr() == "'cpu'");
  CHECK(S("").repr() == "''");
  CHECK(S("\n").repr() == "'\\n'");
  CHECK(S("a\tb\\c").repr() == "'a\\tb\\\\c'");
  CHECK(S("it's").repr() == "\"it's\"");
  CHECK(S("say \"hi\"").repr() == "'say \"hi\"'");
  CHECK(S("it's \"x\"").repr() == "'it\\'s \"x\"'");
  CHECK(S(std::string("\x01", 1)).repr() == "'\\x01'");
  CHECK(S("caf\xc3\xa9").repr() == "'caf\xc3\xa9'");
  CHECK(strs({"tp", "spd"}).repr() == "['tp', 'spd']");
  CHECK(L({}).repr() == "[]");
  CHECK(L({I(1), L({F(2.0), None()})}).repr() == "[1, [2.0, None]]");
}

TEST_CASE("repr round-trips through the parser", "[literal]") {
  const std::vector<PyValue> values = {
      None(), B(true), B(false), I(0), I(-7), I(INT64_MAX), F(0.0), F(-0.0), F(1.0), F(0.1), F(1e-3),
      F(6e-4), F(6e-5), F(1.0 / 3.0), F(2.0 / 3.0), F(0.1 + 0.2), F(1e15), F(1e16), F(1e300), F(5e-324),
      F(1.7976931348623157e308), F(123456789.125), F(-1.25e-9), F(1e22), F(9007199254740993.0),
      S(""), S("cpu"), S("it's"), S("say \"hi\""), S("both ' and \""), S("\n\t\r\\"),
      S(std::string("\x01\x7f", 2)), S("caf\xc3\xa9"), L({}), strs({"tp", "spd", "parallel"}),
      L({I(1), F(2.5), S("x"), None(), B(false), L({L({})})}),
  };
  for (const auto& v : values) {
    INFO(v.repr());
    CHECK(parse_py_literal(v.repr()) == v);
  }
  // Every float that the shortest-digits search produces reads back bit for bit.
  double x = 1e-7;
  for (int i = 0; i < 2000; ++i, x *= 1.0173) {
    PyValue v = F(x);
    INFO(v.repr());
    REQUIRE(parse_py_literal(v.repr()) == v);
    REQUIRE(v.repr().find_first_of(".e") != std::string::npos);
  }
}

TEST_CASE("type names", "[literal]") {
  CHECK(std::string(None().type_name()) == "NoneType");
  CHECK(std::string(B(true).type_name()) == "bool");
  CHECK(std::string(I(1).type_name()) == "int");
  CHECK(std::string(F(1).type_name()) == "float");
  CHECK(std::string(S("").type_name()) == "str");
  CHECK(std::string(L({}).type_name()) == "list");
}

// ---------------------------------------------------------------------------------------------
// Config files and overrides

TEST_CASE("defaults are nanoGPT's train.py defaults", "[config]") {
  dgpt::TrainConfig cfg = load_train({}, {});
  CHECK(cfg.out_dir == "out");
  CHECK(cfg.gradient_accumulation_steps == 40);
  CHECK(cfg.learning_rate == 6e-4);
  CHECK(cfg.block_types.empty());
  CHECK(cfg.resolved_block_types() == std::vector<std::string>(12, "tp"));
  CHECK_FALSE(cfg.device_was_set);
  CHECK_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));
}

TEST_CASE("config file: key = value lines, comments, multi-line lists", "[config]") {
  std::string notices;
  dgpt::TrainConfig cfg = train_from_text(
      "# a comment line\n"
      "\n"
      "out_dir = 'out-x' # trailing comment\n"
      "n_layer = 12\n"
      "model_type = 'distributed_gpt'\n"
      "tp_size=4\n"
      "block_types = ['spd', 'parallel', 'parallel' ] * 4  # 8 syncs\n"
      "gradient_accumulation_steps = 5 * 8\n"
      "learning_rate = 1e-3\n"
      "min_lr = 1 # an int is fine for a float key\n"
      "dropout = 0.1; bias = True\n"
      "dataset = 'a#b'  # the '#' in the string is not a comment\n",
      &notices);
  CHECK(cfg.out_dir == "out-x");
  CHECK(cfg.n_layer == 12);
  CHECK(cfg.tp_size == 4);
  CHECK(cfg.block_types == std::vector<std::string>{"spd", "parallel", "parallel", "spd", "parallel", "parallel",
                                                    "spd", "parallel", "parallel", "spd", "parallel", "parallel"});
  CHECK(forward_all_reduces(cfg.block_types) == 8);
  CHECK(cfg.gradient_accumulation_steps == 40);
  CHECK(cfg.learning_rate == 1e-3);
  CHECK(cfg.min_lr == 1.0);
  CHECK(cfg.dropout == 0.1);
  CHECK(cfg.bias);
  CHECK(cfg.dataset == "a#b");
  CHECK(notices.empty());
  CHECK_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));

  cfg = train_from_text(
      "n_layer = 4\n"
      "block_types = [\n"
      "    'tp',        # first\n"
      "    'spd',\n"
      "\n"
      "    'parallel', 'parallel',\n"
      "]\n"
      "n_head = (\n"
      "  2 *\n"
      "  2)\n"
      "n_embd = 64 + \\\n"
      "  64\n"
      "dataset = 'shakespeare_char'\r\n");
  CHECK(cfg.block_types == std::vector<std::string>{"tp", "spd", "parallel", "parallel"});
  CHECK(cfg.n_head == 4);
  CHECK(cfg.n_embd == 128);
  CHECK(cfg.dataset == "shakespeare_char");
  CHECK(forward_all_reduces(cfg.block_types) == 4);

  cfg = train_from_text("block_types = ['tp'] * 2 + ['spd'] * 2\nn_layer = 4\nblock_size = 2 + 3 * 4\n");
  CHECK(cfg.block_types == std::vector<std::string>{"tp", "tp", "spd", "spd"});
  CHECK(cfg.block_size == 14);

  cfg = train_from_text("block_types = ['spd']*6\nblock_types = None\n");
  CHECK(cfg.block_types.empty());
}

TEST_CASE("config file: imports and Python-only keys are noted and skipped", "[config]") {
  std::string notices;
  dgpt::TrainConfig cfg = train_from_text(
      "import time\n"
      "from math import sqrt\n"
      "wandb_log = True\n"
      "wandb_project = 'owt'\n"
      "wandb_run_name = 'ft-' + str(time.time())\n"
      "wandb_whatever = [1,\n"
      "   2]\n"
      "compile = False # do not torch compile the model\n"
      "n_layer = 3\n",
      &notices);
  CHECK(cfg.n_layer == 3);
  CHECK_THAT(notices, Contains("notice: ignoring wandb_log = True (Python-only key)\n"));
  CHECK_THAT(notices, Contains("notice: ignoring wandb_project = 'owt' (Python-only key)\n"));
  CHECK_THAT(notices, Contains("notice: ignoring wandb_run_name = 'ft-' + str(time.time()) (Python-only key)\n"));
  CHECK_THAT(notices, Contains("notice: ignoring wandb_whatever = [1, 2] (Python-only key)\n"));
  CHECK_THAT(notices, Contains("notice: ignoring compile = False (Python-only key)\n"));
  CHECK_THAT(notices, Contains("import time") && Contains("from math import sqrt"));
  CHECK(std::count(notices.begin(), notices.end(), '\n') == 7);

  // An ignored key is not evaluated, but its statement must still be complete.
  std::string message = error_of([] { train_from_text("wandb_run_name = str(time.time()\nn_layer = 2\n"); });
  CHECK_THAT(message, Contains("config.py:1") && Contains("never closed"));
}

TEST_CASE("overrides: --key=value as nanoGPT's configurator", "[config]") {
  dgpt::TrainConfig cfg = train_with({"--device=cpu", "--n_layer=6", "--learning_rate=1e-3", "--bias=True",
                                      "--block_types=['spd']*6", "--out_dir=out-x", "--dataset='shakespeare'",
                                      "--init_from=resume", "--data_dir=/tmp/some data", "--dropout=0"});
  CHECK(cfg.device == "cpu");
  CHECK(cfg.device_was_set);
  CHECK(cfg.n_layer == 6);
  CHECK(cfg.learning_rate == 1e-3);
  CHECK(cfg.bias);
  CHECK(cfg.block_types == std::vector<std::string>(6, "spd"));
  CHECK(cfg.out_dir == "out-x");
  CHECK(cfg.dataset == "shakespeare");
  CHECK(cfg.init_from == "resume");
  CHECK(cfg.data_dir == "/tmp/some data");
  CHECK(cfg.dropout == 0.0);

  cfg = train_with({"--device=cuda:1", "--block_types=None", "--seed=7"});
  CHECK(cfg.device == "cuda:1");
  CHECK(cfg.seed == 7);

  std::string notices;
  cfg = load_train({}, {"--compile=False", "--wandb_log=True"}, &notices);
  CHECK_THAT(notices, Contains("notice: ignoring compile = False (Python-only key)"));
  CHECK_THAT(notices, Contains("notice: ignoring wandb_log = True (Python-only key)"));
}

TEST_CASE("files apply in order, then overrides", "[config]") {
  TempDir dir;
  std::string first = dir.write("a.py", "n_layer = 2\nn_head = 2\nout_dir = 'a'\n");
  std::string second = dir.write("b.py", "n_layer = 3\nout_dir = 'b'\ndevice = 'cpu'\n");
  dgpt::TrainConfig cfg = load_train({first, second}, {"--out_dir=c"});
  CHECK(cfg.n_layer == 3);
  CHECK(cfg.n_head == 2);
  CHECK(cfg.out_dir == "c");
  CHECK(cfg.device_was_set);
  cfg = load_train({second, first}, {});
  CHECK(cfg.n_layer == 2);
  CHECK(cfg.out_dir == "a");
  CHECK(load_train({first}, {}).device_was_set == false);
}

TEST_CASE("backend, tp_procs and comm_timeout", "[config]") {
  CHECK(train_with({"--backend=sim"}).backend == "sim");
  dgpt::TrainConfig cfg = train_from_text("backend = 'gloo' # 'sim', 'gloo' or 'nccl'\ntp_procs = 2\ncomm_timeout = 30\n");
  CHECK(cfg.backend == "gloo");
  CHECK(cfg.tp_procs == 2);
  CHECK(cfg.comm_timeout == 30.0);
  CHECK(train_with({"--backend=nccl"}).backend == "nccl");
  CHECK(train_with({}).tp_procs == 0);
  CHECK(train_with({}).comm_timeout == 300.0);
  cfg = train_with({"--backend=mpi"});
  std::string message = error_of([&] { dgpt::validate(cfg, kKnownBlockTypes); });
  CHECK_THAT(message, Contains("backend") && Contains("'mpi'") && Contains("'sim'") && Contains("'nccl'") &&
                          Contains("'gloo'"));
  cfg = train_with({"--comm_timeout=0"});
  CHECK_THAT(error_of([&] { dgpt::validate(cfg, kKnownBlockTypes); }), Contains("comm_timeout"));
  cfg = train_with({"--tp_procs=-1"});
  CHECK_THAT(error_of([&] { dgpt::validate(cfg, kKnownBlockTypes); }), Contains("tp_procs"));
}

TEST_CASE("types are checked per key", "[config]") {
  auto message_for = [](const std::string& override) { return error_of([&] { train_with({override}); }); };
  std::string m = message_for("--n_layer=3.5");
  CHECK_THAT(m, Contains("'n_layer'") && Contains("expects int") && Contains("3.5 (float)"));
  CHECK_THAT(message_for("--n_layer=True"), Contains("expects int") && Contains("True (bool)"));
  CHECK_THAT(message_for("--n_layer='6'"), Contains("expects int") && Contains("'6' (str)"));
  CHECK_THAT(message_for("--learning_rate='fast'"), Contains("'learning_rate'") && Contains("expects float") &&
                                                        Contains("'fast' (str)"));
  CHECK_THAT(message_for("--learning_rate=True"), Contains("expects float") && Contains("True (bool)"));
  CHECK_THAT(message_for("--bias=1"), Contains("'bias'") && Contains("expects bool") && Contains("1 (int)"));
  CHECK_THAT(message_for("--device=3"), Contains("'device'") && Contains("expects str") && Contains("3 (int)"));
  CHECK_THAT(message_for("--out_dir=['a']"), Contains("expects str") && Contains("['a'] (list)"));
  CHECK_THAT(message_for("--block_types='spd'"), Contains("'block_types'") && Contains("list of str") &&
                                                     Contains("'spd' (str)"));
  CHECK_THAT(message_for("--block_types=['spd', 3]"), Contains("list of str") && Contains("['spd', 3] (list)"));
  // The raw-string fallback is only for string keys.
  CHECK_THAT(message_for("--n_layer=six"), Contains("'n_layer'") && Contains("bad literal \"six\""));
  CHECK_THAT(message_for("--block_types=tp,spd"), Contains("'block_types'") && Contains("\"tp,spd\"") &&
                                                      Contains("write a Python list"));
  CHECK(train_with({"--learning_rate=1"}).learning_rate == 1.0);

  std::ostringstream notices;
  dgpt::SampleConfig sample = dgpt::load_sample_config({}, {"--top_k=None"}, notices);
  CHECK(sample.top_k == 0);
  sample = dgpt::load_sample_config({}, {"--top_k=5", "--temperature=1", "--start=hello there"}, notices);
  CHECK(sample.top_k == 5);
  CHECK(sample.temperature == 1.0);
  CHECK(sample.start == "hello there");
  CHECK_THAT(error_of([&] { dgpt::load_sample_config({}, {"--top_k=1.5"}, notices); }),
             Contains("'top_k'") && Contains("int or None") && Contains("1.5 (float)"));
  // vocab_parallel in sample: None (the checkpoint's), True or False.
  CHECK_FALSE(dgpt::load_sample_config({}, {}, notices).vocab_parallel.has_value());
  CHECK(dgpt::load_sample_config({}, {"--vocab_parallel=True"}, notices).vocab_parallel == std::optional<bool>(true));
  CHECK(dgpt::load_sample_config({}, {"--vocab_parallel=False"}, notices).vocab_parallel == std::optional<bool>(false));
  CHECK_FALSE(dgpt::load_sample_config({}, {"--vocab_parallel=True", "--vocab_parallel=None"}, notices)
                  .vocab_parallel.has_value());
  CHECK_THAT(error_of([&] { dgpt::load_sample_config({}, {"--vocab_parallel=1"}, notices); }),
             Contains("'vocab_parallel'") && Contains("True, False or None"));
  CHECK_THAT(error_of([&] { train_with({"--n_layer=None"}); }), Contains("expects int") && Contains("None (NoneType)"));
}

TEST_CASE("errors name the key, the source and the text", "[config]") {
  TempDir dir;
  auto file_error = [&](const std::string& text) {
    std::string path = dir.write("x.py", text);
    return error_of([&] { load_train({path}, {}); });
  };
  std::string m = file_error("n_layer = 2\n\nn_embed = 384\n");
  CHECK_THAT(m, Contains("unknown config key 'n_embed'") && Contains("x.py:3") &&
                    Contains("did you mean 'n_embd'?"));
  CHECK_THAT(error_of([] { train_with({"--n_layers=4"}); }),
             Contains("'n_layers'") && Contains("override --n_layers=4") && Contains("did you mean 'n_layer'?"));
  CHECK_THAT(error_of([] { train_with({"--learning_rat=1"}); }), Contains("did you mean 'learning_rate'?"));
  m = error_of([] { train_with({"--zzzzzz=1"}); });
  CHECK_THAT(m, Contains("unknown config key 'zzzzzz'"));
  CHECK_THAT(m, !Contains("did you mean"));

  m = file_error("n_layer = 2\nlearning_rate = 1e-3 *\n");
  CHECK_THAT(m, Contains("'learning_rate'") && Contains("x.py:2") && Contains("\"1e-3 *\"") &&
                    Contains("unexpected end of input"));
  m = file_error("device = cpu\n");  // a file is Python: strings need quotes
  CHECK_THAT(m, Contains("'device'") && Contains("x.py:1") && Contains("\"cpu\"") && Contains("is a name"));
  m = file_error("n_head = 4\nn_layer = 3.5\n");
  CHECK_THAT(m, Contains("'n_layer'") && Contains("x.py:2") && Contains("expects int") && Contains("3.5 (float)"));

  CHECK_THAT(file_error("print('hello')\n"), Contains("x.py:1") && Contains("key = value") && Contains("print('hello')"));
  CHECK_THAT(file_error("n_layer == 3\n"), Contains("key = value"));
  CHECK_THAT(file_error("n_layer += 3\n"), Contains("key = value"));
  CHECK_THAT(file_error("if True:\n  n_layer = 3\n"), Contains("x.py:1") && Contains("key = value"));
  CHECK_THAT(file_error("cfg.n_layer = 3\n"), Contains("key = value"));
  CHECK_THAT(file_error("n_layer =\n"), Contains("x.py:1") && Contains("missing value"));
  CHECK_THAT(file_error("n_layer = 2\nblock_types = ['tp',\n  'spd'\n"), Contains("x.py:2") && Contains("never closed"));
  CHECK_THAT(file_error("block_types = ['tp')\n"), Contains("x.py:1") && Contains("unmatched ')'"));
  CHECK_THAT(file_error("\n\ndevice = 'cpu\n"), Contains("x.py:3") && Contains("unterminated string"));

  CHECK_THAT(error_of([] { train_with({"n_layer=3"}); }), Contains("'n_layer=3'") && Contains("--key=value"));
  CHECK_THAT(error_of([] { train_with({"--n_layer"}); }), Contains("'--n_layer'") && Contains("--key=value"));
  CHECK_THAT(error_of([] { train_with({"--=3"}); }), Contains("--key=value"));
  CHECK_THAT(error_of([] { load_train({"/nonexistent/dgpt/x.py"}, {}); }),
             Contains("cannot read config file '/nonexistent/dgpt/x.py'"));
  CHECK_THAT(error_of([] { train_with({"--dataset=x", "--n_layer=('a' +"}); }),
             Contains("override --n_layer=('a' +") && Contains("unexpected end of input"));

  std::ostringstream notices;
  CHECK_THAT(error_of([&] { dgpt::load_sample_config({}, {"--topk=5"}, notices); }),
             Contains("unknown config key 'topk'") && Contains("did you mean 'top_k'?"));
}

// ---------------------------------------------------------------------------------------------
// Validation

TEST_CASE("validate: cross-key checks with clear messages", "[config]") {
  auto validation_error = [](const std::vector<std::string>& overrides) {
    dgpt::TrainConfig cfg = train_with(overrides);
    return error_of([&] { dgpt::validate(cfg, kKnownBlockTypes); });
  };
  auto validate_overrides = [](const std::vector<std::string>& overrides) {
    dgpt::validate(train_with(overrides), kKnownBlockTypes);
  };
  CHECK_NOTHROW(validate_overrides({"--model_type=distributed_gpt", "--tp_size=4", "--n_layer=3",
                                    "--block_types=['tp', 'spd', 'parallel']", "--parallel_merge=mean",
                                    "--dtype=float32"}));
  CHECK_NOTHROW(validate_overrides({"--model_type=gpt", "--block_types=['tp'] * 12"}));
  CHECK_NOTHROW(validate_overrides({"--model_type=distributed_gpt", "--vocab_parallel=True", "--overlap_comm=False"}));
  CHECK_THAT(validation_error({"--model_type=gpt", "--vocab_parallel=True"}),
             Contains("vocab_parallel=True") && Contains("model_type='distributed_gpt'"));
  CHECK_NOTHROW(validate_overrides({"--dtype=float16", "--dropout=0.0", "--grad_clip=0.0", "--beta1=0"}));
  CHECK_NOTHROW(validate_overrides({"--dtype=float64", "--init_from=resume", "--backend=nccl"}));

  for (const std::string key : {"n_layer", "n_head", "n_embd", "block_size", "batch_size",
                                "gradient_accumulation_steps", "tp_size", "eval_iters", "log_interval",
                                "eval_interval"}) {
    INFO(key);
    CHECK_THAT(validation_error({"--" + key + "=0"}), Contains(key) && Contains("must be positive, got 0"));
    CHECK_THAT(validation_error({"--" + key + "=-3"}), Contains(key) && Contains("got -3"));
  }
  CHECK_THAT(validation_error({"--n_embd=100"}), Contains("n_embd (100)") && Contains("n_head (12)"));
  CHECK_THAT(validation_error({"--block_types=['tp'] * 3"}),
             Contains("block_types has 3 entries") && Contains("n_layer is 12") && Contains("['tp', 'tp', 'tp']"));
  CHECK_THAT(validation_error({"--model_type=distributed_gpt", "--n_layer=2", "--block_types=['tp', 'moe']"}),
             Contains("unknown block type 'moe'") && Contains("['tp', 'spd', 'parallel', 'neox', 'ladder']"));
  CHECK_THAT(validation_error({"--model_type=distributed_gpt", "--tp_size=5"}),
             Contains("n_head (12)") && Contains("tp_size (5)"));
  // n_head % tp_size == 0 but 4*n_embd % tp_size != 0 (n_embd % n_head is checked after these two).
  CHECK_THAT(validation_error({"--model_type=distributed_gpt", "--n_head=16", "--n_embd=2", "--tp_size=16"}),
             Contains("4*n_embd (8)") && Contains("tp_size (16)"));

  CHECK_THAT(validation_error({"--model_type=bert"}), Contains("model_type") && Contains("'bert'") &&
                                                          Contains("'distributed_gpt'"));
  CHECK_THAT(validation_error({"--tp_size=2"}),
             Contains("model_type='gpt'") && Contains("tp_size=2") && Contains("model_type='distributed_gpt'"));
  CHECK_THAT(validation_error({"--n_layer=2", "--block_types=['tp', 'spd']"}),
             Contains("model_type='gpt'") && Contains("'spd'") && Contains("model_type='distributed_gpt'"));
  // OpenAI's GPT-2 (files/hf_gpt2.h): its weights bring n_layer, n_head and n_embd, so the rules on
  // them are checked when they load, not against the config's.
  CHECK_NOTHROW(validate_overrides({"--init_from=gpt2"}));
  CHECK_NOTHROW(validate_overrides({"--init_from=gpt2-xl", "--model_type=distributed_gpt", "--tp_size=5"}));
  CHECK_NOTHROW(validate_overrides({"--init_from=gpt2-medium", "--model_type=distributed_gpt", "--block_types=['spd']*24"}));
  CHECK_THAT(validation_error({"--init_from=gpt3"}), Contains("'gpt2-xl'") && Contains("'gpt3'"));
  CHECK_THAT(validation_error({"--init_from=sratch"}), Contains("'scratch', 'resume'") && Contains("'sratch'"));
  CHECK_THAT(validation_error({"--parallel_merge=max"}), Contains("parallel_merge") && Contains("'max'"));
  CHECK_THAT(validation_error({"--dtype=fp8"}), Contains("dtype") && Contains("'fp8'") && Contains("'bfloat16'"));
  CHECK_THAT(validation_error({"--dropout=1.0"}), Contains("dropout must be in [0, 1), got 1.0"));
  CHECK_THAT(validation_error({"--dropout=-0.1"}), Contains("dropout") && Contains("-0.1"));
  CHECK_THAT(validation_error({"--learning_rate=-1e-3"}), Contains("learning_rate must be >= 0, got -0.001"));
  CHECK_THAT(validation_error({"--min_lr=-1"}), Contains("min_lr"));
  CHECK_THAT(validation_error({"--weight_decay=-0.1"}), Contains("weight_decay"));
  CHECK_THAT(validation_error({"--grad_clip=-1.0"}), Contains("grad_clip must be >= 0"));
  CHECK_THAT(validation_error({"--beta1=1.0"}), Contains("beta1 must be in [0, 1)"));
  CHECK_THAT(validation_error({"--beta2=-0.5"}), Contains("beta2 must be in [0, 1)"));
  CHECK_THAT(validation_error({"--max_iters=-1"}), Contains("max_iters"));
  CHECK_THAT(validation_error({"--warmup_iters=-1"}), Contains("warmup_iters"));

  dgpt::TrainConfig cfg;
  cfg.backend = "mpi";  // bypassing the loader
  CHECK_THAT(error_of([&] { dgpt::validate(cfg, kKnownBlockTypes); }), Contains("backend"));
}

// ---------------------------------------------------------------------------------------------
// Items, printing, help, set_config_key

TEST_CASE("config_items, format_config, set_config_key and help", "[config]") {
  dgpt::TrainConfig cfg = train_with({"--block_types=['tp', 'spd']", "--n_layer=2", "--model_type=distributed_gpt"});
  auto items = dgpt::config_items(cfg);
  REQUIRE(items.size() == 42);
  CHECK(items.front().first == "out_dir");
  CHECK(items.front().second == S("out"));
  std::map<std::string, PyValue> by_key(items.begin(), items.end());
  CHECK(by_key.at("block_types") == strs({"tp", "spd"}));
  CHECK(by_key.at("learning_rate") == F(6e-4));
  CHECK(by_key.at("n_layer") == I(2));
  CHECK(by_key.at("bias") == B(false));
  CHECK(dgpt::config_items(dgpt::TrainConfig{})[21].first == "block_types");
  CHECK(dgpt::config_items(dgpt::TrainConfig{})[21].second == None());

  // Restoring every item reproduces the config, and re-printing reproduces the text.
  dgpt::TrainConfig restored;
  for (const auto& [key, value] : items) dgpt::set_config_key(restored, key, value);
  CHECK(dgpt::config_items(restored) == items);
  CHECK_FALSE(restored.device_was_set);
  dgpt::set_config_key(restored, "wandb_log", B(true));  // nanoGPT checkpoints store these
  dgpt::set_config_key(restored, "compile", B(true));
  CHECK_THAT(error_of([&] { dgpt::set_config_key(restored, "n_embed", I(3)); }), Contains("did you mean 'n_embd'?"));
  CHECK_THAT(error_of([&] { dgpt::set_config_key(restored, "n_layer", F(3)); }), Contains("expects int"));

  std::string text = dgpt::format_config(items);
  CHECK_THAT(text, Contains("\nlearning_rate               = 0.0006\n"));
  CHECK_THAT(text, Contains("\nblock_types                 = ['tp', 'spd']\n"));
  CHECK(text.rfind("out_dir                     = 'out'\n", 0) == 0);
  CHECK(std::count(text.begin(), text.end(), '\n') == 42);
  // The printed config is itself a loadable config file.
  TempDir dir;
  CHECK(dgpt::config_items(load_train({dir.write("printed.py", text)}, {})) == items);

  std::ostringstream notices;
  dgpt::SampleConfig sample = dgpt::load_sample_config({}, {"--device=cpu", "--start=FILE:prompt.txt"}, notices);
  CHECK(sample.device_was_set);
  auto sample_items = dgpt::config_items(sample);
  REQUIRE(sample_items.size() == 19);
  CHECK(sample_items[3] == std::make_pair(std::string("start"), S("FILE:prompt.txt")));
  CHECK(dgpt::config_items(dgpt::SampleConfig{})[3].second == S("\n"));

  std::string help = dgpt::train_keys_help();
  CHECK(std::count(help.begin(), help.end(), '\n') == 42);
  CHECK_THAT(help, Contains("block_types") && Contains("None") && Contains("'tp'"));
  CHECK_THAT(help, Contains("learning_rate") && Contains("0.0006"));
  std::string sample_help = dgpt::sample_keys_help();
  CHECK(std::count(sample_help.begin(), sample_help.end(), '\n') == 19);
  CHECK_THAT(sample_help, Contains("top_k") && Contains("200") && Contains("'\\n'"));
  CHECK_THAT(sample_help, Contains("top_p") && Contains("backend") && Contains("tp_procs") && Contains("comm_timeout"));
}

TEST_CASE("sample config: top_p and the other sampling values are validated", "[config][sample]") {
  std::ostringstream notices;
  auto validated = [&](const std::string& override_) {
    dgpt::validate(dgpt::load_sample_config({}, {override_}, notices));
  };
  CHECK_NOTHROW(validated("--top_p=1.0"));
  CHECK_NOTHROW(validated("--top_p=0.01"));
  CHECK_NOTHROW(validated("--temperature=0"));
  CHECK_NOTHROW(validated("--max_new_tokens=0"));
  CHECK_NOTHROW(validated("--top_k=None"));
  CHECK_NOTHROW(validated("--backend=gloo"));
  const std::vector<std::pair<std::string, std::string>> bad{
      {"--top_p=0", "top_p must be in (0, 1]"},       {"--top_p=1.5", "top_p must be in (0, 1]"},
      {"--top_p=-0.2", "top_p must be in (0, 1]"},     {"--top_p=1e400", "top_p must be in (0, 1]"},
      {"--max_new_tokens=-1", "max_new_tokens must be >= 0"}, {"--temperature=-0.5", "temperature must be >= 0"},
      {"--top_k=-3", "top_k must be >= 0"},           {"--num_samples=0", "num_samples must be >= 1"},
      {"--backend=mpi", "backend must be"},           {"--tp_procs=-1", "tp_procs"},
      {"--comm_timeout=0", "comm_timeout must be positive"}, {"--dtype=int8", "dtype must be"}};
  for (const auto& [override_, message] : bad) {
    INFO(override_);
    CHECK_THROWS_WITH(validated(override_), Contains(message));
  }
}

// ---------------------------------------------------------------------------------------------
// nanoGPT's own config files, line for line

TEST_CASE("nanoGPT's config files load as written", "[config][nanogpt]") {
  TempDir dir;
  std::string notices;

  std::string shakespeare_char = dir.write("train_shakespeare_char.py", R"(# train a miniature character-level shakespeare model
# good for debugging and playing on macbooks and such

out_dir = 'out-shakespeare-char'
eval_interval = 250 # keep frequent because we'll overfit
eval_iters = 200
log_interval = 10 # don't print too too often

# we expect to overfit on this small dataset, so only save when val improves
always_save_checkpoint = False

wandb_log = False # override via command line if you like
wandb_project = 'shakespeare-char'
wandb_run_name = 'mini-gpt'

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256 # context of up to 256 previous characters

# baby GPT model :)
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3 # with baby networks can afford to go a bit higher
max_iters = 5000
lr_decay_iters = 5000 # make equal to max_iters usually
min_lr = 1e-4 # learning_rate / 10 usually
beta2 = 0.99 # make a bit bigger because number of tokens per iter is small

warmup_iters = 100 # not super necessary potentially

# on macbook also add
# device = 'cpu'  # run on cpu only
# compile = False # do not torch compile the model
)");
  dgpt::TrainConfig cfg = load_train({shakespeare_char}, {"--device=cpu", "--compile=False"}, &notices);
  CHECK(cfg.out_dir == "out-shakespeare-char");
  CHECK(cfg.eval_interval == 250);
  CHECK_FALSE(cfg.always_save_checkpoint);
  CHECK(cfg.n_embd == 384);
  CHECK(cfg.dropout == 0.2);
  CHECK(cfg.min_lr == 1e-4);
  CHECK(cfg.beta2 == 0.99);
  CHECK(cfg.device == "cpu");
  CHECK_THAT(notices, Contains("ignoring wandb_run_name = 'mini-gpt'") && Contains("ignoring compile = False"));
  CHECK_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));

  std::string gpt2 = dir.write("train_gpt2.py", R"(# config for training GPT-2 (124M) down to very nice loss of ~2.85 on 1 node of 8X A100 40GB
# launch as the following (e.g. in a screen session) and wait ~5 days:
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py

wandb_log = True
wandb_project = 'owt'
wandb_run_name='gpt2-124M'

# these make the total batch size be ~0.5M
# 12 batch size * 1024 block size * 5 gradaccum * 8 GPUs = 491,520
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

# this makes total number of tokens be 300B
max_iters = 600000
lr_decay_iters = 600000

# eval stuff
eval_interval = 1000
eval_iters = 200
log_interval = 10

# weight decay
weight_decay = 1e-1
)");
  cfg = load_train({gpt2}, {}, &notices);
  CHECK(cfg.gradient_accumulation_steps == 40);
  CHECK(cfg.eval_interval == 1000);
  CHECK(cfg.weight_decay == 0.1);
  CHECK_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));

  std::string finetune = dir.write("finetune_shakespeare.py", R"(import time

out_dir = 'out-shakespeare'
eval_interval = 5
eval_iters = 40
wandb_log = False # feel free to turn on
wandb_project = 'shakespeare'
wandb_run_name = 'ft-' + str(time.time())

dataset = 'shakespeare'
init_from = 'gpt2-xl' # this is the largest GPT-2 model

# only save checkpoints if the validation loss improves
always_save_checkpoint = False

# the number of examples per iter:
# 1 batch_size * 32 grad_accum * 1024 tokens = 32,768 tokens/iter
# shakespeare has 301,966 tokens, so 1 epoch ~= 9.2 iters
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20

# finetune at constant LR
learning_rate = 3e-5
decay_lr = False
)");
  cfg = load_train({finetune}, {}, &notices);
  CHECK(cfg.init_from == "gpt2-xl");
  CHECK(cfg.learning_rate == 3e-5);
  CHECK_FALSE(cfg.decay_lr);
  CHECK_THAT(notices, Contains("import time"));
  CHECK_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));
  cfg = load_train({finetune}, {"--init_from=resume"});
  CHECK_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));

  std::string eval_gpt2 = dir.write("eval_gpt2.py", R"(# evaluate the base gpt2
# n_layer=12, n_head=12, n_embd=768
# 124M parameters
batch_size = 8
eval_iters = 500 # use more iterations to get good estimate
eval_only = True
wandb_log = False
init_from = 'gpt2'
)");
  cfg = load_train({eval_gpt2}, {});
  CHECK(cfg.eval_only);
  CHECK(cfg.eval_iters == 500);
  CHECK_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));
}

// ---------------------------------------------------------------------------------------------
// The shipped configs/*.py

TEST_CASE("every shipped config loads, validates and states its all-reduce counts", "[config][configs]") {
  const fs::path config_dir = fs::path(DGPT_SOURCE_DIR) / "configs";
  REQUIRE(fs::is_directory(config_dir));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(config_dir)) {
    if (entry.path().extension() == ".py") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 13);

  const std::regex comms_line(
      R"(# comms per micro-step: forward all-reduce (\d+), backward all-reduce (\d+), f\+g total (\d+))");
  const std::regex stated_ar(R"(_ar(\d+)\.py$)");
  std::set<std::string> out_dirs;
  for (const auto& path : files) {
    const std::string name = path.filename().string();
    INFO(name);
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    const std::string source = text.str();
    CHECK(source.rfind("# ", 0) == 0);  // starts with a comment saying what it is
    CHECK_THAT(source, Contains("dgpt train configs/" + name));

    dgpt::TrainConfig cfg = load_train({path.string()}, {});
    REQUIRE_NOTHROW(dgpt::validate(cfg, kKnownBlockTypes));
    CHECK(out_dirs.insert(cfg.out_dir).second);  // distinct out_dir per file

    std::smatch match;
    const bool has_comms = std::regex_search(source, match, comms_line);
    if (cfg.model_type == "gpt") {
      CHECK_FALSE(has_comms);
      continue;
    }
    REQUIRE(has_comms);
    const int64_t forward = forward_all_reduces(cfg.resolved_block_types());
    CHECK(std::stoll(match[1].str()) == forward);
    CHECK(std::stoll(match[2].str()) == forward);
    CHECK(std::stoll(match[3].str()) == 2 * forward);
    std::smatch ar;
    if (std::regex_search(name, ar, stated_ar)) CHECK(forward == std::stoll(ar[1].str()));
  }
}

TEST_CASE("shipped configs hold the stated settings", "[config][configs]") {
  const fs::path config_dir = fs::path(DGPT_SOURCE_DIR) / "configs";
  auto load = [&](const std::string& name) { return load_train({(config_dir / name).string()}, {}); };

  dgpt::TrainConfig baby = load("train_shakespeare_char.py");
  CHECK(baby.model_type == "gpt");
  CHECK(baby.out_dir == "out-shakespeare-char");
  CHECK(baby.eval_interval == 250);
  CHECK(baby.eval_iters == 200);
  CHECK(baby.log_interval == 10);
  CHECK_FALSE(baby.always_save_checkpoint);
  CHECK(baby.dataset == "shakespeare_char");
  CHECK(baby.gradient_accumulation_steps == 1);
  CHECK(baby.batch_size == 64);
  CHECK(baby.block_size == 256);
  CHECK(baby.n_layer == 6);
  CHECK(baby.n_head == 6);
  CHECK(baby.n_embd == 384);
  CHECK(baby.dropout == 0.2);
  CHECK(baby.learning_rate == 1e-3);
  CHECK(baby.max_iters == 5000);
  CHECK(baby.lr_decay_iters == 5000);
  CHECK(baby.min_lr == 1e-4);
  CHECK(baby.beta2 == 0.99);
  CHECK(baby.warmup_iters == 100);

  // The distributed variants change only out_dir and the model's sharding.
  for (const auto& [name, forward] : std::vector<std::pair<std::string, int64_t>>{
           {"train_shakespeare_char_distributed.py", 12},
           {"train_shakespeare_char_spd.py", 6},
           {"train_shakespeare_char_parallel.py", 1},
           {"train_shakespeare_char_mixed.py", 7}}) {
    INFO(name);
    dgpt::TrainConfig cfg = load(name);
    CHECK(cfg.model_type == "distributed_gpt");
    CHECK(cfg.tp_size == 2);
    CHECK(forward_all_reduces(cfg.resolved_block_types()) == forward);
    auto items = dgpt::config_items(cfg);
    auto baby_items = dgpt::config_items(baby);
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string& key = items[i].first;
      if (key == "out_dir" || key == "model_type" || key == "tp_size" || key == "block_types") continue;
      INFO(key);
      CHECK(items[i].second == baby_items[i].second);
    }
  }
  CHECK(load("train_shakespeare_char_distributed.py").resolved_block_types() == std::vector<std::string>(6, "tp"));
  CHECK(load("train_shakespeare_char_spd.py").block_types == std::vector<std::string>(6, "spd"));
  CHECK(load("train_shakespeare_char_parallel.py").block_types == std::vector<std::string>(6, "parallel"));
  const std::vector<std::string> mixed_types = load("train_shakespeare_char_mixed.py").block_types;
  std::set<std::string> mixed(mixed_types.begin(), mixed_types.end());
  CHECK(mixed == std::set<std::string>{"tp", "spd", "parallel"});

  dgpt::TrainConfig cpu = load("train_shakespeare_char_cpu.py");
  CHECK(cpu.device == "cpu");
  CHECK(cpu.device_was_set);
  CHECK(cpu.out_dir == "out-shakespeare-char-cpu");
  CHECK(cpu.dataset == "shakespeare_char");
  CHECK(cpu.model_type == "distributed_gpt");
  CHECK(cpu.tp_size == 2);
  CHECK(cpu.n_layer == 4);
  CHECK(cpu.n_head == 4);
  CHECK(cpu.n_embd == 128);
  CHECK(cpu.block_size == 64);
  CHECK(cpu.batch_size == 12);
  CHECK(cpu.gradient_accumulation_steps == 1);
  CHECK(cpu.max_iters == 2000);
  CHECK(cpu.lr_decay_iters == 2000);
  CHECK(cpu.dropout == 0.0);
  CHECK(cpu.eval_iters == 20);
  CHECK(cpu.eval_interval == 250);
  CHECK(cpu.log_interval == 50);
  CHECK(cpu.learning_rate == 1e-3);
  CHECK(cpu.min_lr == 1e-4);
  CHECK(cpu.beta2 == 0.99);
  CHECK(cpu.warmup_iters == 100);
  CHECK_FALSE(cpu.always_save_checkpoint);
  CHECK(cpu.block_types == std::vector<std::string>{"tp", "spd", "parallel", "parallel"});

  for (const std::string name : {"train_gpt2.py", "train_gpt2_tp.py", "train_gpt2_ar18.py", "train_gpt2_ar16.py",
                                 "train_gpt2_ar12.py", "train_gpt2_ar8.py", "train_gpt2_ar6.py"}) {
    INFO(name);
    dgpt::TrainConfig cfg = load(name);
    CHECK(cfg.batch_size == 12);
    CHECK(cfg.block_size == 1024);
    CHECK(cfg.gradient_accumulation_steps == 40);
    CHECK(cfg.max_iters == 600000);
    CHECK(cfg.lr_decay_iters == 600000);
    CHECK(cfg.eval_interval == 1000);
    CHECK(cfg.eval_iters == 200);
    CHECK(cfg.log_interval == 10);
    CHECK(cfg.weight_decay == 0.1);
    CHECK(cfg.dataset == "openwebtext");
    CHECK(cfg.n_layer == 12);
    CHECK(cfg.n_head == 12);
    CHECK(cfg.n_embd == 768);
    if (name == "train_gpt2.py") {
      CHECK(cfg.model_type == "gpt");
      CHECK(cfg.tp_size == 1);
    } else {
      CHECK(cfg.model_type == "distributed_gpt");
      CHECK(cfg.tp_size == 4);
    }
  }
  CHECK(forward_all_reduces(load("train_gpt2_tp.py").resolved_block_types()) == 24);
}
