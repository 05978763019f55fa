// Kernels of kernels/paged_decode_attention.h.
//
// One block of kThreads per (key split, KV head, row) — grid (splits,
// kv_heads, rows) — holds the KV head's G query heads in shared memory (float)
// and walks its keys in tiles of kTile:
//   A. each warp takes keys of the tile: copies the V row (16-byte accesses)
//      into the tile's shared V buffer, builds the key in its own row buffer
//      (the K row, or k_norm · V then RoPE for K = V layers: lane pairs (i,
//      i + head_dim/2), one sincos per pair), and writes the G scores;
//   B. one warp per head: the tile's max, the rescale of the running sum and
//      the probabilities (online softmax, float32);
//   C. every thread rescales and accumulates its (head, column) outputs.
// With one split the block writes the normalised output; with several it
// writes (acc, max, sum) per split to the workspace and a merge kernel combines
// them by their log-sum-exps. Row lengths come from device memory only.
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

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 16;  // keys per tile (<= 32: one lane per key in B)
constexpr int kMaxDevices = 64;

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
};

// Shared memory layout (floats unless noted), offsets in bytes.
struct SmemLayout {
  int64_t qs, acc, kr, sc, stats, vt, total;
};

__host__ __device__ inline SmemLayout Layout(int groups, int head_dim,
                                             int esize) {
  SmemLayout s;
  const int64_t hd = head_dim;
  s.qs = 0;
  s.acc = s.qs + groups * hd * 4;
  s.kr = s.acc + groups * hd * 4;
  s.sc = s.kr + kWarps * hd * 4;
  s.stats = s.sc + static_cast<int64_t>(groups) * kTile * 4;
  s.vt = s.stats + 3 * static_cast<int64_t>(groups) * 4;
  s.vt = (s.vt + 15) / 16 * 16;
  s.total = s.vt + kTile * hd * esize;
  return s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    PagedDecodeKernel(PagedParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int hd = p.head_dim, G = p.groups, half = hd / 2;
  const SmemLayout lay = Layout(G, hd, sizeof(T));
  float* qs = reinterpret_cast<float*>(smem + lay.qs);
  float* acc = reinterpret_cast<float*>(smem + lay.acc);
  float* kr_all = reinterpret_cast<float*>(smem + lay.kr);
  float* sc = reinterpret_cast<float*>(smem + lay.sc);
  float* m_run = reinterpret_cast<float*>(smem + lay.stats);
  float* l_run = m_run + G;
  float* alpha = l_run + G;
  T* vt = reinterpret_cast<T*>(smem + lay.vt);

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int64_t r = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float* kr = kr_all + warp * hd;

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

  const T* qrow = p.q + r * p.q_row_stride + static_cast<int64_t>(kvh) * G * hd;
  for (int i = tid; i < G * hd; i += kThreads) {
    qs[i] = Io<T>::Load(qrow + i);
    acc[i] = 0.0f;
  }
  for (int g = tid; g < G; g += kThreads) {
    m_run[g] = -INFINITY;
    l_run[g] = 0.0f;
  }
  const int vec = 16 / static_cast<int>(sizeof(T));  // elements per 16 bytes
  const int nvec = hd / vec;
  const bool derived = p.k_pool == nullptr;

  for (int64_t t0 = k_begin; t0 < k_end; t0 += kTile) {
    const int valid = static_cast<int>(k_end - t0 < kTile ? k_end - t0 : kTile);
    __syncthreads();  // the previous tile's B/C are done with sc and vt
    // ---- A: keys and scores.
    for (int kk = warp; kk < kTile; kk += kWarps) {
      if (kk >= valid) {
        if (lane == 0) {
          for (int g = 0; g < G; ++g) sc[g * kTile + kk] = -INFINITY;
        }
        continue;
      }
      const int64_t pos = t0 + kk, rel = pos - fp;
      const int64_t page = p.pages[r * p.page_stride + rel / p.page_size];
      const int64_t prow = (static_cast<int64_t>(kvh) * p.pool_rows +
                            page * p.page_size + rel % p.page_size) *
                           hd;
      const uint4* vsrc = reinterpret_cast<const uint4*>(p.v_pool + prow);
      uint4* vdst = reinterpret_cast<uint4*>(vt + kk * hd);
      for (int c = lane; c < nvec; c += 32) vdst[c] = vsrc[c];
      __syncwarp();
      if (!derived) {
        const T* krow = p.k_pool + prow;
        for (int i = lane; i < hd; i += 32) kr[i] = Io<T>::Load(krow + i);
      } else {
        const T* vrow = vt + kk * hd;
        for (int i = lane; i < half; i += 32) {
          const float a =
              Io<T>::Round(Io<T>::Load(vrow + i) * Io<T>::Load(p.k_norm + i));
          const float b = Io<T>::Round(Io<T>::Load(vrow + i + half) *
                                       Io<T>::Load(p.k_norm + i + half));
          float s, c;
          sincosf(static_cast<float>(pos) * p.inv_freq[i], &s, &c);
          s = Io<T>::Round(s);
          c = Io<T>::Round(c);
          kr[i] = Io<T>::Round(Io<T>::Round(a * c) - Io<T>::Round(b * s));
          kr[i + half] =
              Io<T>::Round(Io<T>::Round(b * c) + Io<T>::Round(a * s));
        }
      }
      __syncwarp();
      for (int g = 0; g < G; ++g) {
        const float* qg = qs + g * hd;
        float d = 0.0f;
        for (int i = lane; i < hd; i += 32) d += qg[i] * kr[i];
        d = WarpSum(d);
        if (lane == 0) sc[g * kTile + kk] = Io<T>::Round(d) * p.scale;
      }
      __syncwarp();  // kr is rewritten by this warp's next key
    }
    __syncthreads();
    // ---- B: online softmax per head.
    for (int g = warp; g < G; g += kWarps) {
      const float s = lane < valid ? sc[g * kTile + lane] : -INFINITY;
      float mx = s;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_old = m_run[g];
      const float m_new = fmaxf(m_old, mx);
      const float e = lane < valid ? expf(s - m_new) : 0.0f;
      const float sum = WarpSum(e);
      __syncwarp();
      if (lane < kTile) sc[g * kTile + lane] = e;
      if (lane == 0) {
        const float a = expf(m_old - m_new);  // 0 while m_old = -inf
        alpha[g] = a;
        l_run[g] = l_run[g] * a + sum;
        m_run[g] = m_new;
      }
    }
    __syncthreads();
    // ---- C: rescale and accumulate P · V.
    for (int idx = tid; idx < G * hd; idx += kThreads) {
      const int g = idx / hd, c = idx - g * hd;
      const float* pg = sc + g * kTile;
      float a = acc[idx] * alpha[g];
      for (int kk = 0; kk < valid; ++kk) {
        a += pg[kk] * Io<T>::Load(vt + kk * hd + c);
      }
      acc[idx] = a;
    }
  }
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
  const SmemLayout lay = Layout(p.groups, a.head_dim, sizeof(T));
  // Raise the kernel's dynamic shared memory limit once per device and size
  // (not on every launch: a CUDA graph capture then sees plain launches).
  static std::atomic<int64_t> limits[kMaxDevices];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device >= kMaxDevices) {
    return kInvalid;
  }
  std::atomic<int64_t>& configured = limits[device];
  if (lay.total > 48 * 1024 && lay.total > configured.load()) {
    const cudaError_t err = cudaFuncSetAttribute(
        PagedDecodeKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
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
  PagedDecodeKernel<T><<<grid, kThreads, lay.total, stream>>>(p);
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
      (a.splits > 1 && a.workspace == nullptr) || !Aligned16(a.v_pool)) {
    return kInvalid;
  }
  if (a.rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  return a.dtype == Dtype::kBFloat16 ? Launch<__nv_bfloat16>(a, s)
                                     : Launch<float>(a, s);
}

}  // namespace sweepd::kernels
