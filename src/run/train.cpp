#include "run/train.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <optional>
#include <ostream>

#include "blocks/block.h"
#include "files/checkpoint.h"
#include "base/clock.h"
#include "model/comm_plan.h"
#include "model/convert.h"
#include "files/data.h"
#include "files/hf_gpt2.h"
#include "run/process_mesh.h"
#include "files/atomic_file.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/precision.h"
#include "run/run_settings.h"
#include "files/tokenizer.h"

namespace dgpt {

namespace {

// Stream identifiers mixed into seeds, so train batches, eval batches and dropout never share one.
enum SeedStream : uint64_t { kTrainBatch = 1, kEvalBatch = 2 };  // dropout is 3 (model/dropout.cpp)

// Mean loss over eval_iters batches of each split, batches keyed by (seed, split, iter, k).
std::pair<double, double> estimate_loss(GPT& model, const Dataset& data, const TrainConfig& cfg, int64_t iter,
                                        torch::Device device, const Precision& precision) {
  torch::NoGradGuard no_grad;
  AutocastScope autocast(precision);
  model->eval();
  double losses[2];
  const char* splits[2] = {"train", "val"};
  for (int s = 0; s < 2; ++s) {
    double sum = 0;
    for (int64_t k = 0; k < cfg.eval_iters; ++k) {
      auto batch = sample_batch(data.split(splits[s]), cfg.batch_size, cfg.block_size,
                                mix_seed({uint64_t(cfg.seed), kEvalBatch, uint64_t(s), uint64_t(iter), uint64_t(k)}),
                                device);
      sum += model->forward(batch.x, batch.y).loss.item<double>();
    }
    losses[s] = sum / double(cfg.eval_iters);
  }
  model->train();
  return {losses[0], losses[1]};
}

// The model args of a resumed run: the checkpoint's architecture; tp_size may change only for
// all-tp models (spd and parallel compute a different function at another tp_size).
ModelArgs resumed_model_args(const Checkpoint& ckpt, const TrainConfig& cfg, std::ostream& notices) {
  ModelArgs a = ckpt.model_args;
  const ModelArgs wanted = model_args_from(cfg, a.vocab_size);
  auto note = [&](const char* key, const std::string& ckpt_value, const std::string& cfg_value) {
    if (ckpt_value != cfg_value)
      notices << "notice: resuming with the checkpoint's " << key << " = " << ckpt_value << " (config says "
              << cfg_value << ")\n";
  };
  note("n_layer", std::to_string(a.n_layer), std::to_string(wanted.n_layer));
  note("n_head", std::to_string(a.n_head), std::to_string(wanted.n_head));
  note("n_embd", std::to_string(a.n_embd), std::to_string(wanted.n_embd));
  note("block_size", std::to_string(a.block_size), std::to_string(wanted.block_size));
  note("model_type", a.model_type, wanted.model_type);
  note("parallel_merge", a.parallel_merge, wanted.parallel_merge);
  if (a.block_types != wanted.block_types) notices << "notice: resuming with the checkpoint's block_types\n";
  if (wanted.tp_size != a.tp_size) {
    if (a.dense() || !same_function_at_every_tp_size(a))
      throw UserError(fmt::format(
          "cannot resume at tp_size={}: the checkpoint's {} were trained at tp_size={}{}", wanted.tp_size,
          a.dense() ? "dense blocks" : "blocks " + PyValue::from(a.block_types).repr(), a.tp_size,
          a.dense() ? " (a dense model is not sharded)" : ", and some of them compute a different function at another tp_size"));
    a.tp_size = wanted.tp_size;
  }
  if (a.n_head % a.tp_size != 0 || (4 * a.n_embd) % a.tp_size != 0)
    throw UserError(fmt::format("tp_size={} does not divide the checkpoint's n_head={} and 4*n_embd={}", a.tp_size,
                                a.n_head, 4 * a.n_embd));
  a.dropout = cfg.dropout;  // as nanoGPT: dropout may change on resume
  a.vocab_parallel = wanted.vocab_parallel;  // the same function on or off (SPEC §1): the config chooses
  return a;
}

// The model a run builds from another checkpoint's weights (init_from='PATH.pt'): the checkpoint's
// sizes (n_layer, n_head, n_embd, bias, vocab_size; block_size at most its own), the config's
// model_type, tp_size, block_types (None: all the baseline type), parallel_merge, vocab_parallel and
// dropout, checked as a config is. Says what it took from where and what the conversion changes.
ModelArgs converted_run_args(const Checkpoint& ckpt, const TrainConfig& cfg, std::ostream& notices) {
  ModelArgs a = ckpt.model_args;
  if (cfg.block_size > a.block_size)
    throw UserError(fmt::format("block_size={} is more than {}'s block_size {}: it must be at most that", cfg.block_size,
                                cfg.init_from, a.block_size));
  const ModelArgs wanted = model_args_from(validated_with_sizes(cfg, a, known_block_types(), ""), a.vocab_size);
  a.model_type = wanted.model_type;
  a.tp_size = wanted.tp_size;
  a.block_types = wanted.block_types;
  a.parallel_merge = wanted.parallel_merge;
  a.vocab_parallel = wanted.vocab_parallel;
  a.dropout = cfg.dropout;
  a.block_size = cfg.block_size;  // smaller: wpe cropped, as nanoGPT's crop_block_size
  notices << fmt::format("initializing from the weights of {} (iter {}): n_layer={}, n_head={}, n_embd={}, bias={}, "
                         "vocab_size={}, block_size={}; a fresh optimizer at iter 0 (the config's n_layer, n_head, "
                         "n_embd and bias are not used)\n",
                         cfg.init_from, ckpt.iter_num, a.n_layer, a.n_head, a.n_embd, a.bias ? "True" : "False",
                         a.vocab_size, a.block_size);
  const std::string what = describe_conversion(ckpt.model_args, a);
  if (!what.empty()) notices << "notice: " << what << "\n";
  return a;
}

// Sums every gradient over the data-parallel replicas in one coalesced all-reduce. Each replica's
// loss is already divided by the global number of micro-steps, so the sum is the average.
void all_reduce_data_parallel_grads(const std::vector<ParamSlot>& slots, Collectives& dp, TensorParallelGroup& group) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (auto& s : slots) {
    if (!s.param.grad().defined()) s.param.mutable_grad() = torch::zeros_like(s.param);
    parts.push_back(s.param.grad().reshape(-1));
  }
  auto flat = torch::cat(parts);
  const auto t0 = Clock::now();
  dp.all_reduce_sum_(flat, comm_kind_name(CommKind::DataParallelGrad));
  group.tally().record(CommKind::DataParallelGrad, flat.numel() * flat.element_size(), seconds_since(t0));
  int64_t offset = 0;
  for (auto& s : slots) {
    s.param.mutable_grad().copy_(flat.narrow(0, offset, s.param.numel()).view_as(s.param));
    offset += s.param.numel();
  }
}

// The log is flushed at every line, and the flush checked: a log redirected to a file loses no
// line when the run stops, and a full disk stops the run with an error instead of going unnoticed.
void flush_log(std::ostream& out) { flush_checked(out, "the training log (stdout)"); }

}  // namespace

torch::Tensor OptimizerStep::operator()(int64_t iter, double lr, int64_t first_micro, int64_t micro_count,
                                       const std::function<Batch(int64_t micro)>& batch_for) {
  // The scopes name the step's phases in LibTorch's profiler (bench/train_step --profile); they
  // cost nothing while no profiler listens.
  torch::Tensor loss_sum;
  for (int64_t micro = first_micro; micro < first_micro + micro_count; ++micro) {
    model->set_dropout_step(cfg.seed, iter, micro);  // masks keyed by (seed, iter, micro): independent of W
    const Batch batch = batch_for(micro);
    torch::Tensor loss;
    {
      RECORD_USER_SCOPE("dgpt::forward");
      AutocastScope autocast(precision);  // the forward pass only, as torch.autocast asks
      loss = model->forward(batch.x, batch.y).loss / double(cfg.gradient_accumulation_steps);
    }
    {
      RECORD_USER_SCOPE("dgpt::backward");
      (scaler.enabled() ? loss * scaler.scale() : loss).backward();
    }
    loss_sum = loss_sum.defined() ? loss_sum + loss.detach() : loss.detach();
  }
  RECORD_USER_SCOPE("dgpt::optimizer");
  model->sync_replicated_grads();
  if (data_parallel) {
    all_reduce_data_parallel_grads(optimizer.slots(), *data_parallel, model->group());
    loss_sum = loss_sum.reshape({1});
    const auto t0 = Clock::now();
    data_parallel->all_reduce_sum_(loss_sum, comm_kind_name(CommKind::LossAverage));
    model->group().tally().record(CommKind::LossAverage, loss_sum.numel() * loss_sum.element_size(), seconds_since(t0));
  }
  optimizer.pack_grads();  // one flat gradient buffer: the norm, the clip and the update in a few passes
  if (scaler.enabled()) {
    // The overflow check reads the global norm back: float16 steps synchronise the host, as
    // GradScaler's do. Every rank sees the same norm, so every rank skips the same steps.
    scaler.unscale(optimizer.slots());
    const auto norm = cfg.grad_clip > 0 ? optimizer.clip_grad_norm(model->group(), cfg.grad_clip)
                                        : optimizer.global_grad_norm(model->group());
    if (scaler.update(norm.item<double>())) optimizer.step(lr);
  } else {
    if (cfg.grad_clip > 0) optimizer.clip_grad_norm(model->group(), cfg.grad_clip);
    optimizer.step(lr);
  }
  optimizer.zero_grad();
  return loss_sum;
}

double learning_rate_at(const TrainConfig& cfg, int64_t it) {
  if (!cfg.decay_lr) return cfg.learning_rate;
  if (it < cfg.warmup_iters) return cfg.learning_rate * double(it + 1) / double(cfg.warmup_iters + 1);
  if (it > cfg.lr_decay_iters || cfg.lr_decay_iters <= cfg.warmup_iters) return cfg.min_lr;
  const double ratio = double(it - cfg.warmup_iters) / double(cfg.lr_decay_iters - cfg.warmup_iters);
  const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
  return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr);
}

void train(const TrainConfig& cfg, std::ostream& main_out, std::ostream& main_notices) {
  const LaunchEnv launch_env = read_launch_env();
  const ProcessMesh mesh = make_process_mesh(cfg, launch_env, main_notices);
  RankStreams streams(mesh.is_main(), main_out, main_notices);  // rank 0 logs, evaluates aloud and saves
  std::ostream& out = streams.out;
  std::ostream& notices = streams.notices;
  // One run per out_dir: the process that writes it (rank 0) holds its lock until it ends.
  std::optional<OutDirLock> out_dir_lock;
  if (mesh.is_main()) {
    make_dirs(cfg.out_dir);
    out_dir_lock.emplace(cfg.out_dir);
  }
  GracefulStop stop;  // SIGINT/SIGTERM stop the run at the next safe point (see stop_if_asked)
  const torch::Device device =
      device_for_rank(resolve_device(cfg.device, cfg.device_was_set, notices), cfg, launch_env);
  const Precision precision = resolve_precision(cfg.dtype, device, notices);
  const std::string data_dir = cfg.resolved_data_dir();
  const Dataset data = Dataset::open(data_dir, cfg.block_size);
  const std::string ckpt_path = cfg.out_dir + "/ckpt.pt";
  torch::manual_seed(uint64_t(cfg.seed));

  // Model and optimizer, fresh or from the checkpoint.
  Checkpoint resumed;
  ModelArgs args;
  std::optional<PretrainedGpt2> gpt2;  // init_from='gpt2*': OpenAI's weights, a fresh optimizer, iter 0 (as nanoGPT)
  if (cfg.init_from == "resume") {
    out << "resuming training from " << cfg.out_dir << "\n";
    resumed = load_checkpoint(ckpt_path);
    for (const auto& line : resumed.notices) notices << "notice: " << line << "\n";
    if (const auto& adamw = resumed.nanogpt_adamw;
        adamw && (adamw->weight_decay != cfg.weight_decay || adamw->beta1 != cfg.beta1 || adamw->beta2 != cfg.beta2))
      notices << fmt::format("notice: the nanoGPT checkpoint's AdamW has weight_decay={:g}, betas=({:g}, {:g}), which "
                             "nanoGPT's resume would restore; this run takes the config's weight_decay={:g}, "
                             "beta1={:g}, beta2={:g}\n",
                             adamw->weight_decay, adamw->beta1, adamw->beta2, cfg.weight_decay, cfg.beta1, cfg.beta2);
    check_model_vocabulary(resumed.model_args.vocab_size, data_dir, "checkpoint " + ckpt_path);
    args = resumed_model_args(resumed, cfg, notices);
  } else if (is_checkpoint_path(cfg.init_from)) {
    resumed = load_checkpoint(cfg.init_from);
    for (const auto& line : resumed.notices) notices << "notice: " << line << "\n";
    check_model_vocabulary(resumed.model_args.vocab_size, data_dir, "checkpoint " + cfg.init_from);
    args = converted_run_args(resumed, cfg, notices);
    resumed.model = convert_weights(resumed.model, resumed.model_args, args);
  } else if (is_gpt2_model_name(cfg.init_from)) {
    gpt2 = load_pretrained_gpt2(cfg.init_from, cfg.pretrained_dir, notices);
    args = pretrained_run_args(*gpt2, cfg, notices);
    check_model_vocabulary(args.vocab_size, data_dir, fmt::format("init_from='{}' ({})", cfg.init_from, gpt2->dir));
  } else {
    args = model_args_from(cfg, dataset_vocab_size(data_dir));
  }
  // GPT-2's own 50257 rows on a GPT-2 dataset (nanoGPT's padded 50304): every id must be a row.
  if (args.vocab_size < data.vocab_size)
    for (TokenFile* f : {data.train.get(), data.val.get()})
      f->set_vocab_size(args.vocab_size, fmt::format("the model's vocabulary of {}", args.vocab_size));
  const auto group = tensor_parallel_group(args, cfg, mesh);
  GPT model(args, group);
  // In the parameters' dtype before the weights come in: a float64 checkpoint resumes exactly.
  model->to(device, precision.param_dtype);
  model->load_dense_state(cfg.init_from == "resume" || is_checkpoint_path(cfg.init_from) ? resumed.model
                          : gpt2 ? pretrained_weights_for(*gpt2, args)
                                 : init_dense_weights(args, cfg.seed));
  gpt2.reset();  // unmaps the file
  model->train();
  AdamW optimizer(model->param_slots(), cfg.weight_decay, cfg.beta1, cfg.beta2);
  LossScaler scaler(precision.loss_scaling());
  OptimizerStep optimizer_step{model, optimizer, cfg, precision, scaler, mesh.dp > 1 ? mesh.dp_group.get() : nullptr};
  int64_t iter_num = 0;
  double best_val_loss = 1e9;
  if (cfg.init_from == "resume") {
    optimizer.load_dense_state(resumed.optimizer, args.tp_size, group->first_shard(), group->local_shards());
    iter_num = resumed.iter_num;
    best_val_loss = resumed.best_val_loss;
    if (resumed.rng_state.defined()) {
      auto gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(resumed.rng_state);
    }
    resumed.model.clear();
    resumed.optimizer.clear();
  }

  const int64_t tokens_per_iter = cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size;
  // Data parallelism splits each optimizer step's micro-batches, the same set whatever dp is.
  const int64_t local_micro_steps = cfg.gradient_accumulation_steps / mesh.dp;
  const int64_t first_micro = mesh.dp_rank * local_micro_steps;
  const auto plan =
      plan_communications(args, cfg.batch_size, cfg.gradient_accumulation_steps,
                          cfg.grad_clip > 0 || precision.loss_scaling(), precision.activation_elem_bytes(),
                          precision.param_elem_bytes());
  out << "tokens per iteration will be: " << tokens_per_iter << "\n";
  out << "precision: " << precision.describe() << " on " << device.str()
      << (device.is_cpu() ? fmt::format(", {} thread{}", at::get_num_threads(), at::get_num_threads() == 1 ? "" : "s")
                          : "")
      << "\n";
  out << fmt::format("number of parameters: {:.2f}M ({}, tp_size {}, {} shard(s) per process)\n",
                     double(model->num_params()) / 1e6, args.model_type, args.tp_size, group->local_shards());
  out << fmt::format("num decayed parameter tensors: {}, with {} parameters\n", optimizer.decayed_tensors(),
                     optimizer.decayed_numel());
  out << fmt::format("communication per step (SPEC §3): {} forward + {} backward all-reduces per micro-step x {}, "
                     "{} other collectives, {} in all\n",
                     plan.forward_allreduce, plan.backward_allreduce, plan.micro_steps,
                     plan.collectives_per_step() - plan.micro_steps * (plan.forward_allreduce + plan.backward_allreduce),
                     human_bytes(double(plan.bytes_per_step())));  // "other" includes vocab_parallel's
  flush_log(out);

  LineFile metrics;
  if (mesh.is_main()) metrics.open(cfg.out_dir + "/metrics.jsonl", /*append=*/cfg.init_from == "resume");
  auto emit = [&](const nlohmann::json& event) {
    if (mesh.is_main()) metrics.write_line(event.dump());
  };
  const bool progress = mesh.is_main() && ::isatty(STDOUT_FILENO);
  auto clear_progress = [&] {
    if (progress) out << "\r\033[K";
  };
  // A safe point: between steps, with every file whole (metrics and log lines are written whole,
  // checkpoints renamed into place). A stop requested by a signal ends the run here.
  int64_t ckpt_iter = cfg.init_from == "resume" ? iter_num : -1;  // what ckpt_path holds
  auto stop_if_asked = [&] {
    const int sig = stop.requested();
    if (!sig) return;
    clear_progress();
    out << fmt::format("interrupted by {} at iter {}: stopped cleanly, {}\n", signal_name(sig), iter_num,
                       ckpt_iter >= 0 ? fmt::format("{} holds iter {}", ckpt_path, ckpt_iter)
                                      : std::string("no checkpoint saved"));
    flush_log(out);
    metrics.close();
    throw Interrupted(sig);
  };

  const auto run_start = Clock::now();
  const int64_t first_iter = iter_num;
  auto t0 = Clock::now();
  int64_t timed_iters = 0;  // iterations since t0: the log line reports their mean time
  while (true) {
    stop_if_asked();
    const double lr = learning_rate_at(cfg, iter_num);

    if (iter_num % cfg.eval_interval == 0 || cfg.eval_only) {
      const auto [train_loss, val_loss] = estimate_loss(model, data, cfg, iter_num, device, precision);
      clear_progress();
      out << fmt::format("step {}: train loss {:.4f}, val loss {:.4f}\n", iter_num, train_loss, val_loss);
      emit({{"event", "eval"}, {"iter", iter_num}, {"train_loss", train_loss}, {"val_loss", val_loss}, {"lr", lr}});
      flush_log(out);
      auto save = [&](const std::string& path, double best) {
        Checkpoint ckpt;  // every rank gathers its TP group's shards; rank 0 writes
        ckpt.model_args = args;
        ckpt.model = model->dense_state();
        ckpt.optimizer = optimizer.dense_state(*group);
        ckpt.iter_num = iter_num;
        ckpt.best_val_loss = best;
        ckpt.config = config_items(cfg);
        ckpt.seed = cfg.seed;
        ckpt.rng_state = at::detail::getDefaultCPUGenerator().get_state();
        if (mesh.is_main()) save_checkpoint(ckpt, path);
      };
      if (iter_num == 0 && cfg.save_initial_weights && cfg.init_from != "resume") {
        out << "saving the initial weights to " << cfg.out_dir << "/init.pt\n";
        flush_log(out);
        save(cfg.out_dir + "/init.pt", best_val_loss);
      }
      if (val_loss < best_val_loss || cfg.always_save_checkpoint) {
        best_val_loss = val_loss;
        if (iter_num > 0) {
          out << "saving checkpoint to " << cfg.out_dir << "\n";
          flush_log(out);
          save(ckpt_path, best_val_loss);
          ckpt_iter = iter_num;
        }
      }
      t0 = Clock::now();  // evaluation time is not iteration time
      timed_iters = 0;
      stop_if_asked();
    }
    if (cfg.eval_only) break;

    const CommTally before = group->tally();
    auto batch_for = [&](int64_t micro) {
      return sample_batch(*data.train, cfg.batch_size, cfg.block_size,
                          mix_seed({uint64_t(cfg.seed), kTrainBatch, uint64_t(iter_num), uint64_t(micro)}), device);
    };
    const torch::Tensor loss_sum = optimizer_step(iter_num, lr, first_micro, local_micro_steps, batch_for);
    const CommTally step = group->tally() - before;
    timed_iters += 1;

    // The loss is read back (a host synchronisation on a GPU) only when it is logged, as nanoGPT does.
    if (iter_num % cfg.log_interval == 0) {
      const double loss = loss_sum.item<double>();
      const double dt = seconds_since(t0) / double(timed_iters);
      if (!std::isfinite(loss))
        throw UserError(fmt::format("loss is {} at iter {}: training diverged (lower learning_rate?)", loss, iter_num));
      const double tokens_per_s = double(tokens_per_iter) / dt;
      const int64_t fwd = step.count_of(CommKind::ForwardAllReduce), bwd = step.count_of(CommKind::BackwardAllReduce);
      clear_progress();
      // Real runs: the time blocked in collectives, and for the asynchronous ones (ladder's g) the
      // compute that ran while they were in flight (what they could hide).
      std::string comm_time =
          cfg.backend == "sim" ? "" : fmt::format(" in {:.2f}ms", step.total_seconds() * 1e3);
      if (cfg.backend != "sim" && step.total_overlapped() > 0)
        comm_time += fmt::format(" ({} overlapped, in flight during {:.2f}ms of compute)", step.total_overlapped(),
                                 step.total_overlap_seconds() * 1e3);
      out << fmt::format("iter {}: loss {:.4f}, lr {:.3e}, time {:.2f}ms, {:.0f} tok/s, comms {} fwd + {} bwd + {} other "
                         "collectives, {}/step{}",
                         iter_num, loss, lr, dt * 1e3, tokens_per_s, fwd, bwd, step.total_count() - fwd - bwd,
                         human_bytes(double(step.total_bytes())), comm_time)
          << (scaler.enabled() ? fmt::format(", loss scale {:g} ({} steps skipped)\n", scaler.scale(),
                                             scaler.skipped_steps())
                               : "\n");
      nlohmann::json event{{"event", "train"}, {"iter", iter_num}, {"loss", loss}, {"lr", lr}, {"ms", dt * 1e3},
                           {"tokens_per_s", tokens_per_s}, {"collectives", step.total_count()},
                           {"comm_bytes", step.total_bytes()}};
      event["comm_ms"] = step.total_seconds() * 1e3;
      if (scaler.enabled()) {
        event["loss_scale"] = scaler.scale();
        event["skipped_steps"] = scaler.skipped_steps();
      }
      for (int k = 0; k < kCommKinds; ++k) {
        const std::string kind = comm_kind_name(CommKind(k));
        event[kind] = step.count[size_t(k)];
        event[kind + "_bytes"] = step.bytes[size_t(k)];
        event[kind + "_ms"] = step.seconds[size_t(k)] * 1e3;
        if (step.overlapped[size_t(k)] > 0) {  // asynchronous ones: of the count, and their in-flight time
          event[kind + "_overlapped"] = step.overlapped[size_t(k)];
          event[kind + "_overlap_ms"] = step.overlap_seconds[size_t(k)] * 1e3;
        }
      }
      event["comm_overlap_ms"] = step.total_overlap_seconds() * 1e3;
      emit(event);
      flush_log(out);
      t0 = Clock::now();
      timed_iters = 0;
    }
    iter_num += 1;
    if (progress) {
      const double elapsed = seconds_since(run_start);
      const double done = double(iter_num - first_iter), left = double(cfg.max_iters + 1 - iter_num);
      out << fmt::format("\r\033[K[{}/{}] {:.0f}% ETA {}", iter_num, cfg.max_iters + 1,
                         100.0 * double(iter_num) / double(cfg.max_iters + 1), human_duration(elapsed / done * left))
          << std::flush;
    }
    if (iter_num > cfg.max_iters) break;
  }
  clear_progress();
  out << fmt::format("done: {} iterations, best val loss {:.4f}, {} in all\n", iter_num - first_iter, best_val_loss,
                     human_duration(seconds_since(run_start)));
  flush_log(out);
  metrics.close();
}

}  // namespace dgpt
