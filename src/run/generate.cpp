#include "run/generate.h"

#include <fmt/format.h>

#include <fstream>
#include <ostream>
#include <sstream>

#include "blocks/block.h"
#include "files/data.h"
#include "model/precision.h"
#include "run/run_settings.h"
#include "files/tokenizer.h"

namespace dgpt {

namespace {

std::string config_string(const Checkpoint& ckpt, const std::string& key, const std::string& fallback) {
  for (auto& [k, v] : ckpt.config)
    if (k == key && v.is_str()) return std::get<std::string>(v.v);
  return fallback;
}

std::string checkpoint_data_dir(const Checkpoint& ckpt) {
  const std::string dir = config_string(ckpt, "data_dir", "");
  return dir.empty() ? "data/" + config_string(ckpt, "dataset", "openwebtext") : dir;
}

// nanoGPT's GPT.generate: crop the context to block_size, scale the last logits by 1/temperature,
// keep the top_k, sample. A temperature of 0 picks the most likely token.
std::vector<int64_t> generate(GPT& model, std::vector<int64_t> ids, int64_t max_new_tokens, double temperature,
                              int64_t top_k, torch::Device device, const Precision& precision) {
  torch::NoGradGuard no_grad;
  AutocastScope autocast(precision);
  const int64_t block_size = model->args().block_size;
  for (int64_t n = 0; n < max_new_tokens; ++n) {
    const int64_t start = std::max<int64_t>(0, int64_t(ids.size()) - block_size);
    auto idx = torch::tensor(std::vector<int64_t>(ids.begin() + start, ids.end()), torch::kLong).view({1, -1}).to(device);
    auto logits = model->forward(idx).logits.select(1, 0).to(torch::kFloat);  // [1, V]
    int64_t next;
    if (temperature <= 0) {
      next = logits.argmax(-1).item<int64_t>();
    } else {
      logits = logits / temperature;
      if (top_k > 0) {
        auto kth = std::get<0>(logits.topk(std::min(top_k, logits.size(-1)))).select(-1, -1).unsqueeze(-1);
        logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
      }
      next = torch::multinomial(torch::softmax(logits, -1), 1).item<int64_t>();
    }
    ids.push_back(next);
  }
  return ids;
}

}  // namespace

GPT model_from_checkpoint(const Checkpoint& ckpt, int64_t tp_size, const std::string& model_type,
                          torch::Device device, torch::Dtype dtype) {
  ModelArgs args = ckpt.model_args;
  const bool retargeted = (tp_size > 0 && tp_size != args.tp_size) || (!model_type.empty() && model_type != args.model_type);
  if (retargeted && !same_function_at_every_tp_size(args))
    throw UserError(fmt::format("this checkpoint's blocks {} were trained at tp_size={}, and some of them compute a "
                                "different function at another tp_size or as a dense model",
                                PyValue::from(args.block_types).repr(), args.tp_size));
  if (!model_type.empty()) {
    if (model_type != ModelArgs::kDenseModelType && model_type != ModelArgs::kShardedModelType)
      throw UserError("model_type='" + model_type + "' is not 'gpt' or 'distributed_gpt'");
    args.model_type = model_type;
    if (args.dense()) args.tp_size = 1;
  }
  if (tp_size > 0) {
    if (args.dense() && tp_size != 1)
      throw UserError("tp_size=" + std::to_string(tp_size) + " needs model_type='distributed_gpt'");
    if (args.n_head % tp_size != 0 || (4 * args.n_embd) % tp_size != 0)
      throw UserError(fmt::format("tp_size={} does not divide n_head={} and 4*n_embd={}", tp_size, args.n_head,
                                  4 * args.n_embd));
    args.tp_size = tp_size;
  }
  args.dropout = 0.0;
  GPT model(args, std::make_shared<SimulatedGroup>(args.tp_size));  // inference runs in one process
  model->load_dense_state(ckpt.model);
  model->to(device, dtype);
  model->eval();
  return model;
}

void sample(const SampleConfig& cfg, std::ostream& out, std::ostream& notices) {
  if (cfg.init_from != "resume")
    throw UserError("init_from='" + cfg.init_from + "': only 'resume' (a checkpoint in out_dir) is supported; "
                    "OpenAI GPT-2 weights cannot be loaded");
  const torch::Device device = resolve_device(cfg.device, cfg.device_was_set, notices);
  const Precision precision = resolve_precision(cfg.dtype, device, notices);
  const Checkpoint ckpt = load_checkpoint(cfg.out_dir + "/ckpt.pt");
  GPT model = model_from_checkpoint(ckpt, cfg.tp_size, cfg.model_type, device, precision.param_dtype);
  const auto tokenizer = load_tokenizer(checkpoint_data_dir(ckpt));

  std::string start = cfg.start;
  if (start.rfind("FILE:", 0) == 0) {
    std::ifstream in(start.substr(5), std::ios::binary);
    if (!in) throw UserError("cannot read start file " + start.substr(5));
    std::stringstream ss;
    ss << in.rdbuf();
    start = ss.str();
  }
  const auto start_ids = tokenizer->encode(start);
  if (start_ids.empty()) throw UserError("start is empty: give at least one token (nanoGPT's default is \"\\n\")");

  torch::manual_seed(uint64_t(cfg.seed));
  const CommTally before = model->group().tally();
  for (int64_t k = 0; k < cfg.num_samples; ++k) {
    const auto ids = generate(model, start_ids, cfg.max_new_tokens, cfg.temperature, cfg.top_k, device, precision);
    out << tokenizer->decode(ids) << "\n---------------\n" << std::flush;
  }
  const CommTally used = model->group().tally() - before;
  notices << fmt::format("sampling: {} forward all-reduces, {} (tp_size {}, SPEC §3)\n",
                         used.count_of(CommKind::ForwardAllReduce), human_bytes(double(used.total_bytes())),
                         model->args().tp_size);
}

double evaluate_tokens(const EvalOptions& opt, std::ostream& out, std::ostream& notices) {
  const torch::Device device = resolve_device(opt.device, true, notices);
  const Checkpoint ckpt = load_checkpoint(opt.out_dir + "/ckpt.pt");
  GPT model = model_from_checkpoint(ckpt, opt.tp_size, "", device, torch::kFloat);
  const int64_t T = opt.block_size > 0 ? opt.block_size : model->args().block_size;
  if (T > model->args().block_size)
    throw UserError(fmt::format("block_size={} exceeds the model's block_size={}", T, model->args().block_size));
  if (opt.batch_size <= 0) throw UserError("batch_size must be positive");
  const TokenFile tokens(opt.tokens);
  int64_t windows = (tokens.size() - 1) / T;
  if (opt.max_windows > 0) windows = std::min(windows, opt.max_windows);
  if (windows <= 0)
    throw UserError(fmt::format("{} has {} tokens: fewer than one window of {} + 1", opt.tokens, tokens.size(), T));
  for (int64_t id = 0; id < tokens.size(); ++id)
    if (tokens.data()[id] >= model->args().vocab_size)
      throw UserError(fmt::format("{} holds token id {} at position {}, outside the model's vocabulary of {}",
                                  opt.tokens, tokens.data()[id], id, model->args().vocab_size));

  torch::NoGradGuard no_grad;
  double nll_sum = 0;
  for (int64_t first = 0; first < windows; first += opt.batch_size) {
    const int64_t n = std::min(opt.batch_size, windows - first);
    auto span = tokens.slice(first * T, n * T + 1);
    auto x = span.narrow(0, 0, n * T).view({n, T}).to(device);
    auto y = span.narrow(0, 1, n * T).view({n, T}).to(device);
    auto logits = model->forward(x, y).logits.to(torch::kDouble);
    nll_sum += torch::nll_loss(torch::log_softmax(logits.view({n * T, -1}), -1), y.reshape(-1), {},
                               at::Reduction::Sum)
                   .item<double>();
  }
  const double loss = nll_sum / double(windows * T);
  out << fmt::format("evaluated {} windows of {} tokens ({} predicted tokens) from {}\n", windows, T, windows * T,
                     opt.tokens);
  out << fmt::format("loss {:.12g}\n", loss);
  return loss;
}

}  // namespace dgpt
