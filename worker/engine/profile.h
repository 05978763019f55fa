// Phase profile of the engine's forwards and device-memory statistics, for
// engine_bench and tuning. Plain C++ (no libtorch). When profiling is on, rank
// 0 of every forward marks phase boundaries (CUDA events on its compute stream
// on GPU builds, the host clock on CPU) and the forward adds the time between
// consecutive marks to the phase that began the interval. Off by default; the
// marks cost one event record each. Process-wide state; all functions are
// thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_PROFILE_H_
#define SWEEPD_WORKER_ENGINE_PROFILE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/api.h"

namespace sweepd::engine {

struct PhaseTimes {
  // (phase, total milliseconds) in the order phases were first seen.
  std::vector<std::pair<std::string, double>> ms;
  int64_t forwards = 0;
  bool device_events = false;  // true: CUDA events; false: host clock
};

void SetPhaseProfiling(bool enabled);

// Benchmarking: when `path` is set, every engine's later forwards use it
// instead of their EngineOptions::attention_path (so one loaded model can time
// both attention paths in the same run); std::nullopt restores the options.
void SetAttentionPathOverride(std::optional<AttentionPath> path);
// Benchmarking: when `tuning` is set, every engine's later forwards use it
// instead of their EngineOptions::gemm_tuning; std::nullopt restores them.
void SetGemmTuningOverride(std::optional<GemmTuning> tuning);
// The GEMM shapes autotuned so far in this process, one line each: shape,
// candidates, chosen index, heuristic's and chosen algorithm's median ms.
std::vector<std::string> GemmTuningReport();
// Benchmarking: when set (> 0), the chunked GEMM attention processes this many
// query positions per block (clamped to the sequence) instead of its own
// choice; 0 restores the default.
void SetChunkedQueryBlockOverride(int64_t positions);
// The fused attention kernels checked so far in this process: kAuto and
// kFlash use each (FlashAttention-2 with a window; cuDNN's attention banded by
// window blocks) only after it matched a float32 reference once per device.
// ("<kernel> on device <n>", usable), sorted by name.
std::vector<std::pair<std::string, bool>> CheckedAttentionKernels();
// Returns the accumulated profile and resets it.
PhaseTimes TakePhaseProfile();

// Peak bytes allocated by libtorch's CUDA caching allocator on `device` since
// the last reset; -1 when the build has no libtorch CUDA support.
int64_t DevicePeakAllocatedBytes(int device);
void ResetDevicePeakAllocatedBytes(int device);

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_PROFILE_H_
