#include "worker/engine/random_init.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "worker/engine/torch_compat.h"

namespace sweepd::engine {
namespace {

constexpr int64_t kMask32 = 0xffffffffLL;

// (x * c) mod 2^32 for x, c in [0, 2^32) without int64 overflow.
at::Tensor MulMod32(const at::Tensor& x, uint32_t c) {
  const int64_t lo = c & 0xffff;
  const int64_t hi = c >> 16;
  at::Tensor a = x * lo;
  at::Tensor b = at::bitwise_and(x * hi, 0xffff) * 65536;
  return at::bitwise_and(a + b, kMask32);
}

at::Tensor XorShift(const at::Tensor& x, int64_t shift) {
  return at::bitwise_xor(x, compat::FloorDiv(x, int64_t{1} << shift));
}

// murmur3 fmix32 on int64 tensors holding 32-bit values.
at::Tensor Fmix32(at::Tensor h) {
  h = XorShift(h, 16);
  h = MulMod32(h, 0x85ebca6bu);
  h = XorShift(h, 13);
  h = MulMod32(h, 0xc2b2ae35u);
  return XorShift(h, 16);
}

// 24-bit uniform in (0, 1) as float64, one stream per (key, lane).
at::Tensor UniformFromIndex(const at::Tensor& idx, uint64_t key,
                            uint32_t lane) {
  const int64_t k0 = static_cast<int64_t>(key & kMask32);
  const int64_t k1 =
      static_cast<int64_t>((key >> 32) ^ (0x9e3779b9u * (lane + 1))) & kMask32;
  at::Tensor lo = at::bitwise_and(idx, kMask32);
  at::Tensor hi = compat::FloorDiv(idx, int64_t{1} << 32);
  at::Tensor h = Fmix32(at::bitwise_xor(lo, k0));
  h = Fmix32(at::bitwise_and(at::bitwise_xor(h, k1) + hi * int64_t{0x27d4eb2f},
                             kMask32));
  at::Tensor bits = compat::FloorDiv(h, 256);  // top 24 bits
  return (bits.to(at::kDouble) + 0.5) / 16777216.0;
}

at::Tensor Indices(int64_t ncols, int64_t r0, int64_t r1, int64_t c0,
                   int64_t c1, at::Device device) {
  auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor rows = at::arange(r0, r1, opts).unsqueeze(1);
  at::Tensor cols = at::arange(c0, c1, opts).unsqueeze(0);
  return rows * ncols + cols;
}

// Computes row blocks of at most ~16M elements to bound temporaries.
template <typename F>
at::Tensor ByRowBlocks(int64_t r0, int64_t r1, int64_t width, F f) {
  const int64_t rows_per_block =
      std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(1, width));
  if (r1 - r0 <= rows_per_block) return f(r0, r1);
  std::vector<at::Tensor> parts;
  for (int64_t r = r0; r < r1; r += rows_per_block) {
    parts.push_back(f(r, std::min(r1, r + rows_per_block)));
  }
  return at::cat(parts, 0);
}

}  // namespace

at::Tensor HashNormal(uint64_t key, int64_t ncols, int64_t r0, int64_t r1,
                      int64_t c0, int64_t c1, at::Device device) {
  return ByRowBlocks(r0, r1, c1 - c0, [&](int64_t a, int64_t b) {
    at::Tensor idx = Indices(ncols, a, b, c0, c1, device);
    at::Tensor u1 = UniformFromIndex(idx, key, 0);
    at::Tensor u2 = UniformFromIndex(idx, key, 1);
    return (at::sqrt(-2.0 * at::log(u1)) * at::cos((2.0 * M_PI) * u2))
        .to(at::kFloat);
  });
}

at::Tensor HashUniform(uint64_t key, int64_t ncols, int64_t r0, int64_t r1,
                       int64_t c0, int64_t c1, at::Device device) {
  return ByRowBlocks(r0, r1, c1 - c0, [&](int64_t a, int64_t b) {
    return UniformFromIndex(Indices(ncols, a, b, c0, c1, device), key, 2)
        .to(at::kFloat);
  });
}

at::Tensor RandomWeightSlice(const std::string& name,
                             const std::vector<int64_t>& full_shape, int64_t r0,
                             int64_t r1, int64_t c0, int64_t c1, uint64_t seed,
                             double initializer_range, InitStyle style,
                             at::Device device, at::ScalarType dtype) {
  const int64_t ncols = full_shape.size() >= 2 ? full_shape[1] : full_shape[0];
  const uint64_t key = Hash64(absl::StrCat("sweepd-init/", seed, "/", name));
  std::vector<int64_t> out_shape = full_shape.size() >= 2
                                       ? std::vector<int64_t>{r1 - r0, c1 - c0}
                                       : std::vector<int64_t>{c1 - c0};
  auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor v;
  if (absl::EndsWith(name, "layer_scalar")) {
    v = style == InitStyle::kGenerator
            ? HashUniform(key, ncols, r0, r1, c0, c1, device) + 0.5
            : at::ones({r1 - r0, c1 - c0}, opts);
  } else if (absl::EndsWith(name, "norm.weight")) {
    v = style == InitStyle::kGenerator
            ? HashNormal(key, ncols, r0, r1, c0, c1, device) * 0.1 + 1.0
            : at::ones({r1 - r0, c1 - c0}, opts);
    if (style == InitStyle::kGenerator &&
        (absl::EndsWith(name, "q_norm.weight") ||
         absl::EndsWith(name, "k_norm.weight"))) {
      // Attention scaling is 1.0, so unit q/k norms give scores of std
      // sqrt(head_dim): a saturated softmax whose random models are chaotic
      // (tiny rounding differences flip which key wins). Scaling both by
      // head_dim^-1/4 gives scores of unit scale.
      v = v * std::pow(static_cast<double>(full_shape[0]), -0.25);
    }
  } else {
    v = HashNormal(key, ncols, r0, r1, c0, c1, device) * initializer_range;
  }
  return v.reshape(out_shape).to(dtype).contiguous();
}

}  // namespace sweepd::engine
