// Kernels of kernels/paged_decode_attention.h.
//
// One block of kThreads (8 warps) per (key split, KV head, row) — grid
// (splits, kv_heads, rows) — holds the KV head's G query heads (dtype) and
// their float32 accumulators in shared memory and walks its keys in tiles of
// up to kMaxTile (64) keys. Decode attention moves few bytes (a 31B step reads
// well under a millisecond of KV); what costs is latency, so a tile is built
// to have all of its loads in flight at once and no per-key dependency chain:
//   0. the tile's pool row offsets (one page-table read per key) were read
//      during the previous tile (double-buffered in shared memory); the
//      block's q rows are copied (cp.async) while the first ones are read;
//   1. every thread issues 16-byte cp.async copies of the tile's V rows (and
//      K rows) straight into shared memory — tile x head_dim x 2 bytes x 2 in
//      flight per block, no registers held — then waits for all of them
//      (one __syncthreads); the next tile's page reads overlap the copies;
//   2. K = V layers: every thread derives (key, i < head_dim/2) pairs of the
//      tile's keys from the V tile (k_norm, RoPE: the same rounding sequence
//      as the CPU reference; angles with inv_freq 0, three quarters of Gemma
//      4's proportional RoPE, take sin 0 / cos 1 exactly, as sincosf gives)
//      into the K tile;
//   3. scores: each warp takes batches of kPairs (key, query head) pairs;
//      every lane holds its 16-byte chunks of the head_dim (one chunk for bf16
//      head_dim 256, two for 512), computes the partial dot of all kPairs pairs
//      (independent shared-memory loads and FMA chains), and one transposed
//      butterfly reduction (kPairs + 1 shuffles in all) leaves pair j's dot in
//      lane j: no scalar loads, no per-key warp reduction;
//   4. one warp per head: the tile's max, the rescale of the running sum and
//      the probabilities (online softmax, float32; two keys per lane);
//   5. each thread owns a pair of columns of up to kHeadsPerItem query heads:
//      it reads the V pair once per key and accumulates it into every head
//      (FMA chains in registers, the accumulators read and written once per
//      tile).
// Four __syncthreads per tile of up to 64 keys, five for K = V layers (the
// engine's ~40-key splits are one tile; PagedDecodeAttentionSplits is
// unchanged, untuned for this kernel). The tile shrinks (to 8) while the shared
// memory would exceed kSmemBudget, so that two blocks fit an H100 SM
// (__launch_bounds__(256, 2) also keeps ptxas from spilling around sincosf's
// slow path; the 32-byte stack frame is that path's own array). With one split
// the block writes the normalised output; with several it writes (acc, max,
// sum) per split to the workspace and a merge kernel combines them by their
// log-sum-exps. Row lengths come from device memory only (CUDA-graph
// capturable; the dynamic shared memory limit is raised once per device).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <vector>

#include "kernels/device_util.cuh"
#include "kernels/paged_decode_attention.h"

namespace sweepd::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxTile = 64;  // keys per tile (<= 64: two per lane in B)
constexpr int kMinTile = 8;
constexpr int64_t kSmemBudget = 112 * 1024;  // two blocks per H100 SM
constexpr int kPairs = 8;         // (key, head) dots per warp batch (pow. 2)
constexpr int kHeadsPerItem = 8;  // query heads per P·V work item
constexpr int kMaxDevices = 64;
constexpr int kVariants = 3;  // 16-byte chunks per lane: 1, 2, 4
constexpr unsigned kFull = 0xffffffffu;

template <typename T>
struct PagedParams {
  const T* q;
  int64_t q_row_stride;
  const T* k_pool;
  const T* v_pool;
  int64_t pool_rows;
  int64_t page_size;
  const int64_t* pages;
  int64_t page_stride;
  int64_t max_pages;
  const int64_t* first_pos;
  const int64_t* q_pos;
  int64_t window;
  float scale;
  const T* k_norm;
  const float* inv_freq;
  T* out;
  float* ws;  // splits > 1: [rows, heads, splits, head_dim + 2]
  int heads;
  int groups;
  int head_dim;
  int splits;
  int tile;
  bool q_vec;  // q and q_row_stride 16-byte aligned
};

__host__ __device__ inline int64_t Align16(int64_t x) {
  return (x + 15) / 16 * 16;
}

// Shared memory layout, offsets in bytes (every part 16-byte aligned): q
// (dtype), acc (float), scores/probabilities (float [G, tile]), running
// max/sum/rescale (float [3, G]), row offsets (int64 [2, tile]), the V and K
// tiles (dtype [tile, head_dim]).
struct SmemLayout {
  int64_t qs, acc, sc, stats, ro, vt, kt, total;
};

__host__ __device__ inline SmemLayout Layout(int groups, int head_dim,
                                             int esize, int tile) {
  SmemLayout s;
  const int64_t gh = static_cast<int64_t>(groups) * head_dim;
  const int64_t rows = static_cast<int64_t>(tile) * head_dim * esize;
  s.qs = 0;
  s.acc = Align16(s.qs + gh * esize);
  s.sc = Align16(s.acc + gh * 4);
  s.stats = Align16(s.sc + static_cast<int64_t>(groups) * tile * 4);
  s.ro = Align16(s.stats + 3 * static_cast<int64_t>(groups) * 4);
  s.vt = Align16(s.ro + 2 * static_cast<int64_t>(tile) * 8);
  s.kt = Align16(s.vt + rows);
  s.total = Align16(s.kt + rows);
  return s;
}

// 16-byte global -> shared copy without a register round trip (sm_80+), and
// the wait for all of this thread's copies.
__device__ inline void CopyAsync16(void* dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src)
               : "memory");
#else
  *static_cast<uint4*>(dst) = *static_cast<const uint4*>(src);
#endif
}

__device__ inline void CopyAsyncWaitAll() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

__device__ inline float2 Load2(const float* p) {
  return *reinterpret_cast<const float2*>(p);
}

__device__ inline float2 Load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

// kVpl: 16-byte chunks of a row per lane (head_dim x sizeof(T) <= 512 x kVpl).
template <typename T, int kVpl>
__global__ void __launch_bounds__(kThreads, 2)
    PagedDecodeKernel(PagedParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kVec = Vec16<T>::kN;  // elements per 16 bytes
  const int hd = p.head_dim, G = p.groups, half = hd / 2, tile = p.tile;
  const int nvec = hd / kVec;
  const SmemLayout lay = Layout(G, hd, sizeof(T), tile);
  T* qs = reinterpret_cast<T*>(smem + lay.qs);
  float* acc = reinterpret_cast<float*>(smem + lay.acc);
  float* sc = reinterpret_cast<float*>(smem + lay.sc);
  float* m_run = reinterpret_cast<float*>(smem + lay.stats);
  float* l_run = m_run + G;
  float* alpha = l_run + G;
  int64_t* ro = reinterpret_cast<int64_t*>(smem + lay.ro);
  T* vt = reinterpret_cast<T*>(smem + lay.vt);
  T* kt = reinterpret_cast<T*>(smem + lay.kt);

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int64_t r = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  // The KV head's query heads: 16-byte copies in flight while the row's
  // range and first page entries are read (scalar loads when q's rows are
  // not 16-byte aligned).
  const T* qrow = p.q + r * p.q_row_stride + static_cast<int64_t>(kvh) * G * hd;
  if (p.q_vec) {
    for (int c = tid; c < G * nvec; c += kThreads) {
      CopyAsync16(qs + c * kVec, qrow + c * kVec);
    }
  } else {
#pragma unroll 4
    for (int i = tid; i < G * hd; i += kThreads) qs[i] = qrow[i];
  }

  // The row's key range [lo, hi] and this split's part of it.
  const int64_t qp = p.q_pos[r], fp = p.first_pos[r];
  int64_t lo = fp, hi = qp;
  if (p.window > 0 && qp - p.window + 1 > lo) lo = qp - p.window + 1;
  const int64_t cap = fp + p.max_pages * p.page_size - 1;
  if (hi > cap) hi = cap;
  const int64_t n = (qp < 0 || hi < lo) ? 0 : hi - lo + 1;
  const int64_t chunk = (n + p.splits - 1) / p.splits;
  const int64_t k_begin = lo + split * chunk;
  int64_t k_end = k_begin + chunk;
  if (k_end > lo + n) k_end = lo + n;

  for (int i = tid; i < G * hd; i += kThreads) acc[i] = 0.0f;
  for (int g = tid; g < G; g += kThreads) {
    m_run[g] = -INFINITY;
    l_run[g] = 0.0f;
  }
  const bool derived = p.k_pool == nullptr;
  const int64_t* row_pages = p.pages + r * p.page_stride;
  const int64_t head_base = static_cast<int64_t>(kvh) * p.pool_rows;
  // Element offset in the pools of position `pos`'s row.
  auto row_offset = [&](int64_t pos) -> int64_t {
    const int64_t rel = pos - fp;
    const int64_t page = row_pages[rel / p.page_size];
    return (head_base + page * p.page_size + rel % p.page_size) * hd;
  };
  if (tid < tile && k_begin + tid < k_end) ro[tid] = row_offset(k_begin + tid);
  __syncthreads();

  int buf = 0;
  for (int64_t t0 = k_begin; t0 < k_end; t0 += tile, buf ^= 1) {
    const int valid = static_cast<int>(k_end - t0 < tile ? k_end - t0 : tile);
    // ---- 1. the tile's V (and K) rows, all copies in flight at once.
    const int64_t* rot = ro + buf * tile;
    for (int idx = tid; idx < valid * nvec; idx += kThreads) {
      const int kk = idx / nvec, c = idx - kk * nvec;
      const int64_t src = rot[kk] + c * kVec;
      const int dst = kk * hd + c * kVec;
      CopyAsync16(vt + dst, p.v_pool + src);
      if (!derived) CopyAsync16(kt + dst, p.k_pool + src);
    }
    // The next tile's row offsets (their buffer was last read by the previous
    // tile's copies, before its barriers).
    if (tid < tile && t0 + tile + tid < k_end) {
      ro[(buf ^ 1) * tile + tid] = row_offset(t0 + tile + tid);
    }
    CopyAsyncWaitAll();
    __syncthreads();
    // ---- 2. K = V layers: k = RoPE(round(v · k_norm)), as the reference.
    if (derived) {
      // Thread tid takes columns i = tid % cols + j·cols and keys tid / cols +
      // j·kstride: k_norm and inv_freq are read once per column, the keys'
      // iterations are independent.
      const int cols = half < kThreads ? half : kThreads;
      const int kstride = kThreads / cols;
      const int k0 = tid / cols;
      if (k0 < kstride) {
        for (int i = tid - k0 * cols; i < half; i += cols) {
          const float kn0 = Io<T>::Load(p.k_norm + i);
          const float kn1 = Io<T>::Load(p.k_norm + i + half);
          const float f = p.inv_freq[i];
          for (int kk = k0; kk < valid; kk += kstride) {
            // The angle's sin/cos first: sincosf's rarely taken slow path
            // (|angle| > 105615) then holds few live registers.
            float s = 0.0f, c = 1.0f;  // sincosf(0) exactly
            if (f != 0.0f) {
              sincosf(static_cast<float>(t0 + kk) * f, &s, &c);
              s = Io<T>::Round(s);
              c = Io<T>::Round(c);
            }
            const T* vrow = vt + kk * hd;
            const float a = Io<T>::Round(Io<T>::Load(vrow + i) * kn0);
            const float b = Io<T>::Round(Io<T>::Load(vrow + i + half) * kn1);
            T* krow = kt + kk * hd;
            Io<T>::Store(krow + i, Io<T>::Round(a * c) - Io<T>::Round(b * s));
            Io<T>::Store(krow + i + half,
                         Io<T>::Round(b * c) + Io<T>::Round(a * s));
          }
        }
      }
      __syncthreads();
    }
    // ---- 3. scores of (key, head) pairs, kPairs per warp batch.
    const int np = valid * G;
    for (int b0 = warp * kPairs; b0 < np; b0 += kWarps * kPairs) {
      float d[kPairs];
#pragma unroll
      for (int j = 0; j < kPairs; ++j) {
        d[j] = 0.0f;
        const int pr = b0 + j;
        if (pr < np) {
          const int kk = pr / G, g = pr - kk * G;
          const T* krow = kt + kk * hd;
          const T* qg = qs + g * hd;
#pragma unroll
          for (int m = 0; m < kVpl; ++m) {
            const int c = lane + 32 * m;
            if (c < nvec) {
              float kf[kVec], qf[kVec];
              Vec16<T>::Load(krow + c * kVec, kf);
              Vec16<T>::Load(qg + c * kVec, qf);
#pragma unroll
              for (int e = 0; e < kVec; ++e) d[j] += qf[e] * kf[e];
            }
          }
        }
      }
      // Transposed butterfly: after the stage of offset o, lane l keeps the
      // pairs whose index bit o equals lane bit o; at the end lane l holds
      // pair l % kPairs summed over the lanes that agree with it mod kPairs.
#pragma unroll
      for (int o = kPairs / 2; o >= 1; o >>= 1) {
        const bool upper = (lane & o) != 0;
#pragma unroll
        for (int j = 0; j < o; ++j) {
          const float send = upper ? d[j] : d[j + o];
          const float keep = upper ? d[j + o] : d[j];
          d[j] = keep + __shfl_xor_sync(kFull, send, o);
        }
      }
#pragma unroll
      for (int o = kPairs; o < 32; o <<= 1) {
        d[0] += __shfl_xor_sync(kFull, d[0], o);
      }
      const int pr = b0 + lane;
      if (lane < kPairs && pr < np) {
        const int kk = pr / G, g = pr - kk * G;
        sc[g * tile + kk] = Io<T>::Round(d[0]) * p.scale;
      }
    }
    __syncthreads();
    // ---- 4. online softmax per head (keys lane and lane + 32).
    for (int g = warp; g < G; g += kWarps) {
      float* sg = sc + g * tile;
      const float s0 = lane < valid ? sg[lane] : -INFINITY;
      const float s1 = lane + 32 < valid ? sg[lane + 32] : -INFINITY;
      float mx = fmaxf(s0, s1);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
      const float m_old = m_run[g];
      const float m_new = fmaxf(m_old, mx);
      const float e0 = lane < valid ? expf(s0 - m_new) : 0.0f;
      const float e1 = lane + 32 < valid ? expf(s1 - m_new) : 0.0f;
      const float sum = WarpSum(e0 + e1);
      __syncwarp();
      if (lane < valid) sg[lane] = e0;
      if (lane + 32 < valid) sg[lane + 32] = e1;
      if (lane == 0) {
        const float a = expf(m_old - m_new);  // 0 while m_old = -inf
        alpha[g] = a;
        l_run[g] = l_run[g] * a + sum;
        m_run[g] = m_new;
      }
    }
    __syncthreads();
    // ---- 5. rescale and accumulate P · V: items of (up to kHeadsPerItem
    // heads, one column pair).
    const int cpairs = hd / 2;
    const int gchunks = (G + kHeadsPerItem - 1) / kHeadsPerItem;
    for (int it = tid; it < gchunks * cpairs; it += kThreads) {
      const int gc = it / cpairs, cp = it - gc * cpairs;
      const int g0 = gc * kHeadsPerItem;
      const int ng = G - g0 < kHeadsPerItem ? G - g0 : kHeadsPerItem;
      float a0[kHeadsPerItem], a1[kHeadsPerItem];
#pragma unroll
      for (int j = 0; j < kHeadsPerItem; ++j) {
        a0[j] = 0.0f;
        a1[j] = 0.0f;
        if (j < ng) {
          const float al = alpha[g0 + j];
          const float2 av = Load2(acc + (g0 + j) * hd + 2 * cp);
          a0[j] = av.x * al;
          a1[j] = av.y * al;
        }
      }
      for (int kk = 0; kk < valid; ++kk) {
        const float2 v = Load2(vt + kk * hd + 2 * cp);
#pragma unroll
        for (int j = 0; j < kHeadsPerItem; ++j) {
          if (j < ng) {
            const float pj = sc[(g0 + j) * tile + kk];
            a0[j] += pj * v.x;
            a1[j] += pj * v.y;
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kHeadsPerItem; ++j) {
        if (j < ng) {
          *reinterpret_cast<float2*>(acc + (g0 + j) * hd + 2 * cp) =
              make_float2(a0[j], a1[j]);
        }
      }
    }
    __syncthreads();  // vt, kt, sc and acc are rewritten by the next tile
  }
  CopyAsyncWaitAll();  // q's copies, where no tile waited for them
  __syncthreads();
  const int64_t h0 = static_cast<int64_t>(kvh) * G;
  if (p.splits == 1) {
    T* o = p.out + (r * p.heads + h0) * hd;
    for (int idx = tid; idx < G * hd; idx += kThreads) {
      const float l = l_run[idx / hd];
      Io<T>::Store(o + idx, l > 0.0f ? acc[idx] / l : 0.0f);
    }
    return;
  }
  for (int idx = tid; idx < G * hd; idx += kThreads) {
    const int g = idx / hd, c = idx - g * hd;
    float* w = p.ws + ((r * p.heads + h0 + g) * p.splits + split) * (hd + 2);
    w[c] = acc[idx];
    if (c == 0) {
      w[hd] = m_run[g];
      w[hd + 1] = l_run[g];
    }
  }
}

// One block per (row, head): out = Σ_s acc_s e^(m_s − M) / Σ_s l_s e^(m_s − M).
template <typename T>
__global__ void PagedDecodeMergeKernel(const float* ws, T* out, int splits,
                                       int head_dim) {
  const int64_t rh = blockIdx.x;
  const int hd = head_dim;
  const float* w = ws + rh * splits * (hd + 2);
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) {
    const float* ws_s = w + s * (hd + 2);
    if (ws_s[hd + 1] > 0.0f) M = fmaxf(M, ws_s[hd]);
  }
  float L = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float* ws_s = w + s * (hd + 2);
    if (ws_s[hd + 1] > 0.0f) L += ws_s[hd + 1] * expf(ws_s[hd] - M);
  }
  for (int c = threadIdx.x; c < hd; c += blockDim.x) {
    float a = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float* ws_s = w + s * (hd + 2);
      if (ws_s[hd + 1] > 0.0f) a += ws_s[c] * expf(ws_s[hd] - M);
    }
    Io<T>::Store(out + rh * hd + c, L > 0.0f ? a / L : 0.0f);
  }
}

template <typename T>
int Launch(const PagedDecodeAttentionArgs& a, cudaStream_t stream) {
  PagedParams<T> p;
  p.q = static_cast<const T*>(a.q);
  p.q_row_stride = a.q_row_stride;
  p.k_pool = static_cast<const T*>(a.k_pool);
  p.v_pool = static_cast<const T*>(a.v_pool);
  p.pool_rows = a.pool_rows;
  p.page_size = a.page_size;
  p.pages = a.pages;
  p.page_stride = a.page_stride;
  p.max_pages = a.max_pages;
  p.first_pos = a.first_pos;
  p.q_pos = a.q_pos;
  p.window = a.window;
  p.scale = a.scale;
  p.k_norm = static_cast<const T*>(a.k_norm);
  p.inv_freq = a.inv_freq;
  p.out = static_cast<T*>(a.out);
  p.ws = static_cast<float*>(a.workspace);
  p.heads = a.heads;
  p.groups = a.heads / a.kv_heads;
  p.head_dim = a.head_dim;
  p.splits = a.splits > 1 ? a.splits : 1;
  // The largest tile whose shared memory fits the budget (kMinTile at least:
  // G x head_dim <= 8192 keeps that under the device's 227 KiB).
  int tile = kMaxTile;
  while (tile > kMinTile &&
         Layout(p.groups, a.head_dim, sizeof(T), tile).total > kSmemBudget) {
    tile /= 2;
  }
  p.tile = tile;
  p.q_vec = Aligned16(a.q) && a.q_row_stride * sizeof(T) % 16 == 0;
  const SmemLayout lay = Layout(p.groups, a.head_dim, sizeof(T), tile);
  const int nvec = a.head_dim * static_cast<int>(sizeof(T)) / 16;
  const int variant = nvec <= 32 ? 0 : nvec <= 64 ? 1 : 2;
  void (*const kernel)(PagedParams<T>) = variant == 0 ? PagedDecodeKernel<T, 1>
                                         : variant == 1
                                             ? PagedDecodeKernel<T, 2>
                                             : PagedDecodeKernel<T, 4>;
  // Raise the kernel's dynamic shared memory limit once per device, variant
  // and size (not on every launch: a CUDA graph capture then sees plain
  // launches).
  static std::atomic<int64_t> limits[kMaxDevices][kVariants];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device >= kMaxDevices) {
    return kInvalid;
  }
  std::atomic<int64_t>& configured = limits[device][variant];
  if (lay.total > 48 * 1024 && lay.total > configured.load()) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(lay.total));
    if (err != cudaSuccess) return static_cast<int>(err);
    int64_t seen = configured.load();
    while (seen < lay.total &&
           !configured.compare_exchange_weak(seen, lay.total)) {
    }
  }
  const dim3 grid(static_cast<unsigned>(p.splits),
                  static_cast<unsigned>(a.kv_heads),
                  static_cast<unsigned>(a.rows));
  kernel<<<grid, kThreads, lay.total, stream>>>(p);
  if (p.splits > 1) {
    const int threads = a.head_dim < 256 ? a.head_dim : 256;
    PagedDecodeMergeKernel<T>
        <<<static_cast<unsigned>(a.rows * a.heads), threads, 0, stream>>>(
            p.ws, p.out, p.splits, a.head_dim);
  }
  return LastError();
}

}  // namespace

int CudaMultiprocessorCount() {
  static std::mutex mu;
  static std::vector<int> counts;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<int>(counts.size()) <= device) counts.resize(device + 1, 0);
  if (counts[device] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) !=
        cudaSuccess) {
      return 0;
    }
    counts[device] = n;
  }
  return counts[device];
}

int PagedDecodeAttentionCuda(const PagedDecodeAttentionArgs& a, void* stream) {
  if (a.rows < 0 ||
      !PagedDecodeAttentionSupported(a.heads, a.kv_heads, a.head_dim) ||
      a.q == nullptr || a.v_pool == nullptr || a.out == nullptr ||
      a.pages == nullptr || a.first_pos == nullptr || a.q_pos == nullptr ||
      (a.k_pool == nullptr && (a.k_norm == nullptr || a.inv_freq == nullptr)) ||
      a.page_size < 1 || a.max_pages < 0 || a.max_pages > a.page_stride ||
      a.window < 0 || a.q_row_stride < int64_t{a.heads} * a.head_dim ||
      a.rows > 65535 || a.kv_heads > 65535 || a.splits > 65535 ||
      (a.splits > 1 && a.workspace == nullptr) || !Aligned16(a.v_pool) ||
      (a.k_pool != nullptr && !Aligned16(a.k_pool))) {
    return kInvalid;
  }
  if (a.rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  return a.dtype == Dtype::kBFloat16 ? Launch<__nv_bfloat16>(a, s)
                                     : Launch<float>(a, s);
}

}  // namespace sweepd::kernels
