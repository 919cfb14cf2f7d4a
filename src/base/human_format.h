// Numbers as people read them in logs and tables.
#pragma once
#include <cstdint>
#include <string>

namespace dgpt {

std::string human_bytes(double bytes);  // "512 B", "12.35 MB" (powers of 1000)
std::string grouped(uint64_t value);    // 1234567 -> "1,234,567"
std::string human_duration(double seconds);  // "42s", "3m07s", "2h05m"; "?" when not finite or negative

}  // namespace dgpt
