// Deterministic random weights for the engine (random_weights mode, the reinit
// intervention) and the model generator. Every element's value is a pure
// function of (seed, tensor name, element index) computed with integer hashing
// in tensor ops, so any rank can build exactly its own slice of a weight on its
// own device, and every TP degree and device type sees the same values.
// Internal to sweepd::engine (uses libtorch). Stateless, thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_RANDOM_INIT_H_
#define SWEEPD_WORKER_ENGINE_RANDOM_INIT_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sweepd::engine {

enum class InitStyle {
  // The model generator: matrices and embeddings N(0, initializer_range), norm
  // weights
  // 1 + 0.1·N(0,1), layer_scalar U(0.5, 1.5) — non-unit so golden tests see
  // them.
  kGenerator,
  // transformers' Gemma 4 _init_weights: matrices N(0, initializer_range),
  // RMSNorm weights 1,
  // layer_scalar 1.
  kTransformers,
};

// Standard normal values (float32) of elements [r0, r1) x [c0, c1) of a logical
// matrix with `ncols` columns, for stream `key`.
at::Tensor HashNormal(uint64_t key, int64_t ncols, int64_t r0, int64_t r1,
                      int64_t c0, int64_t c1, at::Device device);

// Uniform (0, 1) values, same indexing.
at::Tensor HashUniform(uint64_t key, int64_t ncols, int64_t r0, int64_t r1,
                       int64_t c0, int64_t c1, at::Device device);

// The slice [r0, r1) x [c0, c1) of weight `name` (canonical name without a
// model prefix, e.g. "layers.3.self_attn.q_proj.weight"; 1-D tensors use r0 =
// 0, r1 = 1 and columns) of full shape `full_shape`, as `dtype` on `device`.
at::Tensor RandomWeightSlice(const std::string& name,
                             const std::vector<int64_t>& full_shape, int64_t r0,
                             int64_t r1, int64_t c0, int64_t c1, uint64_t seed,
                             double initializer_range, InitStyle style,
                             at::Device device, at::ScalarType dtype);

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_RANDOM_INIT_H_
