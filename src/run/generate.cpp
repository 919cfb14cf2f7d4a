#include "run/generate.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <ostream>
#include <sstream>

#include "base/clock.h"
#include "blocks/block.h"
#include "files/bpe.h"
#include "files/data.h"
#include "files/hf_gpt2.h"
#include "model/convert.h"
#include "model/kv_cache.h"
#include "model/precision.h"
#include "run/process_mesh.h"
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

// A FILE: prompt: a regular file of at most 16 MiB (a directory, a FIFO or /dev/zero is refused unread).
std::string read_start_file(const std::string& path) {
  constexpr size_t kMaxPromptBytes = size_t{16} << 20;
  auto fail = [&](const std::string& why) -> std::string { throw UserError("cannot read start file " + path + ": " + why); };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");
  if (size_t(st.st_size) > kMaxPromptBytes) return fail("more than 16 MiB");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, size_t(in.gcount()));
    if (text.size() > kMaxPromptBytes) return fail("more than 16 MiB");
  }
  if (in.bad()) return fail(std::strerror(errno));
  return text;
}

}  // namespace

// nanoGPT's sampling: scale the logits [1, V] by 1/temperature, keep the top_k, then (nucleus
// sampling) the smallest set of most likely tokens whose probabilities reach top_p (the most likely
// one always stays), and draw from the softmax of what is left. Temperature 0 picks the most likely
// token. top_p = 1 is skipped altogether, so it changes nothing, not even the rounding.
int64_t next_token(torch::Tensor logits, const SamplingOptions& opt) {
  if (opt.temperature <= 0) return logits.argmax(-1).item<int64_t>();
  const float minus_inf = -std::numeric_limits<float>::infinity();
  logits = logits / opt.temperature;
  if (opt.top_k > 0) {
    auto kth = std::get<0>(logits.topk(std::min(opt.top_k, logits.size(-1)))).select(-1, -1).unsqueeze(-1);
    logits = logits.masked_fill(logits < kth, minus_inf);
  }
  if (opt.top_p < 1.0) {
    auto [sorted, order] = logits.sort(-1, /*descending=*/true);  // [1, V] each
    auto probs = torch::softmax(sorted, -1);
    // a token goes when the more likely ones before it already hold top_p
    auto drop_sorted = (probs.cumsum(-1) - probs) >= opt.top_p;
    auto drop = torch::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    logits = logits.masked_fill(drop, minus_inf);
  }
  return torch::multinomial(torch::softmax(logits, -1), 1).item<int64_t>();
}

// nanoGPT's GPT.generate with a KV cache (SPEC §6): the prompt's last block_size tokens are
// prefilled, then every new token is one decode step over the cache. nanoGPT crops the context to
// the last block_size tokens; so does this: when the sequence would outgrow block_size, the cache
// is cleared and the last block_size tokens are prefilled again. Every token thus sees exactly
// nanoGPT's context (and the logits of recomputing it); past block_size each token costs a prefill
// of block_size positions, as it does without a cache. Calls on_token after each new token.
std::vector<int64_t> generate(GPT& model, std::vector<int64_t> ids, int64_t max_new_tokens,
                              const SamplingOptions& opt, torch::Device device, const Precision& precision,
                              const std::function<void(int64_t)>& on_token) {
  if (max_new_tokens == 0) return ids;
  torch::NoGradGuard no_grad;
  AutocastScope autocast(precision);
  const int64_t block_size = model->args().block_size;
  KVCache cache;
  // The tokens ids[first, end) after the cached ones -> the logits of the last, [1, V] in float32.
  auto extend = [&](size_t first) {
    auto idx = torch::tensor(std::vector<int64_t>(ids.begin() + int64_t(first), ids.end()), torch::kLong)
                   .view({1, -1})
                   .to(device);
    return model->forward(idx, {}, &cache).logits.select(1, 0).to(torch::kFloat);
  };
  auto prefill = [&] {
    cache.clear();
    return extend(size_t(std::max<int64_t>(0, int64_t(ids.size()) - block_size)));
  };
  auto logits = prefill();
  for (int64_t n = 0; n < max_new_tokens; ++n) {
    ids.push_back(next_token(logits, opt));
    if (on_token) on_token(ids.back());
    if (n + 1 < max_new_tokens) logits = cache.length() < block_size ? extend(ids.size() - 1) : prefill();
  }
  return ids;
}

// The model a checkpoint describes for inference, optionally at another tp_size or as the dense
// 'gpt' (both only when every block computes the same function at every tp_size, unless
// block_types are given), with vocab_parallel on or off (`vocab_parallel` 1 or 0; -1 keeps the
// checkpoint's): the same function either way; and with other `block_types` (empty: the
// checkpoint's): the weights converted, zero-shot (model/convert.h). The dense 'gpt' has no
// shards, so it is never vocab-parallel.
ModelArgs inference_model_args(const Checkpoint& ckpt, int64_t tp_size, const std::string& model_type,
                               int vocab_parallel, const std::vector<std::string>& block_types) {
  ModelArgs args = ckpt.model_args;
  const bool retargeted = (tp_size > 0 && tp_size != args.tp_size) || (!model_type.empty() && model_type != args.model_type);
  if (!block_types.empty()) {  // an explicit conversion: the user asks for these blocks, whatever they compute
    if (int64_t(block_types.size()) != args.n_layer)
      throw UserError(fmt::format("block_types has {} entries but the checkpoint's n_layer is {}: block_types = {}",
                                  block_types.size(), args.n_layer, PyValue::from(block_types).repr()));
    for (auto& t : block_types) block_type(t);  // an unknown one is an error naming the known ones
    if (model_type == ModelArgs::kDenseModelType)
      for (auto& t : block_types)
        if (t != ModelArgs::kBaselineBlockType)
          throw UserError("model_type='gpt' is the dense model, but block_types contains '" + t + "'");
    if (args.dense()) args.model_type = ModelArgs::kShardedModelType;
    args.block_types = block_types;
  } else if (retargeted && !same_function_at_every_tp_size(args)) {
    throw UserError(fmt::format("this checkpoint's blocks {} were trained at tp_size={}, and some of them compute a "
                                "different function at another tp_size or as a dense model (to run them as another "
                                "model anyway, give block_types explicitly)",
                                PyValue::from(args.block_types).repr(), args.tp_size));
  }
  if (!model_type.empty()) {
    if (model_type != ModelArgs::kDenseModelType && model_type != ModelArgs::kShardedModelType)
      throw UserError("model_type='" + model_type + "' is not 'gpt' or 'distributed_gpt'");
    args.model_type = model_type;
    if (args.dense()) args.tp_size = 1;
  }
  if (args.dense() && vocab_parallel == 1)
    throw UserError("vocab_parallel=True needs model_type='distributed_gpt': the dense 'gpt' has no shards");
  if (vocab_parallel >= 0) args.vocab_parallel = vocab_parallel == 1;
  if (args.dense()) args.vocab_parallel = false;
  if (tp_size > 0) {
    if (args.dense() && tp_size != 1)
      throw UserError("tp_size=" + std::to_string(tp_size) + " needs model_type='distributed_gpt'");
    if (args.n_head % tp_size != 0 || (4 * args.n_embd) % tp_size != 0)
      throw UserError(fmt::format("tp_size={} does not divide n_head={} and 4*n_embd={}", tp_size, args.n_head,
                                  4 * args.n_embd));
    args.tp_size = tp_size;
  }
  args.dropout = 0.0;
  return args;
}

namespace {

GPT inference_model(const Checkpoint& ckpt, const ModelArgs& args, std::shared_ptr<TensorParallelGroup> group,
                    torch::Device device, torch::Dtype dtype) {
  GPT model(args, std::move(group));
  model->to(device, dtype);  // first: the weights come in at the inference dtype, not through float32
  model->load_dense_state(convert_weights(ckpt.model, ckpt.model_args, args));
  model->eval();
  return model;
}

// The keys make_process_mesh reads, from a sample config: the mesh of a real run, and what its
// ranks compare at rendezvous. Sampling has no micro-steps: any number of replicas divides these.
TrainConfig mesh_config(const SampleConfig& cfg, const ModelArgs& args, const LaunchEnv& env) {
  TrainConfig t;
  t.out_dir = cfg.out_dir;
  t.init_from = cfg.init_from;
  t.seed = cfg.seed;
  t.device = cfg.device;
  t.device_was_set = cfg.device_was_set;
  t.dtype = cfg.dtype;
  t.backend = cfg.backend;
  t.tp_procs = cfg.tp_procs;
  t.comm_timeout = cfg.comm_timeout;
#define DGPT_COPY_MODEL_KEY(type, name, default_value, kind, help) t.name = args.name;
  DGPT_MODEL_KEYS(DGPT_COPY_MODEL_KEY)
#undef DGPT_COPY_MODEL_KEY
  t.block_size = args.block_size;
  t.gradient_accumulation_steps = env.world;
  return t;
}

// Every rank of the tensor-parallel group holds the same `values` (int64), or a UserError says who differs.
void check_ranks_agree(Collectives& tp, const std::vector<int64_t>& values, int64_t rank, const std::string& what) {
  if (tp.size() == 1 || values.empty()) return;
  auto mine = torch::tensor(values, torch::kLong);
  auto all = tp.all_gather(mine, what);  // [W, n]
  for (int64_t r = 0; r < tp.size(); ++r)
    if (!torch::equal(all[r], mine))
      throw UserError(fmt::format("rank {}: {} differs on rank {} of the tensor-parallel group", rank, what, r));
}

}  // namespace

GPT model_from_checkpoint(const Checkpoint& ckpt, int64_t tp_size, const std::string& model_type,
                          torch::Device device, torch::Dtype dtype, int vocab_parallel,
                          const std::vector<std::string>& block_types, std::ostream* notices) {
  const ModelArgs args = inference_model_args(ckpt, tp_size, model_type, vocab_parallel, block_types);
  if (notices) {
    const std::string what = describe_conversion(ckpt.model_args, args);
    if (!what.empty()) *notices << what << "\n";
  }
  return inference_model(ckpt, args, std::make_shared<SimulatedGroup>(args.tp_size), device, dtype);
}

void sample(const SampleConfig& cfg, std::ostream& main_out, std::ostream& main_notices) {
  validate(cfg);
  const bool gpt2 = is_gpt2_model_name(cfg.init_from);
  if (cfg.init_from != "resume" && !gpt2)
    throw UserError("init_from='" + cfg.init_from + "': sample reads 'resume' (the checkpoint in out_dir) or OpenAI's "
                    "'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'");
  const LaunchEnv launch_env = read_launch_env();
  const std::string ckpt_path = cfg.out_dir + "/ckpt.pt";
  std::ostringstream load_notices;  // said after the checks below, so that a failure is one error line
  const Checkpoint ckpt = gpt2 ? pretrained_checkpoint(load_pretrained_gpt2(cfg.init_from, cfg.pretrained_dir, load_notices),
                                                       cfg.tp_size)
                               : load_checkpoint(ckpt_path);
  // The tokenizer comes from the checkpoint's dataset (GPT-2's own for GPT-2 weights, as nanoGPT's
  // sample.py): its vocabulary must be the model's.
  if (gpt2 && ckpt.model_args.vocab_size < Gpt2Bpe::kVocabSize)
    throw UserError(fmt::format("init_from='{}': the weights have a vocabulary of {}, fewer than the GPT-2 "
                                "tokenizer's {}",
                                cfg.init_from, ckpt.model_args.vocab_size, Gpt2Bpe::kVocabSize));
  if (!gpt2) check_model_vocabulary(ckpt.model_args.vocab_size, checkpoint_data_dir(ckpt), "checkpoint " + ckpt_path);
  if (launch_env.rank == 0) main_notices << load_notices.str();
  const ModelArgs args = inference_model_args(ckpt, cfg.tp_size, cfg.model_type,
                                             cfg.vocab_parallel ? int(*cfg.vocab_parallel) : -1, cfg.block_types);
  if (launch_env.rank == 0) {
    const std::string what = describe_conversion(ckpt.model_args, args);
    if (!what.empty()) main_notices << what << "\n";
  }
  // A real run (backend gloo or nccl): this process holds L = tp_size / W shards; only rank 0 prints.
  const TrainConfig mesh_cfg = mesh_config(cfg, args, launch_env);
  const ProcessMesh mesh = make_process_mesh(mesh_cfg, launch_env, main_notices);
  RankStreams streams(mesh.is_main(), main_out, main_notices);
  std::ostream& out = streams.out;
  std::ostream& notices = streams.notices;
  // The mesh compares the train keys it was given; the sample keys are compared here.
  check_ranks_agree(*mesh.tp_group, {int64_t(config_hash(config_items(cfg)) >> 1)}, mesh.rank, "the sample config");
  const torch::Device device =
      device_for_rank(resolve_device(cfg.device, cfg.device_was_set, notices), mesh_cfg, launch_env);
  const Precision precision = resolve_precision(cfg.dtype, device, notices);
  GPT model = inference_model(ckpt, args, tensor_parallel_group(args, mesh_cfg, mesh), device, precision.param_dtype);
  const std::unique_ptr<Tokenizer> tokenizer = gpt2 ? Gpt2Bpe::load() : load_tokenizer(checkpoint_data_dir(ckpt));

  std::string start = cfg.start;
  if (start.rfind("FILE:", 0) == 0) start = read_start_file(start.substr(5));
  const auto start_ids = tokenizer->encode(start);
  if (start_ids.empty()) throw UserError("start is empty: give at least one token (nanoGPT's default is \"\\n\")");

  // Every rank draws from the same generator and the same logits (everything after g is
  // replicated), hence the same tokens; each sample checks that they agree.
  torch::manual_seed(uint64_t(cfg.seed));
  const SamplingOptions opt{cfg.temperature, cfg.top_k, cfg.top_p};
  const CommTally before = model->group().tally();
  const auto t0 = Clock::now();
  for (int64_t k = 0; k < cfg.num_samples; ++k) {
    // Streamed: each token's text is printed as soon as it is complete (a GPT-2 token may end
    // inside a multi-byte character: its bytes wait for the token that completes it).
    TextStream text(*tokenizer);
    for (int64_t id : start_ids) out << text.push(id);
    out << std::flush;
    const auto ids = generate(model, start_ids, cfg.max_new_tokens, opt, device, precision,
                              [&](int64_t id) { out << text.push(id) << std::flush; });
    out << text.finish() << "\n---------------\n" << std::flush;
    check_ranks_agree(*mesh.tp_group, std::vector<int64_t>(ids.begin() + int64_t(start_ids.size()), ids.end()),
                      mesh.rank, fmt::format("the tokens of sample {}", k + 1));
  }
  const double seconds = seconds_since(t0);
  const CommTally used = model->group().tally() - before;
  const int64_t new_tokens = cfg.num_samples * cfg.max_new_tokens;
  const std::string comm_time =
      cfg.backend == "sim" ? "" : fmt::format(" in {:.2f}ms", used.total_seconds() * 1e3);
  // vocab_parallel adds, per forward pass, the embedding's g and the gather of the logits.
  const std::string vocab =
      model->args().vocab_sharded() && model->args().tp_size > 1
          ? fmt::format(" + {} vocab-parallel embedding all-reduces and {} logits gathers",
                        used.count_of(CommKind::VocabForwardAllReduce), used.count_of(CommKind::VocabLogitsAllReduce))
          : "";
  notices << fmt::format("sampling: {} forward all-reduces{}, {}{} (tp_size {}, SPEC §3)\n",
                         used.count_of(CommKind::ForwardAllReduce), vocab, human_bytes(double(used.total_bytes())),
                         comm_time, model->args().tp_size);
  notices << fmt::format("sampling: {} new tokens in {:.2f}s, {:.1f} tokens/s (KV cache, batch 1)\n", new_tokens,
                         seconds, seconds > 0 ? double(new_tokens) / seconds : 0.0)
          << std::flush;
}

double window_loss(GPT& model, const TokenFile& tokens, int64_t T, int64_t windows, int64_t batch_size,
                   torch::Device device) {
  torch::NoGradGuard no_grad;
  double nll_sum = 0;
  for (int64_t first = 0; first < windows; first += batch_size) {
    const int64_t n = std::min(batch_size, windows - first);
    auto span = tokens.slice(first * T, n * T + 1);
    auto x = span.narrow(0, 0, n * T).view({n, T}).to(device);
    auto y = span.narrow(0, 1, n * T).view({n, T}).to(device);
    nll_sum += summed_nll(model->forward(x, y), y);
  }
  return nll_sum / double(windows * T);
}

double summed_nll(const ModelOutput& out, const torch::Tensor& y) {
  if (!out.logits.defined())  // vocab-parallel: no [B,T,V] anywhere; the mean from its three all-reduces
    return out.loss.item<double>() * double(y.numel());
  return torch::nll_loss(torch::log_softmax(out.logits.to(torch::kDouble).view({y.numel(), -1}), -1), y.reshape(-1), {},
                         at::Reduction::Sum)
      .item<double>();
}

double evaluate_tokens(const EvalOptions& opt, std::ostream& out, std::ostream& notices) {
  // 0 means "the model's" / "all" / "the checkpoint's" for these; below 0 means nothing.
  if (opt.block_size < 0) throw UserError(fmt::format("--block_size must be >= 1, got {}", opt.block_size));
  if (opt.batch_size <= 0) throw UserError(fmt::format("--batch_size must be >= 1, got {}", opt.batch_size));
  if (opt.max_windows < 0) throw UserError(fmt::format("--max_windows must be >= 1, got {}", opt.max_windows));
  if (opt.tp_size < 0) throw UserError(fmt::format("--tp_size must be >= 1, got {}", opt.tp_size));
  const torch::Device device = resolve_device(opt.device, true, notices);
  const bool gpt2 = is_gpt2_model_name(opt.init_from);
  if (opt.init_from != "resume" && !gpt2)
    throw UserError("dgpt eval --init_from=" + opt.init_from + " is not 'resume' (the checkpoint in --out_dir) or "
                    "'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'");
  std::ostringstream load_notices;  // said once the model and the windows are known to be good
  const Checkpoint ckpt =
      gpt2 ? pretrained_checkpoint(load_pretrained_gpt2(opt.init_from, opt.pretrained_dir, load_notices), opt.tp_size)
           : load_checkpoint(opt.out_dir + "/ckpt.pt");
  GPT model = model_from_checkpoint(ckpt, opt.tp_size, "", device, torch::kFloat, opt.vocab_parallel, opt.block_types,
                                    &load_notices);
  const int64_t T = opt.block_size > 0 ? opt.block_size : model->args().block_size;
  if (T > model->args().block_size)
    throw UserError(fmt::format("--block_size={} exceeds the model's block_size={}: it must be in [1, {}]", T,
                                model->args().block_size, model->args().block_size));
  const TokenFile tokens(opt.tokens);
  int64_t windows = (tokens.size() - 1) / T;
  if (opt.max_windows > 0) windows = std::min(windows, opt.max_windows);
  if (windows <= 0)
    throw UserError(fmt::format("{} has {} tokens: fewer than one window of {} + 1", opt.tokens, tokens.size(), T));
  for (int64_t id = 0; id < tokens.size(); ++id)
    if (tokens.data()[id] >= model->args().vocab_size)
      throw UserError(fmt::format("{} holds token id {} at position {}, outside the model's vocabulary of {}",
                                  opt.tokens, tokens.data()[id], id, model->args().vocab_size));

  notices << load_notices.str();
  const double loss = window_loss(model, tokens, T, windows, opt.batch_size, device);
  out << fmt::format("evaluated {} windows of {} tokens ({} predicted tokens) from {}\n", windows, T, windows * T,
                     opt.tokens);
  out << fmt::format("loss {:.12g}\n", loss);
  return loss;
}

}  // namespace dgpt
