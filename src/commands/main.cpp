// dgpt: one binary to prepare data, train, sample, evaluate and plan communications.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "run/bench.h"
#include "blocks/block.h"
#include "commands/comms.h"
#include "config/config.h"
#include "files/atomic_file.h"
#include "files/hf_gpt2.h"
#include "run/process_mesh.h"
#include "run/generate.h"
#include "run/launch.h"
#include "files/prepare.h"
#include "files/prepare_gpt2.h"
#include "model/cpu_allocator.h"
#include "run/sensitivity.h"
#include "run/run_settings.h"
#include "run/train.h"

using namespace dgpt;

namespace {

// nanoGPT's `--key=value` overrides are not CLI options: they are split off before CLI11 sees the
// arguments, except the subcommand's own flags.
struct SplitArgs {
  std::vector<std::string> cli;        // for CLI11, program name first
  std::vector<std::string> overrides;  // "--key=value"
};

SplitArgs split_overrides(int argc, char** argv, const CLI::App& app) {
  SplitArgs out;
  out.cli.push_back(argv[0]);
  const std::vector<std::string> key_value_commands{"train", "sample", "comms", "bench"};
  const CLI::App* collecting = nullptr;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (out.cli.size() == 1 && std::find(key_value_commands.begin(), key_value_commands.end(), a) !=
                                   key_value_commands.end())
      collecting = app.get_subcommand(a);
    const bool key_value = a.rfind("--", 0) == 0 && a.find('=') != std::string::npos;
    if (collecting && key_value && !collecting->get_option_no_throw(a.substr(0, a.find('='))))
      out.overrides.push_back(a);
    else
      out.cli.push_back(a);
  }
  return out;
}

void print_effective_config(const std::vector<std::pair<std::string, PyValue>>& items) {
  std::cout << "effective config:\n" << format_config(items);
  flush_checked(std::cout, "the training log (stdout)");  // the first write of the log: say why it fails
}

// The value of a numeric command-line option lies in its range, or a UserError names the option,
// the value and the range. Written as !(in range) so that nan fails too.
template <class T>
void require_range(const CLI::App* cmd, const char* option, T value, bool in_range, const char* range) {
  if (in_range) return;
  std::string shown = fmt::format("{}", value);
  throw UserError(fmt::format("dgpt {} {}={} is out of range: it must be {}", cmd->get_name(), option, shown, range));
}

// An option given explicitly on the command line (its default may mean "not set").
bool given(const CLI::App* cmd, const char* option) { return cmd->count(option) > 0; }

// CLI11's own message (a missing value, an unknown option, ...) as one `error:` line.
std::string parse_error_line(const CLI::ParseError& e, const CLI::App& app) {
  std::string what = e.what();
  for (char& c : what)
    if (c == '\n' || c == '\r') c = ' ';
  while (!what.empty() && what.back() == ' ') what.pop_back();
  std::string command = "dgpt";
  for (const CLI::App* sub : app.get_subcommands()) command += " " + sub->get_name();
  return fmt::format("{} (see `{} --help`)", what.empty() ? e.get_name() : what, command);
}

int run(int argc, char** argv) {
  set_compute_threads();  // before any kernel runs
  install_caching_cpu_allocator(local_ranks());
  CLI::App app{"dgpt: tensor-parallel communication strategies for GPT training, simulated or real"};
  app.require_subcommand(1);

  std::string dataset, out_dir;
  std::vector<std::string> inputs;
  OpenWebTextOptions owt;
  auto* prepare = app.add_subcommand("prepare", "Write train.bin, val.bin and meta.json for a dataset");
  prepare->add_option("dataset", dataset, "Dataset name: shakespeare_char, shakespeare (GPT-2 BPE), openwebtext")
      ->required();
  prepare->add_option("--input", inputs,
                      "The raw text (default: DIR/input.txt, else downloaded); for openwebtext: .jsonl files "
                      "(a \"text\" field per line), .txt files (one document each) or folders of them");
  prepare->add_option("--out", out_dir, "Output folder (default: data/<dataset>)");
  prepare->add_option("--val_fraction", owt.val_fraction, "openwebtext: fraction of documents in val.bin")
      ->capture_default_str();
  prepare->add_option("--seed", owt.seed, "openwebtext: seed of the train/val split")->capture_default_str();
  prepare->add_option("--threads", owt.threads, "openwebtext: tokenizer threads (default: every core)");

  std::vector<std::string> config_files;
  auto* train_cmd = app.add_subcommand("train", "Train a dense or tensor-parallel GPT (nanoGPT's train.py)");
  train_cmd->add_option("config", config_files, "Config files (nanoGPT dialect), applied in order");
  train_cmd->footer("Overrides: --key=value with Python literals, e.g. --block_types=\"['spd']*6\".\nKeys:\n" +
                    train_keys_help());

  auto* sample_cmd = app.add_subcommand("sample", "Generate text from a checkpoint (nanoGPT's sample.py)");
  sample_cmd->add_option("config", config_files, "Config files (nanoGPT dialect)");
  sample_cmd->footer("Overrides: --key=value, e.g. --out_dir=out-shakespeare-char --start=\"FILE:prompt.txt\".\nKeys:\n" +
                     sample_keys_help());

  EvalOptions eval_opt;
  auto* eval_cmd = app.add_subcommand("eval", "Mean cross-entropy of a checkpoint on a token file");
  eval_cmd->add_option("--out_dir", eval_opt.out_dir, "Folder holding ckpt.pt")->capture_default_str();
  eval_cmd->add_option("--tokens", eval_opt.tokens, "A .bin file of uint16 token ids")->required();
  eval_cmd->add_option("--block_size", eval_opt.block_size, "Window length T (default: the model's)");
  eval_cmd->add_option("--batch_size", eval_opt.batch_size, "Windows per forward pass")->capture_default_str();
  eval_cmd->add_option("--max_windows", eval_opt.max_windows, "Evaluate at most N windows (default: all)");
  eval_cmd->add_option("--device", eval_opt.device, "cpu or cuda")->capture_default_str();
  eval_cmd->add_option("--tp_size", eval_opt.tp_size, "Run an all-tp checkpoint at another tp_size");
  std::string eval_block_types;
  eval_cmd->add_option("--block_types", eval_block_types,
                       "Run the weights under other block types, zero-shot, e.g. \"['tp']*4+['spd']*2\" (a Python list)");
  eval_cmd->add_option("--vocab_parallel", eval_opt.vocab_parallel,
                       "1: split the embedding and the loss by vocabulary, 0: replicate them (the same function; "
                       "default: the checkpoint's)")
      ->check(CLI::IsMember({-1, 0, 1}));
  eval_cmd->add_option("--init_from", eval_opt.init_from,
                       "resume (the checkpoint in --out_dir), or gpt2, gpt2-medium, gpt2-large, gpt2-xl (OpenAI's weights)")
      ->capture_default_str();
  eval_cmd->add_option("--pretrained_dir", eval_opt.pretrained_dir,
                       "--init_from=gpt2*: the folder with model.safetensors and config.json (default: the Hugging Face cache)");

  std::string export_from = "out", export_to;
  int64_t export_vocab = 0;
  auto* export_cmd = app.add_subcommand("export", "Write a dense or all-tp checkpoint as Hugging Face's GPT-2 "
                                                  "(model.safetensors + config.json)");
  export_cmd->add_option("--out_dir", export_from, "Folder holding ckpt.pt")->capture_default_str();
  export_cmd->add_option("--to", export_to, "Folder to write model.safetensors and config.json to")->required();
  export_cmd->add_option("--vocab_size", export_vocab,
                         "Export only the first N token rows (e.g. 50257 of nanoGPT's padded 50304; default: all)");
  export_cmd->footer("Example: dgpt export --out_dir=out-shakespeare --to=hf-shakespeare, then in Python "
                     "GPT2LMHeadModel.from_pretrained('hf-shakespeare')");

  SensitivityOptions sens;
  auto* sens_cmd = app.add_subcommand("sensitivity", "Loss of switching each block to another type (SPD's sensitivity)");
  sens_cmd->add_option("--out_dir", sens.out_dir, "Folder holding ckpt.pt")->capture_default_str();
  sens_cmd->add_option("--tokens", sens.tokens, "A .bin file of uint16 token ids, e.g. data/DATASET/val.bin")->required();
  sens_cmd->add_option("--tp_size", sens.tp_size, "Shards (default: the checkpoint's; at least 2)");
  sens_cmd->add_option("--to", sens.to, "The block type each block is switched to")->capture_default_str();
  sens_cmd->add_option("--block_size", sens.block_size, "Window length T (default: the model's)");
  sens_cmd->add_option("--batch_size", sens.batch_size, "Windows per forward pass")->capture_default_str();
  sens_cmd->add_option("--max_windows", sens.max_windows, "Windows evaluated (0: all)")->capture_default_str();
  sens_cmd->add_option("--budget", sens.budget,
                       "Forward all-reduces per micro-step: suggest block_types within it from the measured deltas");
  sens_cmd->add_option("--json", sens.json, "Write the results as JSON to FILE ('-': stdout, the table to stderr)");
  sens_cmd->add_option("--device", sens.device, "cpu or cuda")->capture_default_str();

  bool as_json = false;
  auto* comms_cmd = app.add_subcommand("comms", "Print the communication plan of a config (SPEC §3)");
  comms_cmd->add_option("config", config_files, "Config files (nanoGPT dialect)");
  comms_cmd->add_flag("--json", as_json, "One JSON object instead of the table");
  comms_cmd->footer("Overrides: --key=value, as for train.");

  LaunchOptions launch_opt;
  std::vector<std::string> launch_args;
  auto* launch_cmd = app.add_subcommand("launch", "Run N ranks of a dgpt command on this machine (like torchrun)");
  launch_cmd->add_option("--nproc", launch_opt.nproc, "Number of processes (ranks)")->required();
  launch_cmd->add_option("--master_port", launch_opt.master_port, "Rendezvous port (default: a free one)");
  launch_cmd->add_option("command", launch_args, "The dgpt command after --, e.g. -- train CONFIG.py --backend=gloo")
      ->required();
  launch_cmd->footer("Example: dgpt launch --nproc 4 -- train configs/train_shakespeare_char_cpu.py --backend=gloo");

  BenchOptions bench_opt;
  auto* bench_cmd = app.add_subcommand("bench", "Time training steps of one or several strategies (nanoGPT's bench.py)");
  bench_cmd->add_option("config", config_files, "Config files (nanoGPT dialect)");
  bench_cmd->add_option("--burnin", bench_opt.burnin, "Untimed steps first")->capture_default_str();
  bench_cmd->add_option("--iters", bench_opt.iters, "Timed steps")->capture_default_str();
  bench_cmd->add_option("--real_data", bench_opt.real_data, "True: batches from train.bin; False: random tokens");
  bench_cmd->add_option("--peak_flops", bench_opt.peak_flops, "Peak FLOP/s for MFU (default: measure a matmul)");
  bench_cmd->add_option("--compare", bench_opt.compare,
                        "Patterns to compare, ';'-separated: \"['tp']*12; ['spd']*12; dense\"");
  bench_cmd->add_option("--project", bench_opt.project,
                        "Project communication onto interconnects: nvlink,pcie,ib,100gbe or NAME:ALPHA_US:GBPS");
  bench_cmd->add_option("--json", bench_opt.json, "Write the results as JSON to FILE ('-': stdout)");
  bench_cmd->add_option("--fit_alpha_beta", bench_opt.fit_alpha_beta,
                        "With backend='gloo' under dgpt launch: fit the alpha-beta model to this machine");
  bench_cmd->add_option("--ranks", bench_opt.ranks,
                        "Solo ranks timed for T_rank(N): 0 (default), all (shows imbalance), or a list such as 0,3")
      ->capture_default_str();
  bench_cmd->add_option("--mode", bench_opt.mode, "train (AdamW steps) or generate (prefill + decode with the KV cache)")
      ->capture_default_str();
  bench_cmd->add_option("--prompt_len", bench_opt.prompt_len, "generate: prompt tokens prefilled")->capture_default_str();
  bench_cmd->add_option("--new_tokens", bench_opt.new_tokens, "generate: tokens decoded one by one")->capture_default_str();
  bench_cmd->add_option("--gen_batch", bench_opt.gen_batch, "generate: sequences decoded together")->capture_default_str();
  bench_cmd->footer("Config overrides: --key=value, as for train.\nExample: dgpt bench configs/train_gpt2.py "
                    "--device=cpu --compare=\"['tp']*12; ['spd']*12\" --project=nvlink,ib");

  SplitArgs args = split_overrides(argc, argv, app);
  // A first word that is no command: say so and list them (CLI11 would only ask for a subcommand).
  if (args.cli.size() > 1 && !args.cli[1].empty() && args.cli[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
      known = known || sub->get_name() == args.cli[1];
    }
    if (!known)
      throw UserError(fmt::format("unknown command '{}' (commands: {}; see `dgpt --help`)", args.cli[1], names));
  }
  std::vector<const char*> cli_argv;
  for (auto& a : args.cli) cli_argv.push_back(a.c_str());
  try {
    app.parse(int(cli_argv.size()), const_cast<char**>(cli_argv.data()));
  } catch (const CLI::Success& e) {  // --help, --help-all
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    throw UserError(parse_error_line(e, app));
  }

  // Numeric options: each in its range; 0 is "the default" only where the help says so and only
  // when the option is not given.
  if (prepare->parsed()) {
    require_range(prepare, "--val_fraction", owt.val_fraction, owt.val_fraction >= 0 && owt.val_fraction < 1,
                  "in [0, 1)");
    if (given(prepare, "--threads")) require_range(prepare, "--threads", owt.threads, owt.threads >= 1, ">= 1");
  }
  if (eval_cmd->parsed()) {
    if (given(eval_cmd, "--block_size"))
      require_range(eval_cmd, "--block_size", eval_opt.block_size, eval_opt.block_size >= 1,
                    ">= 1 (and at most the model's block_size)");
    require_range(eval_cmd, "--batch_size", eval_opt.batch_size, eval_opt.batch_size >= 1, ">= 1");
    if (given(eval_cmd, "--max_windows"))
      require_range(eval_cmd, "--max_windows", eval_opt.max_windows, eval_opt.max_windows >= 1, ">= 1");
    if (given(eval_cmd, "--tp_size"))
      require_range(eval_cmd, "--tp_size", eval_opt.tp_size, eval_opt.tp_size >= 1, ">= 1");
    if (given(eval_cmd, "--block_types")) {
      PyValue v;
      try {
        v = parse_py_literal(eval_block_types);
      } catch (const UserError& e) {
        throw UserError(fmt::format("dgpt eval --block_types={}: {}", eval_block_types, e.what()));
      }
      bool ok = v.is_list() && !std::get<PyValue::List>(v.v).empty();
      if (ok)
        for (auto& t : std::get<PyValue::List>(v.v)) {
          ok = ok && t.is_str();
          if (t.is_str()) eval_opt.block_types.push_back(std::get<std::string>(t.v));
        }
      if (!ok)
        throw UserError(fmt::format("dgpt eval --block_types={} is not a non-empty list of block types, e.g. "
                                    "\"['tp', 'spd'] * 3\"",
                                    eval_block_types));
    }
  }
  if (export_cmd->parsed() && given(export_cmd, "--vocab_size"))
    require_range(export_cmd, "--vocab_size", export_vocab, export_vocab >= 1, ">= 1 (and at most the checkpoint's)");
  if (launch_cmd->parsed()) {
    require_range(launch_cmd, "--nproc", launch_opt.nproc, launch_opt.nproc >= 1 && launch_opt.nproc <= 4096,
                  "in [1, 4096]");
    if (given(launch_cmd, "--master_port"))
      require_range(launch_cmd, "--master_port", launch_opt.master_port,
                    launch_opt.master_port >= 1 && launch_opt.master_port <= 65535, "in [1, 65535]");
  }
  if (bench_cmd->parsed()) {
    require_range(bench_cmd, "--burnin", bench_opt.burnin, bench_opt.burnin >= 0, ">= 0");
    require_range(bench_cmd, "--iters", bench_opt.iters, bench_opt.iters >= 1, ">= 1");
    if (given(bench_cmd, "--peak_flops"))
      require_range(bench_cmd, "--peak_flops", bench_opt.peak_flops,
                    std::isfinite(bench_opt.peak_flops) && bench_opt.peak_flops > 0, "a finite number > 0");
    require_range(bench_cmd, "--prompt_len", bench_opt.prompt_len, bench_opt.prompt_len >= 1, ">= 1");
    require_range(bench_cmd, "--new_tokens", bench_opt.new_tokens, bench_opt.new_tokens >= 1, ">= 1");
    require_range(bench_cmd, "--gen_batch", bench_opt.gen_batch, bench_opt.gen_batch >= 1, ">= 1");
  }

  if (prepare->parsed()) {
    if (dataset != "shakespeare_char" && dataset != "shakespeare" && dataset != "openwebtext")
      throw UserError("unknown dataset '" + dataset + "' (known: shakespeare_char, shakespeare, openwebtext)");
    const std::string dir = out_dir.empty() ? "data/" + dataset : out_dir;
    if (dataset == "openwebtext") {
      owt.inputs = inputs;
      owt.out_dir = dir;
      prepare_openwebtext(owt, std::cout);
    } else {
      if (inputs.size() > 1) throw UserError("prepare " + dataset + " takes one --input file");
      const std::string input = inputs.empty() ? "" : inputs[0];
      if (dataset == "shakespeare")
        prepare_shakespeare_gpt2(input, dir, std::cout);
      else
        prepare_shakespeare_char(input, dir, std::cout);
    }
  } else if (train_cmd->parsed()) {
    TrainConfig cfg = load_train_config(config_files, args.overrides, std::cout);
    validate(cfg, known_block_types());
    if (read_launch_env().rank == 0) print_effective_config(config_items(cfg));
    train(cfg, std::cout, std::cout);
  } else if (sample_cmd->parsed()) {
    SampleConfig cfg = load_sample_config(config_files, args.overrides, std::cerr);
    sample(cfg, std::cout, std::cerr);
  } else if (eval_cmd->parsed()) {
    evaluate_tokens(eval_opt, std::cout, std::cerr);
  } else if (sens_cmd->parsed()) {
    if (given(sens_cmd, "--tp_size")) require_range(sens_cmd, "--tp_size", sens.tp_size, sens.tp_size >= 2, ">= 2");
    if (given(sens_cmd, "--block_size"))
      require_range(sens_cmd, "--block_size", sens.block_size, sens.block_size >= 1, ">= 1");
    require_range(sens_cmd, "--batch_size", sens.batch_size, sens.batch_size >= 1, ">= 1");
    require_range(sens_cmd, "--max_windows", sens.max_windows, sens.max_windows >= 0, ">= 0 (0: all)");
    if (given(sens_cmd, "--budget")) require_range(sens_cmd, "--budget", sens.budget, sens.budget >= 0, ">= 0");
    sensitivity(sens, std::cout, std::cerr);
  } else if (export_cmd->parsed()) {
    export_hf_gpt2(export_from + "/ckpt.pt", export_to, export_vocab, std::cout);
  } else if (bench_cmd->parsed()) {
    TrainConfig cfg = load_train_config(config_files, args.overrides, std::cerr);
    validate(cfg, known_block_types());
    bench(cfg, bench_opt, std::cout, std::cerr);
  } else if (launch_cmd->parsed()) {
    return launch(launch_opt, launch_args);
  } else if (comms_cmd->parsed()) {
    std::ostream& notices = as_json ? std::cerr : std::cout;
    TrainConfig cfg = load_train_config(config_files, args.overrides, notices);
    validate(cfg, known_block_types());
    print_comm_plan(cfg, as_json, std::cout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  install_signal_handlers();  // SIGXFSZ ignored; SIGINT/SIGTERM leave no temporary file behind
  try {
    return run(argc, argv);
  } catch (const Interrupted& e) {  // a training run that stopped on SIGINT/SIGTERM (it said so)
    std::cout.flush();
    return 128 + e.signal;
  } catch (const UserError& e) {
    std::cout.flush();
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cout.flush();
    std::cerr << "error: " << first_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "error: " << first_line(e.what()) << "\n";
    return 1;
  }
}
