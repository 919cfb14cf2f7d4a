#include "model/cpu_gemm.h"

#include "base/torch_compat.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <functional>
#include <limits>

namespace dgpt {

namespace {

// Fortran BLAS, as LibTorch calls it: libtorch_cpu links libblas.so.3 (OpenBLAS here), so the
// process has it loaded and it is looked up rather than linked. Where a LibTorch build keeps its
// BLAS to itself, nothing is found and ATen's ops run instead.
using sgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                         const int*, const float*, const int*, const float*, float*, const int*);
using dgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
                         const int*, const double*, const int*, const double*, double*, const int*);

// oneDNN's row-major sgemm (its C API, dnnl.h), where the process has oneDNN loaded with its
// symbols visible: Debian's libtorch_cpu links libdnnl.so.2. Its JIT kernels ran this model's
// float GEMMs single-threaded 5-15% faster than OpenBLAS 0.3.21 here ([768,128] x [128,512], a
// Linear's two backward products on a thread each: 215 vs 180 GFLOP/s on two Zen 4 cores), and
// pack less for the small ones. The status it returns is checked: anything but success falls back.
using dnnl_sgemm_t = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                             int64_t, float, float*, int64_t);

struct Blas {
  sgemm_t sgemm = nullptr;
  dgemm_t dgemm = nullptr;
  dnnl_sgemm_t dnnl_sgemm = nullptr;
  static const Blas& get() {
    static const Blas blas = [] {
      Blas b;
      b.sgemm = reinterpret_cast<sgemm_t>(dlsym(RTLD_DEFAULT, "sgemm_"));
      b.dgemm = reinterpret_cast<dgemm_t>(dlsym(RTLD_DEFAULT, "dgemm_"));
      const char* v = std::getenv("DGPT_CPU_SGEMM");  // "blas": the Fortran BLAS's even where oneDNN is there
      if (!(v != nullptr && std::string(v) == "blas"))
        b.dnnl_sgemm = reinterpret_cast<dnnl_sgemm_t>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
      return b;
    }();
    return blas;
  }
};

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

// A matrix operand as BLAS takes it: a 3-D tensor [L, R, C] whose items are either row-major
// (unit stride in C) or column-major (unit stride in R, i.e. the transpose lies row-major);
// anything else is made contiguous first.
struct Operand {
  torch::Tensor t;
  bool trans = false;
  int64_t ld = 1;
};

Operand operand(const torch::Tensor& t) {
  const int64_t R = t.size(1), C = t.size(2), s1 = t.stride(1), s2 = t.stride(2);
  if (s2 == 1 && s1 >= std::max<int64_t>(1, C)) return {t, false, s1};
  if (s1 == 1 && s2 >= std::max<int64_t>(1, R)) return {t, true, s2};
  return {t.contiguous(), false, std::max<int64_t>(1, C)};
}

bool blas_dtype(const torch::Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble);
}

// C[l] = op(A[l]) @ op(B[l]) for one item l: A logically [L, M, K], B [L, K, N], C [L, M, N] with
// row-major items (contiguous, or interleaved: item l at l*N, rows L*N apart).
template <typename T>
void item_product(const Operand& a, const Operand& b, torch::Tensor& c, int64_t l) {
  const int m = int(c.size(1)), n = int(c.size(2)), k = int(a.t.size(2));  // logical sizes, whatever the memory order
  blas_gemm(a.trans, b.trans, m, n, k, T(1), a.t.data_ptr<T>() + l * a.t.stride(0), int(a.ld),
            b.t.data_ptr<T>() + l * b.t.stride(0), int(b.ld), T(0), c.data_ptr<T>() + l * c.stride(0),
            int(c.stride(1)));
}

// `count` independent jobs, one thread each at a time (BLAS is single-threaded inside the region).
void run_jobs(int64_t count, const std::function<void(int64_t)>& job) {
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) job(i);
  });
}

bool fits_int(std::initializer_list<int64_t> values) {
  return std::all_of(values.begin(), values.end(), [](int64_t v) { return v < kIntMax; });
}

// The products {A_j @ B_j} (each [L_j, M, K] @ [L_j, K, N]) into new [L_j, M, N] tensors (contiguous,
// or with `interleaved` memory [M, L_j, N]), every item of every product a job of its own.
std::vector<torch::Tensor> products(const std::vector<std::pair<torch::Tensor, torch::Tensor>>& pairs,
                                    bool interleaved = false) {
  std::vector<Operand> as, bs;
  std::vector<torch::Tensor> out;
  std::vector<std::pair<size_t, int64_t>> jobs;  // (product, item)
  for (size_t j = 0; j < pairs.size(); ++j) {
    const auto& [a, b] = pairs[j];
    as.push_back(operand(a));
    bs.push_back(operand(b));
    out.push_back(interleaved ? torch::empty({a.size(1), a.size(0), b.size(2)}, a.options()).transpose(0, 1)
                              : torch::empty({a.size(0), a.size(1), b.size(2)}, a.options()));
    for (int64_t l = 0; l < a.size(0); ++l) jobs.push_back({j, l});
  }
  const bool is_float = pairs.front().first.scalar_type() == torch::kFloat;
  run_jobs(int64_t(jobs.size()), [&](int64_t i) {
    const auto [j, l] = jobs[size_t(i)];
    if (is_float)
      item_product<float>(as[j], bs[j], out[j], l);
    else
      item_product<double>(as[j], bs[j], out[j], l);
  });
  return out;
}

// Not under autocast: there ATen's matmuls run in the lower dtype, and so must these.
bool per_thread_products_apply(const torch::Tensor& a, const torch::Tensor& b, int64_t jobs) {
  return cpu_kernels_enabled() && cpu_blas_available() && blas_dtype(a) && !compat::autocast_enabled(torch::kCPU) && b.scalar_type() == a.scalar_type() && b.device() == a.device() &&
         jobs >= at::get_num_threads() &&
         fits_int({a.size(1), a.size(2), b.size(2), a.stride(1), a.stride(2), b.stride(1), b.stride(2)});
}

struct BatchedMatmul : torch::autograd::Function<BatchedMatmul> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b,
                               bool interleaved) {
    ctx->save_for_backward({a, b});
    RECORD_FUNCTION("dgpt::gemm", std::vector<c10::IValue>());
    return products({{a, b}}, interleaved)[0];
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &a = saved[0], &b = saved[1], &g = grads[0];
    // dA = g @ B^T, dB = A^T @ g: 2L independent products
    std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs;
    if (ctx->needs_input_grad(0)) pairs.push_back({g, b.transpose(1, 2)});
    if (ctx->needs_input_grad(1)) pairs.push_back({a.transpose(1, 2), g});
    if (pairs.empty()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    auto out = products(pairs);
    torch::Tensor da, db;
    size_t next = 0;
    if (ctx->needs_input_grad(0)) da = out[next++];
    if (ctx->needs_input_grad(1)) db = out[next++];
    return {da, db, torch::Tensor()};
  }
};

// dx = g @ w and dw = g^T @ x of x [M, K] @ w [N, K]^T, on a thread each.
std::pair<torch::Tensor, torch::Tensor> linear_grads(torch::autograd::AutogradContext* ctx, const torch::Tensor& g) {
  const auto saved = ctx->get_saved_variables();
  const auto &x = saved[0], &w = saved[1];  // g: [M, N]
  const bool dx_needed = ctx->needs_input_grad(0), dw_needed = ctx->needs_input_grad(1);
  if (dx_needed && dw_needed && per_thread_products_apply(g.unsqueeze(0), w.unsqueeze(0), 2)) {
    auto out = products({{g.unsqueeze(0), w.unsqueeze(0)}, {g.t().unsqueeze(0), x.unsqueeze(0)}});
    return {out[0][0], out[1][0]};
  }
  return {dx_needed ? at::mm(g, w) : torch::Tensor(), dw_needed ? at::mm(g.t(), x) : torch::Tensor()};
}

// y [M, N] = x [M, K] @ w [N, K]^T (+ b), the rows split in one block per thread, each block one
// single-threaded GEMM (the bias written first, then added to). At these sizes BLAS's own threads
// split the work no better and cost a hand-off per call ([768,128] x [128,128]: 135 vs 190 GFLOP/s
// on two cores measured alone).
template <typename T>
void split_rows_product(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, torch::Tensor& y) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const int64_t blocks = at::get_num_threads(), rows = (M + blocks - 1) / blocks;
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T* bp = b.defined() ? b.data_ptr<T>() : nullptr;
  T* yp = y.data_ptr<T>();
  run_jobs(blocks, [&](int64_t j) {
    const int64_t r0 = j * rows, r1 = std::min(M, r0 + rows);
    if (r0 >= r1) return;
    if (bp != nullptr)
      for (int64_t r = r0; r < r1; ++r) std::copy(bp, bp + N, yp + r * N);
    blas_gemm(false, true, int(r1 - r0), int(N), int(K), T(1), xp + r0 * x.stride(0), int(x.stride(0)), wp, int(K),
              bp != nullptr ? T(1) : T(0), yp + r0 * N, int(N));
  });
}

torch::Tensor linear_forward(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  RECORD_FUNCTION("dgpt::gemm", std::vector<c10::IValue>());  // for the profiler: its BLAS calls are no ATen ops
  const int64_t M = x.size(0);
  const bool row_major = x.stride(1) == 1 && x.stride(0) >= std::max<int64_t>(1, x.size(1));
  if (M < 32 * at::get_num_threads() || !w.is_contiguous() || (b.defined() && !b.is_contiguous()) || !row_major)
    return b.defined() ? at::addmm(b, x, w.t()) : at::mm(x, w.t());
  auto y = torch::empty({M, w.size(0)}, x.options());
  if (x.scalar_type() == torch::kFloat)
    split_rows_product<float>(x, w, b, y);
  else
    split_rows_product<double>(x, w, b, y);
  return y;
}

// x [M, K] @ w [N, K]^T: the forward's rows split among the threads, the backward's two GEMMs on a
// thread each. (Two Functions, with and without the bias: LibTorch 1.13's take no undefined tensor
// as an input.)
struct PairedLinear : torch::autograd::Function<PairedLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({x, w});
    return linear_forward(x, w, {});
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto [dx, dw] = linear_grads(ctx, grads[0]);
    return {dx, dw};
  }
};

struct PairedLinearWithBias : torch::autograd::Function<PairedLinearWithBias> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    return linear_forward(x, w, b);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto [dx, dw] = linear_grads(ctx, grads[0]);
    return {dx, dw, ctx->needs_input_grad(2) ? grads[0].sum(0) : torch::Tensor()};
  }
};

}  // namespace

namespace {
std::atomic<bool>& kernels_flag() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("DGPT_CPU_KERNELS");
    return !(v != nullptr && std::string(v) == "0");
  }()};
  return on;
}
}  // namespace

bool cpu_kernels_enabled() { return kernels_flag().load(std::memory_order_relaxed); }
void set_cpu_kernels_enabled(bool on) { kernels_flag().store(on, std::memory_order_relaxed); }

bool cpu_blas_available() { return Blas::get().sgemm != nullptr && Blas::get().dgemm != nullptr; }

// Column-major BLAS sees row-major X as X^T, so C = op(A) op(B) is C^T = op(B)^T op(A)^T.
void blas_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
               float beta, float* c, int ldc) {
  const auto dnnl = Blas::get().dnnl_sgemm;
  if (dnnl != nullptr && m > 0 && n > 0 && k > 0 &&
      dnnl(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0)
    return;
  const char opb = tb ? 'T' : 'N', opa = ta ? 'T' : 'N';
  Blas::get().sgemm(&opb, &opa, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

void blas_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
               int ldb, double beta, double* c, int ldc) {
  const char opb = tb ? 'T' : 'N', opa = ta ? 'T' : 'N';
  Blas::get().dgemm(&opb, &opa, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, bool interleaved) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1),
              "batched_matmul: [L, M, K] @ [L, K, N], got ", a.sizes(), " and ", b.sizes());
  if (!per_thread_products_apply(a, b, a.size(0))) return torch::matmul(a, b);
  return BatchedMatmul::apply(a, b, interleaved);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const bool paired = at::get_num_threads() == 2 && cpu_kernels_enabled() && cpu_blas_available() && blas_dtype(x) &&
                      !compat::autocast_enabled(torch::kCPU) &&
                      w.scalar_type() == x.scalar_type() && w.device() == x.device() && x.dim() >= 1 &&
                      torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad()) &&
                      fits_int({x.numel(), w.numel()});
  if (!paired) return torch::linear(x, w, b);
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = w.size(0);
  const auto x2 = x.reshape({-1, x.size(-1)});
  return (b.defined() ? PairedLinearWithBias::apply(x2, w, b) : PairedLinear::apply(x2, w)).view(out_sizes);
}

}  // namespace dgpt
