#include "worker/jobs/lm_backend.h"

#include <limits.h>
#include <stdlib.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/path_confinement.h"
#include "common/status.h"

namespace sweepd {
namespace {

std::string CanonicalPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return path;
  return buf;
}

}  // namespace

LmBackend::LmBackend(const LmBackendOptions& options) : options_(options) {}

absl::StatusOr<std::shared_ptr<LmBackend>> LmBackend::Create(
    const LmBackendOptions& options) {
  std::shared_ptr<LmBackend> backend(new LmBackend(options));
  absl::MutexLock lock(&backend->mu_);
  const std::string tokenizer =
      !options.tokenizer_path.empty()
          ? options.tokenizer_path
          : absl::StrCat(options.engine.model_dir, "/tokenizer.json");
  RETURN_IF_ERROR(backend->LoadLocked(options.engine.model_dir,
                                      options.model_fingerprint,
                                      options.engine.dtype, tokenizer));
  return backend;
}

absl::StatusOr<std::shared_ptr<const Tokenizer>> LmBackend::TokenizerLocked(
    const std::string& path) {
  auto it = tokenizers_.find(path);
  if (it != tokenizers_.end()) return it->second;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromFile(path);
  if (!tok.ok()) return Annotate(tok.status(), "tokenizer");
  std::shared_ptr<const Tokenizer> shared(std::move(*tok));
  tokenizers_[path] = shared;
  return shared;
}

absl::Status LmBackend::LoadLocked(const std::string& model_dir,
                                   const std::string& fingerprint,
                                   engine::DType dtype,
                                   const std::string& tokenizer_path) {
  ASSIGN_OR_RETURN(std::shared_ptr<const Tokenizer> tokenizer,
                   TokenizerLocked(tokenizer_path));
  engine::EngineOptions opts = options_.engine;
  opts.model_dir = model_dir;
  opts.dtype = dtype;
  // Free the current model before loading the next one (device memory).
  if (engine_ != nullptr) {
    retired_layer_forwards_ += engine_->total_layer_forwards();
    engine_.reset();
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Create(opts);
  if (!engine.ok()) {
    return Annotate(engine.status(), absl::StrCat("loading model ", model_dir));
  }
  engine_ = std::move(*engine);
  model_dir_ = model_dir;
  fingerprint_ = fingerprint;
  dtype_ = dtype;
  tokenizer_ = std::move(tokenizer);
  return absl::OkStatus();
}

absl::StatusOr<LmBackend::Model> LmBackend::Acquire(const ModelRefSpec& ref) {
  absl::MutexLock lock(&mu_);
  engine::DType dtype = options_.engine.dtype;
  if (!ref.dtype.empty()) {
    absl::StatusOr<engine::DType> parsed = engine::ParseDType(ref.dtype);
    if (!parsed.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model.dtype: ", parsed.status().message()));
    }
    dtype = *parsed;
  }
  bool same_model;
  if (!ref.fingerprint.empty() && !fingerprint_.empty()) {
    same_model = ref.fingerprint == fingerprint_;
  } else if (!ref.path.empty() && !model_dir_.empty()) {
    same_model = CanonicalPath(ref.path) == CanonicalPath(model_dir_);
  } else {
    same_model = ref.path.empty();
  }
  if (engine_ != nullptr && same_model && dtype == dtype_ &&
      ref.tokenizer.empty()) {
    return Model{engine_, tokenizer_, model_dir_};
  }
  if (engine_ != nullptr && same_model && dtype == dtype_) {
    if (!options_.model_roots.empty()) {
      RETURN_IF_ERROR(ConfinedRealPath(ref.tokenizer, options_.model_roots,
                                       "model.tokenizer")
                          .status());
    }
    ASSIGN_OR_RETURN(std::shared_ptr<const Tokenizer> tok,
                     TokenizerLocked(ref.tokenizer));
    return Model{engine_, tok, model_dir_};
  }
  const std::string dir = same_model ? model_dir_ : ref.path;
  if (dir.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the task names no model.path and this worker holds "
                     "model ",
                     model_dir_, " (fingerprint ", fingerprint_, ")"));
  }
  const std::string tokenizer =
      !ref.tokenizer.empty() ? ref.tokenizer
                             : (same_model && !options_.tokenizer_path.empty()
                                    ? options_.tokenizer_path
                                    : absl::StrCat(dir, "/tokenizer.json"));
  RETURN_IF_ERROR(CheckModelDirConfined(dir, options_.model_roots));
  if (!options_.model_roots.empty()) {
    RETURN_IF_ERROR(
        ConfinedRealPath(tokenizer, options_.model_roots, "model.tokenizer")
            .status());
  }
  SWEEPD_LOG(INFO) << "loading model " << dir << " ("
                   << engine::DTypeName(dtype) << ") for a task";
  absl::Status s = LoadLocked(dir, same_model ? fingerprint_ : ref.fingerprint,
                              dtype, tokenizer);
  if (!s.ok()) return absl::UnavailableError(s.ToString());
  return Model{engine_, tokenizer_, model_dir_};
}

int64_t LmBackend::total_layer_forwards() const {
  absl::MutexLock lock(&mu_);
  return retired_layer_forwards_ +
         (engine_ != nullptr ? engine_->total_layer_forwards() : 0);
}

}  // namespace sweepd
