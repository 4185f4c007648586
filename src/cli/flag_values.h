// Numeric flag values, parsed in one place. Every numeric flag is declared as a string
// (number_value) and read through these, so "--gen-len 2.5", "--seed -1" or "--percent nan" get
// one line naming the flag and the value rather than cxxopts' "failed to parse".
#pragma once

#include <cstdint>
#include <cxxopts.hpp>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace strata::cli {

// The largest --gpu-batch-size / --num-gpu-batches taken; what fits is the memory plan's call.
inline constexpr int64_t kMaxBatchFlag = int64_t{1} << 31;
// The longest --prompt-len / --gen-len taken; max_position_embeddings bounds them further.
inline constexpr int64_t kMaxLengthFlag = int64_t{1} << 24;

// The declaration of a numeric flag (its text is parsed by the functions below).
std::shared_ptr<cxxopts::Value> number_value();
std::shared_ptr<cxxopts::Value> number_value(const std::string& default_text);

// The whole of `text` as a base-10 integer in [min, max]; otherwise an input error naming
// `flag` and the value.
int64_t parse_int(const std::string& flag, const std::string& text, int64_t min,
                  int64_t max = std::numeric_limits<int64_t>::max());
// The whole of `text` as an unsigned base-10 integer (seeds: 0 .. 2^64 - 1).
uint64_t parse_uint64(const std::string& flag, const std::string& text);
// The whole of `text` as a finite number in [min, max] (in (min, max] when min_exclusive).
double parse_real(const std::string& flag, const std::string& text, double min, double max,
                  bool min_exclusive = false);

// The same, reading flag `name` (its default when not given).
int64_t int_flag(const cxxopts::ParseResult& flags, const std::string& name, int64_t min,
                 int64_t max = std::numeric_limits<int64_t>::max());
uint64_t uint64_flag(const cxxopts::ParseResult& flags, const std::string& name);
double real_flag(const cxxopts::ParseResult& flags, const std::string& name, double min, double max,
                 bool min_exclusive = false);
// A list written "a,b,c" (parse_flags joins "--percent 20 80 0 100 100 0" so), each in
// [min, max].
std::vector<double> real_list_flag(const cxxopts::ParseResult& flags, const std::string& name,
                                   double min, double max);

// --gpu-mem / --cpu-mem / --disk-mem: a size above zero (0 is refused: it would read as "no
// cap", which the flag's absence already says).
uint64_t cap_flag(const cxxopts::ParseResult& flags, const std::string& name);

// Whether `arg` can be a flag's value rather than a flag: "-10" and "nan" can, "--seed" and
// "-h" cannot.
bool looks_like_value(const std::string& arg);

}  // namespace strata::cli
