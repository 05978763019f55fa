// cuBLASLt implementation of gemm_tuner.h.
#include "worker/engine/gemm_tuner.h"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace sweepd::engine {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// cuBLASLt's entry points, resolved at run time from the copy the process
// already loaded (libtorch's), so the engine never brings a second, possibly
// different cuBLASLt next to it; dlopen of the usual names otherwise.
struct Lt {
#define SWEEPD_LT_FN(name) decltype(&::name) name = nullptr;
  SWEEPD_LT_FN(cublasLtCreate)
  SWEEPD_LT_FN(cublasLtDestroy)
  SWEEPD_LT_FN(cublasLtGetStatusString)
  SWEEPD_LT_FN(cublasLtGetVersion)
  SWEEPD_LT_FN(cublasLtMatmul)
  SWEEPD_LT_FN(cublasLtMatmulDescCreate)
  SWEEPD_LT_FN(cublasLtMatmulDescDestroy)
  SWEEPD_LT_FN(cublasLtMatmulDescSetAttribute)
  SWEEPD_LT_FN(cublasLtMatrixLayoutCreate)
  SWEEPD_LT_FN(cublasLtMatrixLayoutDestroy)
  SWEEPD_LT_FN(cublasLtMatmulPreferenceCreate)
  SWEEPD_LT_FN(cublasLtMatmulPreferenceDestroy)
  SWEEPD_LT_FN(cublasLtMatmulPreferenceSetAttribute)
  SWEEPD_LT_FN(cublasLtMatmulAlgoGetHeuristic)
#undef SWEEPD_LT_FN
};

// Loaded once per process; nullptr with `why` set when cuBLASLt is missing.
const Lt* LoadLt(std::string* why) {
  static const Lt* lt = nullptr;
  static std::string error;
  static absl::Mutex mu(absl::kConstInit);
  absl::MutexLock lock(&mu);
  if (lt != nullptr || !error.empty()) {
    *why = error;
    return lt;
  }
  // The copy already mapped into the process (libtorch's dependency, which
  // need not be in the global symbol scope), found by its path; else the
  // loader's search for the usual names.
  // Paths of the mapped cuBLASLt and cuBLAS (cuBLASLt sits next to it).
  std::pair<std::string, std::string> loaded;
  dl_iterate_phdr(
      +[](dl_phdr_info* info, size_t, void* data) {
        auto* found = static_cast<std::pair<std::string, std::string>*>(data);
        const char* name = info->dlpi_name;
        if (name == nullptr) return 0;
        if (std::strstr(name, "libcublasLt.so") != nullptr) {
          found->first = name;
        } else if (std::strstr(name, "libcublas.so") != nullptr) {
          found->second = name;
        }
        return 0;
      },
      &loaded);
  void* lib = nullptr;
  if (!loaded.first.empty()) {
    lib = dlopen(loaded.first.c_str(), RTLD_NOW | RTLD_NOLOAD);
  }
  if (lib == nullptr && !loaded.second.empty()) {
    const std::string dir =
        loaded.second.substr(0, loaded.second.find_last_of('/') + 1);
    for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12"}) {
      if (lib == nullptr) lib = dlopen((dir + name).c_str(), RTLD_NOW);
    }
  }
  for (const char* name :
       {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) {
    if (lib != nullptr) break;
    lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
  }
  if (lib == nullptr) {
    error =
        "cuBLASLt is not loaded in this process and libcublasLt.so.{13,12} "
        "is not on the loader's path";
    *why = error;
    return nullptr;
  }
  auto* l = new Lt;
  bool ok = true;
#define SWEEPD_LT_LOAD(name)                                        \
  l->name = reinterpret_cast<decltype(l->name)>(dlsym(lib, #name)); \
  if (l->name == nullptr) {                                         \
    ok = false;                                                     \
    error = absl::StrCat("cuBLASLt lacks ", #name);                 \
  }
  SWEEPD_LT_LOAD(cublasLtCreate)
  SWEEPD_LT_LOAD(cublasLtDestroy)
  SWEEPD_LT_LOAD(cublasLtGetStatusString)
  SWEEPD_LT_LOAD(cublasLtGetVersion)
  SWEEPD_LT_LOAD(cublasLtMatmul)
  SWEEPD_LT_LOAD(cublasLtMatmulDescCreate)
  SWEEPD_LT_LOAD(cublasLtMatmulDescDestroy)
  SWEEPD_LT_LOAD(cublasLtMatmulDescSetAttribute)
  SWEEPD_LT_LOAD(cublasLtMatrixLayoutCreate)
  SWEEPD_LT_LOAD(cublasLtMatrixLayoutDestroy)
  SWEEPD_LT_LOAD(cublasLtMatmulPreferenceCreate)
  SWEEPD_LT_LOAD(cublasLtMatmulPreferenceDestroy)
  SWEEPD_LT_LOAD(cublasLtMatmulPreferenceSetAttribute)
  SWEEPD_LT_LOAD(cublasLtMatmulAlgoGetHeuristic)
#undef SWEEPD_LT_LOAD
  if (!ok) {
    delete l;
    *why = error;
    return nullptr;
  }
  lt = l;
  return lt;
}

absl::Status LtError(const Lt& lt, cublasStatus_t st, const char* what) {
  return absl::InternalError(
      absl::StrCat(what, ": ", lt.cublasLtGetStatusString(st)));
}

absl::Status CudaError(cudaError_t err, const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(err)));
}

// Descriptors of one (shape, leading dims) and its chosen algorithm.
struct Plan {
  explicit Plan(const Lt* lib) : lib_(lib) {}
  const Lt* lib_;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
  ~Plan() {
    if (c != nullptr) lib_->cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) lib_->cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) lib_->cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) lib_->cublasLtMatmulDescDestroy(op);
  }
};

using ShapeKey =
    std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;

// The cache file's entries for `device_key` (first line per shape wins).
absl::StatusOr<std::map<ShapeKey, int>> ReadCache(
    const std::string& path, const std::string& device_key) {
  std::map<ShapeKey, int> out;
  std::ifstream in(path);
  if (!in) return out;  // no file yet
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.empty()) continue;
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    int64_t v[7];
    bool ok = f.size() == 8;
    for (int i = 0; ok && i < 7; ++i) ok = absl::SimpleAtoi(f[i + 1], &v[i]);
    if (!ok || v[6] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GEMM tuning cache ", path, " line ", lineno,
          ": want 8 tab-separated fields (device, m, n, k, ldx, ldw, ldy, "
          "candidate >= 0), got '",
          line, "'"));
    }
    if (f[0] != device_key) continue;
    out.emplace(ShapeKey{v[0], v[1], v[2], v[3], v[4], v[5]},
                static_cast<int>(v[6]));
  }
  return out;
}

class GemmTunerImpl : public GemmTuner {
 public:
  GemmTunerImpl(const Lt* lib, int device, cublasLtHandle_t lt, void* workspace,
                std::string cache_path, std::string device_key,
                std::map<ShapeKey, int> cached)
      : lib_(lib),
        device_(device),
        lt_(lt),
        workspace_(workspace),
        cache_path_(std::move(cache_path)),
        device_key_(std::move(device_key)),
        cached_(std::move(cached)) {}
  ~GemmTunerImpl() override {
    plans_.clear();
    cudaSetDevice(device_);
    cudaFree(workspace_);
    lib_->cublasLtDestroy(lt_);
  }

  absl::StatusOr<bool> Run(const GemmArgs& g, void* stream) override {
    if (g.x == nullptr || g.w == nullptr || g.y == nullptr || g.shape.m < 1 ||
        g.shape.n < 1 || g.shape.k < 1 || g.ldx < g.shape.k ||
        g.ldw < g.shape.k || g.ldy < g.shape.n) {
      return absl::InvalidArgumentError(
          absl::StrCat("GEMM ", GemmShapeName(g.shape),
                       ": null operand or leading "
                       "dimension smaller than the row (ldx ",
                       g.ldx, ", ldw ", g.ldw, ", ldy ", g.ldy, ")"));
    }
    auto s = static_cast<cudaStream_t>(stream);
    absl::MutexLock lock(&mu_);
    const ShapeKey key{g.shape.m, g.shape.n, g.shape.k, g.ldx, g.ldw, g.ldy};
    auto it = plans_.find(key);
    const bool tuned = it == plans_.end();
    if (tuned) {
      auto plan = std::make_unique<Plan>(lib_);
      absl::Status st = Tune(g, key, s, plan.get());
      if (!st.ok()) return st;
      it = plans_.emplace(key, std::move(plan)).first;
    }
    absl::Status st = Matmul(g, *it->second, it->second->algo, s);
    if (!st.ok()) return st;
    return tuned;
  }

  std::vector<Choice> Choices() const override {
    absl::MutexLock lock(&mu_);
    return choices_;
  }

 private:
  absl::Status Matmul(const GemmArgs& g, const Plan& p,
                      const cublasLtMatmulAlgo_t& algo, cudaStream_t s) {
    const float one = 1.0f, zero = 0.0f;
    // Column-major view: y [n, m] (ld ldy) = wᵀ · x with w [k, n] (ld ldw)
    // and x [k, m] (ld ldx).
    cublasStatus_t st = lib_->cublasLtMatmul(
        lt_, p.op, &one, g.w, p.a, g.x, p.b, &zero, g.y, p.c, g.y, p.c, &algo,
        workspace_, kWorkspaceBytes, s);
    if (st != CUBLAS_STATUS_SUCCESS)
      return LtError(*lib_, st, "cublasLtMatmul");
    return absl::OkStatus();
  }

  absl::Status Tune(const GemmArgs& g, const ShapeKey& key, cudaStream_t s,
                    Plan* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    cublasStatus_t st =
        lib_->cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st != CUBLAS_STATUS_SUCCESS)
      return LtError(*lib_, st, "MatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    lib_->cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                         &ta, sizeof(ta));
    lib_->cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                         &tb, sizeof(tb));
    const GemmShape& sh = g.shape;
    if ((st = lib_->cublasLtMatrixLayoutCreate(
             &p->a, CUDA_R_16BF, sh.k, sh.n, g.ldw)) != CUBLAS_STATUS_SUCCESS ||
        (st = lib_->cublasLtMatrixLayoutCreate(
             &p->b, CUDA_R_16BF, sh.k, sh.m, g.ldx)) != CUBLAS_STATUS_SUCCESS ||
        (st = lib_->cublasLtMatrixLayoutCreate(
             &p->c, CUDA_R_16BF, sh.n, sh.m, g.ldy)) != CUBLAS_STATUS_SUCCESS) {
      return LtError(*lib_, st, "MatrixLayoutCreate");
    }
    cublasLtMatmulPreference_t pref = nullptr;
    lib_->cublasLtMatmulPreferenceCreate(&pref);
    const size_t ws = kWorkspaceBytes;
    lib_->cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    cublasLtMatmulHeuristicResult_t found[kCandidates + 1];
    int n = 0;
    st = lib_->cublasLtMatmulAlgoGetHeuristic(
        lt_, p->op, p->a, p->b, p->c, p->c, pref, kCandidates + 1, found, &n);
    lib_->cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || n < 1) {
      return st != CUBLAS_STATUS_SUCCESS
                 ? LtError(*lib_, st, "MatmulAlgoGetHeuristic")
                 : absl::InternalError(
                       absl::StrCat("cuBLASLt offers no algorithm for GEMM ",
                                    GemmShapeName(sh)));
    }
    auto cached = cached_.find(key);
    if (cached != cached_.end() && cached->second < n &&
        found[cached->second].state == CUBLAS_STATUS_SUCCESS) {
      p->algo = found[cached->second].algo;
      Choice c;
      c.shape = sh;
      c.candidates = n;
      c.chosen = cached->second;
      c.from_cache = true;
      choices_.push_back(c);
      return absl::OkStatus();
    }
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    std::vector<double> median(n, -1.0);
    for (int i = 0; i < n; ++i) {
      if (found[i].state != CUBLAS_STATUS_SUCCESS) continue;
      if (!Matmul(g, *p, found[i].algo, s).ok()) continue;  // warm-up
      std::vector<float> ms;
      bool ok = true;
      for (int r = 0; r < kTimedRuns && ok; ++r) {
        cudaEventRecord(start, s);
        ok = Matmul(g, *p, found[i].algo, s).ok();
        cudaEventRecord(stop, s);
        float t = 0;
        ok = ok && cudaEventSynchronize(stop) == cudaSuccess &&
             cudaEventElapsedTime(&t, start, stop) == cudaSuccess;
        ms.push_back(t);
      }
      if (!ok) continue;
      std::sort(ms.begin(), ms.end());
      median[i] = ms[ms.size() / 2];
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return CudaError(err, "timing GEMM algorithms");
    if (median[0] < 0) {
      return absl::InternalError(
          absl::StrCat("cuBLASLt's first algorithm for GEMM ",
                       GemmShapeName(sh), " failed to run"));
    }
    int best = 0;
    for (int i = 1; i < n; ++i) {
      if (median[i] >= 0 && median[i] < median[best]) best = i;
    }
    if (median[best] > median[0] * (1.0 - kMinGain)) best = 0;
    p->algo = found[best].algo;
    Choice c;
    c.shape = sh;
    c.candidates = n;
    c.chosen = best;
    c.heuristic_ms = median[0];
    c.chosen_ms = median[best];
    choices_.push_back(c);
    if (cache_path_.empty()) return absl::OkStatus();
    cached_.emplace(key, best);
    // One short line per append, so concurrent appenders do not interleave.
    std::ofstream out(cache_path_, std::ios::app);
    out << device_key_ << '\t' << sh.m << '\t' << sh.n << '\t' << sh.k << '\t'
        << g.ldx << '\t' << g.ldw << '\t' << g.ldy << '\t' << best << '\n';
    out.flush();
    if (!out) {
      return absl::InternalError(absl::StrCat("appending to GEMM tuning cache ",
                                              cache_path_, ": ",
                                              std::strerror(errno)));
    }
    return absl::OkStatus();
  }

  const Lt* const lib_;
  const int device_;
  cublasLtHandle_t lt_;
  void* workspace_;
  mutable absl::Mutex mu_;
  const std::string cache_path_;
  const std::string device_key_;
  std::map<ShapeKey, int> cached_ ABSL_GUARDED_BY(mu_);
  std::map<ShapeKey, std::unique_ptr<Plan>> plans_ ABSL_GUARDED_BY(mu_);
  std::vector<Choice> choices_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<GemmTuner>> GemmTuner::Create(
    int device, const std::string& cache_path) {
  std::string why;
  const Lt* lib = LoadLt(&why);
  if (lib == nullptr) return absl::FailedPreconditionError(why);
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return CudaError(err, "cudaSetDevice");
  cudaDeviceProp prop;
  err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) return CudaError(err, "cudaGetDeviceProperties");
  const std::string device_key =
      absl::StrCat(prop.name, " cublasLt ", lib->cublasLtGetVersion());
  std::map<ShapeKey, int> cached;
  if (!cache_path.empty()) {
    absl::StatusOr<std::map<ShapeKey, int>> read =
        ReadCache(cache_path, device_key);
    if (!read.ok()) return read.status();
    cached = std::move(*read);
  }
  cublasLtHandle_t lt = nullptr;
  cublasStatus_t st = lib->cublasLtCreate(&lt);
  if (st != CUBLAS_STATUS_SUCCESS) return LtError(*lib, st, "cublasLtCreate");
  void* ws = nullptr;
  err = cudaMalloc(&ws, kWorkspaceBytes);
  if (err != cudaSuccess) {
    lib->cublasLtDestroy(lt);
    return CudaError(err, "cudaMalloc(GEMM workspace)");
  }
  return std::unique_ptr<GemmTuner>(new GemmTunerImpl(
      lib, device, lt, ws, cache_path, device_key, std::move(cached)));
}

std::string GemmShapeName(const GemmShape& s) {
  return absl::StrCat(s.m, "x", s.n, "x", s.k);
}

}  // namespace sweepd::engine
