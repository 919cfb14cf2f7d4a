// LibTorch's CPU allocator with a cache of large blocks (issue 15). A training step frees and
// allocates the same large activations, gradients and buffers every step; glibc gives blocks over
// its mmap threshold (and the top of its heap, past the trim threshold) back to the kernel, and the
// next step faults every page in again, zero-filled: at GPT-2 124M's shapes about a quarter of
// the step's CPU time was the kernel's (README "Performance notes"). Blocks of at least
// kMinCachedBytes are kept on free, by size (rounded up to 4 KiB), and handed out again; smaller
// ones go to LibTorch's default allocator. The free blocks held are bounded (a quarter of the
// machine's memory shared by the processes on it, at most 16 GiB each): past that the least
// recently freed are released first, so sizes that never recur (a growing KV cache) cannot pin
// memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dgpt {

// Makes the caching allocator LibTorch's CPU allocator, once per process; tensors allocated before
// keep their own deleter. Call before the first kernel runs (dgpt's main, the benchmarks);
// `processes` is how many dgpt processes share this machine's memory (run/run_settings.h
// local_ranks()).
void install_caching_cpu_allocator(int64_t processes = 1);

struct CpuAllocatorStats {
  int64_t cached_bytes = 0;  // free blocks held
  int64_t hits = 0;          // allocations served from the cache
  int64_t misses = 0;        // large allocations that went to the system
};
CpuAllocatorStats cpu_allocator_stats();

constexpr size_t kMinCachedBytes = size_t(256) << 10;

}  // namespace dgpt
