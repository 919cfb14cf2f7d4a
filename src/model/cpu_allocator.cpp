#include "model/cpu_allocator.h"

#include "base/torch_compat.h"

#include <c10/core/CPUAllocator.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace dgpt {

namespace {

constexpr size_t kAlignment = 64;      // as c10's default CPU allocator (AVX-512 loads)
constexpr size_t kGranule = 4096;      // sizes are rounded up to whole pages
constexpr int64_t kMaxCachedCap = int64_t(16) << 30;

int64_t processes_sharing_memory = 1;  // set once, before the cache is first used

int64_t cache_cap() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  const int64_t quarter = pages > 0 && page > 0 ? int64_t(pages) * page / 4 : int64_t(1) << 30;
  return std::min(quarter / std::max<int64_t>(1, processes_sharing_memory), kMaxCachedCap);
}

// The free large blocks, by size, oldest free first; and the size of every live large block
// (the deleter gets only the pointer).
class BlockCache {
 public:
  static BlockCache& get() {
    static BlockCache* cache = new BlockCache();  // immortal: tensors may be freed during exit
    return *cache;
  }

  void* take(size_t size) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_by_size_.find(size);
      if (it != free_by_size_.end() && !it->second.empty()) {
        auto node = it->second.back();  // the most recently freed: warmest in the caches
        it->second.pop_back();
        void* p = node->ptr;
        lru_.erase(node);
        cached_bytes_ -= int64_t(size);
        live_[p] = size;
        ++hits_;
        return p;
      }
      ++misses_;
    }
    void* p = system_alloc(size);
    if (!p) {  // the cache may hold what the system lacks: release it and try once more
      release_all();
      p = system_alloc(size);
    }
    if (!p) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    live_[p] = size;
    return p;
  }

  // false: not one of this cache's blocks
  bool give_back(void* p) {
    std::vector<void*> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = live_.find(p);
      if (it == live_.end()) return false;
      const size_t size = it->second;
      live_.erase(it);
      if (int64_t(size) > cap_) {
        released.push_back(p);
      } else {
        while (cached_bytes_ + int64_t(size) > cap_ && !lru_.empty()) {  // least recently freed first
          auto& oldest = lru_.front();
          auto& same = free_by_size_[oldest.size];
          same.erase(std::find(same.begin(), same.end(), lru_.begin()));
          cached_bytes_ -= int64_t(oldest.size);
          released.push_back(oldest.ptr);
          lru_.pop_front();
        }
        lru_.push_back({p, size});
        free_by_size_[size].push_back(std::prev(lru_.end()));
        cached_bytes_ += int64_t(size);
      }
    }
    for (void* q : released) std::free(q);
    return true;
  }

  CpuAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_bytes_, hits_, misses_};
  }

 private:
  struct Free {
    void* ptr;
    size_t size;
  };

  static void* system_alloc(size_t size) {
    void* p = nullptr;
    return posix_memalign(&p, kAlignment, size) == 0 ? p : nullptr;
  }

  void release_all() {
    std::vector<void*> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& f : lru_) released.push_back(f.ptr);
      lru_.clear();
      free_by_size_.clear();
      cached_bytes_ = 0;
    }
    for (void* q : released) std::free(q);
  }

  std::mutex mutex_;
  std::list<Free> lru_;
  std::unordered_map<size_t, std::vector<std::list<Free>::iterator>> free_by_size_;
  std::unordered_map<void*, size_t> live_;
  int64_t cached_bytes_ = 0, hits_ = 0, misses_ = 0;
  const int64_t cap_ = cache_cap();
};

c10::DeleterFnPtr small_block_deleter = nullptr;  // the default allocator's

// raw_deallocate's deleter, for both kinds of block (context = data for both); the tensors of large
// blocks free through it too.
void free_block(void* p) {
  if (p && !BlockCache::get().give_back(p)) small_block_deleter(p);
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(c10::Allocator* fallback) : fallback_(fallback) {}

  c10::DataPtr allocate(size_t n) DGPT_ALLOCATOR_ALLOCATE_CONST override {
    if (n < kMinCachedBytes) return fallback_->allocate(n);  // its own deleter: no lock on a small free
    const size_t size = (n + kGranule - 1) / kGranule * kGranule;
    void* p = BlockCache::get().take(size);
    TORCH_CHECK(p, "DefaultCPUAllocator: not enough memory: you tried to allocate ", n, " bytes.");
    return {p, p, &free_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_block; }

  // (LibTorch >= 2.2 asks every allocator for this; earlier ones have no such virtual.)
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }

 private:
  c10::Allocator* fallback_;
};

}  // namespace

void install_caching_cpu_allocator(int64_t processes) {
  static std::once_flag once;
  std::call_once(once, [processes] {
    processes_sharing_memory = processes;
    c10::Allocator* fallback = c10::GetDefaultCPUAllocator();
    small_block_deleter = fallback->raw_deleter();
    TORCH_CHECK(small_block_deleter, "LibTorch's default CPU allocator has no raw deleter");
    static CachingCpuAllocator* allocator = new CachingCpuAllocator(fallback);
    c10::SetCPUAllocator(allocator, /*priority=*/1);
  });
}

CpuAllocatorStats cpu_allocator_stats() { return BlockCache::get().stats(); }

}  // namespace dgpt
