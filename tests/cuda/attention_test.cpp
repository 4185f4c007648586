// Prefill (flash) and decode (split KV) attention against cpu::ref::attention.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "kernels/cpu/reference.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using test::download;
using test::mismatch;
using test::poisoned;
using test::upload;

struct PrefillCase {
  int64_t n_seqs, start, n_new, n_heads, head_dim;
  bool padded;
  bool aligned = false;  // rows in multiples of 8 (head_dim 64 / 128): the tensor-core kernel
};

class Prefill : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(Prefill, MatchesReference) {
  const auto c = GetParam();
  auto gen = test::rng();
  // An odd row stride (heads must use ld, not width) takes the CUDA-core kernel.
  const int64_t ld = c.n_heads * c.head_dim + (c.aligned ? 8 : 3);
  const int64_t total = c.start + c.n_new;
  const int64_t q_stride = c.n_new * ld, kv_stride = total * ld;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const auto q =
      test::round_f16(test::random_floats(gen, c.n_seqs * q_stride, -scale * 3, scale * 3));
  const auto k = test::round_f16(test::random_floats(gen, c.n_seqs * kv_stride, -2.0f, 2.0f));
  const auto v = test::round_f16(test::random_floats(gen, c.n_seqs * kv_stride));
  std::vector<int32_t> key_begin(c.n_seqs, 0);
  if (c.padded) {
    for (auto& b : key_begin) b = static_cast<int32_t>(gen() % std::min<int64_t>(total, 40));
  }
  // Reference per sequence over its unpadded suffix; padded queries are zeros; columns past the
  // heads are not outputs (compared as whatever the input held: poisoned on the device side,
  // so they are skipped below).
  std::vector<float> want(q.size(), 0.0f);
  for (int64_t s = 0; s < c.n_seqs; ++s) {
    const int64_t b = key_begin[s];
    const int64_t first_q = std::max<int64_t>(0, b - c.start);  // first query not in padding
    if (first_q >= c.n_new) continue;
    cpu::ref::attention(q.data() + s * q_stride + first_q * ld, ld,
                        k.data() + s * kv_stride + b * ld, v.data() + s * kv_stride + b * ld, ld,
                        want.data() + s * q_stride + first_q * ld, c.start + first_q - b,
                        c.n_new - first_q, c.n_heads, c.n_heads, c.head_dim);
  }
  auto dq = upload(test::to_f16(q)), dk = upload(test::to_f16(k)), dv = upload(test::to_f16(v));
  auto dbegin = upload(key_begin);
  auto dout = poisoned<Fp16>(q.size());
  EXPECT_EQ(prefill_on_tensor_cores(c.head_dim, ld, ld, q_stride, kv_stride, dq.data(), dk.data(),
                                    dv.data(), dout.data()),
            c.aligned);
  attention_prefill(dq.as<Fp16>(), ld, q_stride, dk.as<Fp16>(), dv.as<Fp16>(), ld, kv_stride,
                    dout.as<Fp16>(), c.start, c.n_new, c.n_seqs, c.n_heads, c.n_heads, c.head_dim,
                    c.padded ? dbegin.as<int32_t>() : nullptr, test::stream());
  auto got = test::from_f16(download<Fp16>(dout, q.size()));
  // Drop the stride padding columns, which the kernel must not touch (they stay NaN).
  std::vector<float> got_heads, want_heads;
  for (size_t i = 0; i < got.size(); ++i) {
    if (static_cast<int64_t>(i % ld) < c.n_heads * c.head_dim) {
      got_heads.push_back(got[i]);
      want_heads.push_back(want[i]);
    } else {
      EXPECT_TRUE(std::isnan(got[i])) << "wrote outside the heads at " << i;
    }
  }
  EXPECT_EQ(mismatch(got_heads, want_heads, test::kRelF16), "");
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, Prefill,
    ::testing::Values(PrefillCase{1, 0, 1, 1, 64, false}, PrefillCase{2, 0, 37, 3, 64, false},
                      PrefillCase{3, 0, 100, 2, 80, true}, PrefillCase{1, 45, 19, 4, 128, false},
                      PrefillCase{2, 7, 70, 5, 24, true}, PrefillCase{1, 0, 513, 2, 128, false},
                      PrefillCase{2, 0, 33, 1, 1, false}, PrefillCase{1, 0, 1, 1, 64, false, true},
                      PrefillCase{2, 0, 37, 3, 64, true, true},
                      PrefillCase{1, 45, 19, 4, 128, false, true},
                      PrefillCase{3, 0, 100, 2, 128, true, true},
                      PrefillCase{1, 0, 513, 2, 64, false, true},
                      PrefillCase{2, 130, 65, 2, 128, true, true}));

// Negative control: the same inputs without the causal mask must not pass.
TEST(PrefillControl, NonCausalReferenceFails) {
  auto gen = test::rng();
  const int64_t n = 40, d = 64;
  const auto q = test::round_f16(test::random_floats(gen, n * d, -0.3f, 0.3f));
  const auto k = test::round_f16(test::random_floats(gen, n * d, -2.0f, 2.0f));
  const auto v = test::round_f16(test::random_floats(gen, n * d));
  std::vector<float> full(n * d);
  for (int64_t i = 0; i < n; ++i) {  // every query sees all keys: start = n - 1 for one query
    cpu::ref::attention(q.data() + i * d, d, k.data(), v.data(), d, full.data() + i * d, n - 1, 1,
                        1, 1, d);
  }
  auto dq = upload(test::to_f16(q)), dk = upload(test::to_f16(k)), dv = upload(test::to_f16(v));
  auto dout = poisoned<Fp16>(n * d);
  attention_prefill(dq.as<Fp16>(), d, 0, dk.as<Fp16>(), dv.as<Fp16>(), d, 0, dout.as<Fp16>(), 0, n,
                    1, 1, 1, d, nullptr, test::stream());
  EXPECT_NE(mismatch(test::from_f16(download<Fp16>(dout, n * d)), full, test::kRelF16), "");
}

// The engine's packed layout: ragged sequences, each with its own start, cache slot and padding.
// kv_heads < n_heads: grouped-query attention (query head h reads key / value head h / group).
// (kv_heads, head_dim): 72 with odd strides takes the CUDA-core kernel, 128 with the engine's
// strides the tensor-core one.
class PrefillPacked : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(PrefillPacked, MatchesReferencePerSequence) {
  auto gen = test::rng();
  const auto [kv_heads, head_dim] = GetParam();
  const bool aligned = head_dim == 128;
  const int64_t n_heads = 6, width = n_heads * head_dim;
  const int64_t capacity = 64, ld_q = width + (aligned ? 0 : 3);
  const int64_t ld_kv = kv_heads * head_dim + (aligned ? 0 : 1);
  const int64_t seq_stride = capacity * ld_kv + (aligned ? 0 : 7);
  const std::vector<int32_t> row_offsets = {0, 5, 6, 46}, starts = {0, 17, 3}, slots = {2, 0, 1},
                             key_begin = {0, 4, 2};
  const int64_t n_seqs = 3, rows = row_offsets.back(), max_new = 40;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const auto q = test::round_f16(test::random_floats(gen, rows * ld_q, -scale * 3, scale * 3));
  const auto k = test::round_f16(test::random_floats(gen, 3 * seq_stride, -2.0f, 2.0f));
  const auto v = test::round_f16(test::random_floats(gen, 3 * seq_stride));
  std::vector<float> want(q.size(), 0.0f);
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t b = key_begin[s], at = slots[s] * seq_stride + b * ld_kv;
    ASSERT_LE(b, starts[s]);  // padding inside the cached prefix: every new query sees keys
    cpu::ref::attention(q.data() + row_offsets[s] * ld_q, ld_q, k.data() + at, v.data() + at, ld_kv,
                        want.data() + row_offsets[s] * ld_q, starts[s] - b,
                        row_offsets[s + 1] - row_offsets[s], n_heads, kv_heads, head_dim);
  }
  auto dq = upload(test::to_f16(q)), dk = upload(test::to_f16(k)), dv = upload(test::to_f16(v));
  auto doff = upload(row_offsets), dstart = upload(starts), dslots = upload(slots),
       dbegin = upload(key_begin);
  auto dout = poisoned<Fp16>(q.size());
  EXPECT_EQ(prefill_on_tensor_cores(head_dim, ld_q, ld_kv, 0, seq_stride, dq.data(), dk.data(),
                                    dv.data(), dout.data()),
            aligned);
  attention_prefill_packed(dq.as<Fp16>(), ld_q, doff.as<int32_t>(), dstart.as<int32_t>(),
                           dslots.as<int32_t>(), dk.as<Fp16>(), dv.as<Fp16>(), ld_kv, seq_stride,
                           dout.as<Fp16>(), n_seqs, max_new, n_heads, kv_heads, head_dim,
                           dbegin.as<int32_t>(), test::stream());
  const auto got = test::from_f16(download<Fp16>(dout, q.size()));
  std::vector<float> got_heads, want_heads;
  for (size_t i = 0; i < got.size(); ++i) {
    if (static_cast<int64_t>(i % ld_q) < width) {
      got_heads.push_back(got[i]);
      want_heads.push_back(want[i]);
    }
  }
  EXPECT_EQ(mismatch(got_heads, want_heads, test::kRelF16), "");
}

INSTANTIATE_TEST_SUITE_P(
    Heads, PrefillPacked,
    ::testing::Values(std::pair<int64_t, int64_t>{6, 72}, std::pair<int64_t, int64_t>{2, 72},
                      std::pair<int64_t, int64_t>{1, 72}, std::pair<int64_t, int64_t>{6, 128},
                      std::pair<int64_t, int64_t>{2, 128}, std::pair<int64_t, int64_t>{1, 128}));

struct DecodeCase {
  int64_t n_seqs, n_heads, head_dim, max_len;
  bool padded;
  bool aligned;  // 16-byte aligned rows take the vectorised kernel, odd strides the scalar one
  int64_t kv_heads = 0;  // grouped-query attention when below n_heads (0: n_heads)
};

class Decode : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(Decode, MatchesReferenceWithPerSequenceLengths) {
  const auto c = GetParam();
  auto gen = test::rng();
  const int64_t kv_heads = c.kv_heads > 0 ? c.kv_heads : c.n_heads;
  const int64_t width = c.n_heads * c.head_dim;
  const int64_t ld_kv = kv_heads * c.head_dim + (c.aligned ? 8 : 5);
  const int64_t ld_q = width + 1, seq_stride = c.max_len * ld_kv + (c.aligned ? 16 : 11);
  std::vector<int32_t> lengths(c.n_seqs), key_begin(c.n_seqs, 0);
  for (int64_t s = 0; s < c.n_seqs; ++s) {
    lengths[s] = static_cast<int32_t>(1 + gen() % c.max_len);
    if (c.padded) key_begin[s] = static_cast<int32_t>(gen() % lengths[s]);
  }
  lengths[0] = static_cast<int32_t>(c.max_len);  // the longest context is exercised
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const auto q = test::round_f16(test::random_floats(gen, c.n_seqs * ld_q, -scale * 3, scale * 3));
  const auto k = test::round_f16(test::random_floats(gen, c.n_seqs * seq_stride, -2.0f, 2.0f));
  const auto v = test::round_f16(test::random_floats(gen, c.n_seqs * seq_stride));
  // Padded cases also read the cache slots in reverse order.
  std::vector<int32_t> slots(c.n_seqs);
  for (int64_t s = 0; s < c.n_seqs; ++s) {
    slots[s] = static_cast<int32_t>(c.padded ? c.n_seqs - 1 - s : s);
  }
  std::vector<float> want(c.n_seqs * width);
  for (int64_t s = 0; s < c.n_seqs; ++s) {
    const int64_t b = key_begin[s], len = lengths[s], at = slots[s] * seq_stride + b * ld_kv;
    cpu::ref::attention(q.data() + s * ld_q, ld_q, k.data() + at, v.data() + at, ld_kv,
                        want.data() + s * width, len - b - 1, 1, c.n_heads, kv_heads, c.head_dim);
  }
  auto dq = upload(test::to_f16(q)), dk = upload(test::to_f16(k)), dv = upload(test::to_f16(v));
  auto dlen = upload(lengths), dbegin = upload(key_begin), dslots = upload(slots);
  const size_t ws_bytes =
      attention_decode_workspace_bytes(c.n_seqs, c.n_heads, c.head_dim, c.max_len);
  DeviceBuffer ws(ws_bytes);
  auto dout = poisoned<Fp16>(c.n_seqs * width);
  attention_decode(dq.as<Fp16>(), ld_q, dk.as<Fp16>(), dv.as<Fp16>(), ld_kv, seq_stride,
                   c.padded ? dslots.as<int32_t>() : nullptr, dlen.as<int32_t>(),
                   c.padded ? dbegin.as<int32_t>() : nullptr, c.max_len, dout.as<Fp16>(), width,
                   c.n_seqs, c.n_heads, kv_heads, c.head_dim, ws.data(), ws_bytes, test::stream());
  EXPECT_EQ(mismatch(test::from_f16(download<Fp16>(dout, c.n_seqs * width)), want, test::kRelF16),
            "");
  EXPECT_ANY_THROW(attention_decode(dq.as<Fp16>(), ld_q, dk.as<Fp16>(), dv.as<Fp16>(), ld_kv,
                                    seq_stride, nullptr, dlen.as<int32_t>(), nullptr, c.max_len,
                                    dout.as<Fp16>(), width, c.n_seqs, c.n_heads, kv_heads,
                                    c.head_dim, ws.data(), ws_bytes - 1, test::stream()));
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, Decode,
    ::testing::Values(
        DecodeCase{1, 1, 64, 1, false, false}, DecodeCase{5, 3, 64, 300, false, false},
        DecodeCase{7, 2, 80, 1000, true, false}, DecodeCase{3, 4, 128, 4099, true, false},
        DecodeCase{2, 2, 24, 257, false, false}, DecodeCase{1, 1, 64, 1, false, true},
        DecodeCase{5, 3, 64, 300, false, true}, DecodeCase{7, 2, 80, 1000, true, true},
        DecodeCase{3, 4, 128, 4099, true, true}, DecodeCase{2, 2, 24, 257, true, true},
        DecodeCase{4, 3, 8, 77, false, true}, DecodeCase{1, 2, 128, 20000, false, true},
        DecodeCase{3, 8, 64, 300, true, true, 2}, DecodeCase{2, 6, 24, 257, false, false, 3},
        DecodeCase{4, 4, 128, 1000, false, true, 1}));

}  // namespace
}  // namespace strata::cuda
