// sweep-worker: the worker binary. A dispatch table of subcommands; `run` (the
// default) wires the executor registry and the WorkerAgent together and turns
// SIGTERM/SIGINT into a drain. Other subcommands add one line to kSubcommands.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/model_fingerprint.h"
#include "common/tokenizer_cli.h"
#include "worker/agent/agent.h"
#include "worker/engine/engine.h"
#include "worker/engine/model_generator.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"
#include "worker/jobs/synthetic_executor.h"

namespace sweepd {
namespace {

constexpr char kRunUsage[] = R"(usage: sweep-worker [run] [flags]

Registers with the coordinator, leases tasks, runs them and reports results until SIGTERM
or SIGINT, which drains the worker: no more leases, the running task(s) get --drain-grace-s
to finish (or are released), leased-but-not-started tasks are released, exit status 0.

flags:
  --coordinator HOST:PORT     coordinator address (default: $SWEEPD_COORDINATOR, else
                              127.0.0.1:7070)
  --name NAME                 worker name shown by `sweepctl workers` (default: hostname-pid)
  --max-tasks N               most tasks leased at a time, i.e. the largest group (default 8)
  --heartbeat-ms MS           heartbeat period (default: what the coordinator asks for)
  --drain-grace-s S           how long a draining worker lets running tasks finish (default 30)
  --rpc-deadline-ms MS        deadline of every RPC (default 10000)
  --model DIR                 model directory loaded by this worker; its fingerprint
                              (config.json + safetensors headers) is advertised for affinity,
                              and the eval and probe executors run on it (docs/JOBS.md)
  --dtype float32|bfloat16    compute dtype of the model (default: float32 on cpu,
                              bfloat16 on cuda); tasks naming another dtype reload it
  --device cpu|cuda           where the engine runs (default cpu)
  --prefix-reuse on|off       share one unablated pass among a group's tasks (default on)
  --gemm-tuning off|autotune  CUDA bf16 GEMMs: cuBLAS's heuristic (off, default: results
                              bit-identical across processes) or per shape the fastest
                              cuBLASLt algorithm timed on first use (faster; another
                              process may round differently)
  --gemm-tuning-cache FILE    with autotune: tuning choices shared by workers that
                              should pick the same GEMM algorithms (read, then appended)
  --prefix-budget-mb N        per-rank device memory for kept prefix residuals; the rest
                              spills to host memory (default 1024)
  --max-batch-tokens N        tokens per engine forward when batching windows (default 4096)
  --threads N                 CPU engine: intra-op threads per rank (default: hardware
                              threads / tp; give 1 when several workers share few cores)
  --device-kind KIND          advertised device kind (default "cpu")
  --gpu-count N               advertised GPU count (default 0)
  --gpu-memory-bytes N        advertised memory per GPU (default 0)
  --tp N                      tensor-parallel size of the engine, advertised (default 1)
  --fault-drop-report-reply P test fault switch: with probability P treat a successful
                              ReportResult as if its reply was lost and resend it (default 0)
  --seed N                    seed of backoff jitter and the fault switch (default: random)
  --help                      this text
)";

struct Subcommand {
  const char* name;
  int (*main)(int argc, char** argv);  // argv[0] is the subcommand name
  const char* summary;
};

int RunMain(int argc, char** argv);

// Add subcommands here: {"name", &NameMain, "one-line summary"}.
const Subcommand kSubcommands[] = {
    {"run", &RunMain, "lease and run tasks from a coordinator (default)"},
    {"make-model", &engine::MakeModelMain,
     "write a random-weight Gemma 4 model directory from a config.json"},
    {"tokenize", &TokenizeMain,
     "print the token ids of stdin as JSON (--tokenizer FILE --bos on|off)"},
};

void PrintTopUsage(FILE* out) {
  std::fprintf(
      out,
      "usage: sweep-worker [SUBCOMMAND] [flags]   (see SUBCOMMAND --help)\n\n");
  for (const Subcommand& sub : kSubcommands) {
    std::fprintf(out, "  %-12s %s\n", sub.name, sub.summary);
  }
  std::fprintf(out,
               "\nWith no subcommand, or flags first, `run` is meant.\n\n%s",
               kRunUsage);
}

// Parses "--flag value" or "--flag=value" at argv[*i]; advances *i past the
// value.
bool TakeFlag(int argc, char** argv, int* i, const char* name,
              std::string* value) {
  const char* arg = argv[*i];
  size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0) return false;
  if (arg[n] == '=') {
    *value = arg + n + 1;
    return true;
  }
  if (arg[n] != '\0') return false;
  if (*i + 1 >= argc) {
    std::fprintf(stderr, "sweep-worker: flag %s needs a value\n", name);
    std::exit(2);
  }
  *value = argv[++*i];
  return true;
}

template <typename T>
T ParseNumberOrDie(const std::string& flag, const std::string& text) {
  T out{};
  bool ok;
  if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtod(text, &out);
  } else {
    ok = absl::SimpleAtoi(text, &out);
  }
  if (!ok) {
    std::fprintf(stderr, "sweep-worker: %s: '%s' is not a number\n",
                 flag.c_str(), text.c_str());
    std::exit(2);
  }
  return out;
}

std::string DefaultName() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0)
    std::snprintf(host, sizeof(host), "worker");
  return absl::StrCat(host, "-", getpid());
}

int RunMain(int argc, char** argv) {
  // Signals are taken synchronously by one thread (sigwait), so the drain runs
  // in normal code, never in a signal handler. Block them first: every thread
  // started later inherits the mask — the engine's rank threads and the threads
  // CUDA and libtorch start — so none of them can receive SIGTERM and be killed
  // by its default action instead of draining.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  WorkerAgentOptions options;
  const char* env = std::getenv("SWEEPD_COORDINATOR");
  options.coordinator =
      (env != nullptr && *env != '\0') ? env : "127.0.0.1:7070";
  options.name = DefaultName();
  double drain_grace_s = 30;
  std::string model_dir;
  std::string dtype;
  std::string device = "cpu";
  std::string prefix_reuse = "on";
  std::string gemm_tuning = "off";
  std::string gemm_tuning_cache;
  int64_t prefix_budget_mb = 1024;
  int64_t max_batch_tokens = 4096;
  int cpu_threads = 0;  // 0 = the engine default
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (std::strcmp(argv[i], "--help") == 0 ||
        std::strcmp(argv[i], "-h") == 0) {
      std::fputs(kRunUsage, stdout);
      return 0;
    } else if (TakeFlag(argc, argv, &i, "--coordinator", &v)) {
      options.coordinator = v;
    } else if (TakeFlag(argc, argv, &i, "--name", &v)) {
      options.name = v;
    } else if (TakeFlag(argc, argv, &i, "--max-tasks", &v)) {
      options.max_tasks = ParseNumberOrDie<int32_t>("--max-tasks", v);
    } else if (TakeFlag(argc, argv, &i, "--heartbeat-ms", &v)) {
      options.heartbeat_interval_ms =
          ParseNumberOrDie<int64_t>("--heartbeat-ms", v);
    } else if (TakeFlag(argc, argv, &i, "--drain-grace-s", &v)) {
      drain_grace_s = ParseNumberOrDie<double>("--drain-grace-s", v);
    } else if (TakeFlag(argc, argv, &i, "--rpc-deadline-ms", &v)) {
      options.rpc_deadline_ms =
          ParseNumberOrDie<int64_t>("--rpc-deadline-ms", v);
    } else if (TakeFlag(argc, argv, &i, "--model", &v)) {
      model_dir = v;
    } else if (TakeFlag(argc, argv, &i, "--dtype", &v)) {
      dtype = v;
    } else if (TakeFlag(argc, argv, &i, "--device", &v)) {
      device = v;
    } else if (TakeFlag(argc, argv, &i, "--prefix-reuse", &v)) {
      prefix_reuse = v;
    } else if (TakeFlag(argc, argv, &i, "--gemm-tuning", &v)) {
      gemm_tuning = v;
    } else if (TakeFlag(argc, argv, &i, "--gemm-tuning-cache", &v)) {
      gemm_tuning_cache = v;
    } else if (TakeFlag(argc, argv, &i, "--prefix-budget-mb", &v)) {
      prefix_budget_mb = ParseNumberOrDie<int64_t>("--prefix-budget-mb", v);
    } else if (TakeFlag(argc, argv, &i, "--max-batch-tokens", &v)) {
      max_batch_tokens = ParseNumberOrDie<int64_t>("--max-batch-tokens", v);
    } else if (TakeFlag(argc, argv, &i, "--threads", &v)) {
      cpu_threads = ParseNumberOrDie<int>("--threads", v);
    } else if (TakeFlag(argc, argv, &i, "--device-kind", &v)) {
      options.capabilities.device_kind = v;
    } else if (TakeFlag(argc, argv, &i, "--gpu-count", &v)) {
      options.capabilities.gpu_count =
          ParseNumberOrDie<int32_t>("--gpu-count", v);
    } else if (TakeFlag(argc, argv, &i, "--gpu-memory-bytes", &v)) {
      options.capabilities.gpu_memory_bytes =
          ParseNumberOrDie<int64_t>("--gpu-memory-bytes", v);
    } else if (TakeFlag(argc, argv, &i, "--tp", &v)) {
      options.capabilities.tensor_parallel =
          ParseNumberOrDie<int32_t>("--tp", v);
    } else if (TakeFlag(argc, argv, &i, "--fault-drop-report-reply", &v)) {
      options.fault_drop_report_reply =
          ParseNumberOrDie<double>("--fault-drop-report-reply", v);
    } else if (TakeFlag(argc, argv, &i, "--seed", &v)) {
      options.seed = ParseNumberOrDie<uint64_t>("--seed", v);
    } else {
      std::fprintf(stderr, "sweep-worker run: unknown flag '%s' (see --help)\n",
                   argv[i]);
      return 2;
    }
  }
  if (drain_grace_s < 0) {
    std::fprintf(stderr, "sweep-worker: --drain-grace-s must be >= 0, got %g\n",
                 drain_grace_s);
    return 2;
  }
  options.drain_grace_ms = static_cast<int64_t>(drain_grace_s * 1000);
  if (!model_dir.empty()) {
    auto fingerprint = ComputeModelFingerprint(
        model_dir, ModelFingerprintOptions::WithDefaultCache());
    if (!fingerprint.ok()) {
      std::fprintf(stderr, "sweep-worker: --model %s: %s\n", model_dir.c_str(),
                   fingerprint.status().ToString().c_str());
      return 1;
    }
    options.capabilities.model_fingerprint = *fingerprint;
  }

  ExecutorRegistry registry;
  auto synthetic = SyntheticExecutor::Create(SyntheticExecutorOptions{});
  if (!synthetic.ok()) {
    std::fprintf(stderr, "sweep-worker: %s\n",
                 synthetic.status().ToString().c_str());
    return 1;
  }
  absl::Status s = registry.Register(std::move(*synthetic));
  if (!s.ok()) {
    std::fprintf(stderr, "sweep-worker: %s\n", s.ToString().c_str());
    return 1;
  }
  if (!model_dir.empty()) {
    LmBackendOptions backend;
    backend.engine.model_dir = model_dir;
    backend.engine.device = device;
    backend.engine.tp_size = std::max(1, options.capabilities.tensor_parallel);
    backend.engine.prefix_device_budget_bytes = prefix_budget_mb << 20;
    backend.engine.cpu_threads_per_rank = cpu_threads;
    auto parsed_dtype = engine::ParseDType(
        !dtype.empty() ? dtype : (device == "cuda" ? "bfloat16" : "float32"));
    auto parsed_tuning = engine::ParseGemmTuning(gemm_tuning);
    if (!parsed_dtype.ok() || !parsed_tuning.ok() ||
        (prefix_reuse != "on" && prefix_reuse != "off") ||
        prefix_budget_mb < 0) {
      std::fprintf(stderr,
                   "sweep-worker: bad --dtype '%s', --gemm-tuning '%s' "
                   "(off|autotune), --prefix-reuse '%s' (on|off) "
                   "or --prefix-budget-mb %lld\n",
                   dtype.c_str(), gemm_tuning.c_str(), prefix_reuse.c_str(),
                   static_cast<long long>(prefix_budget_mb));
      return 2;
    }
    backend.engine.dtype = *parsed_dtype;
    backend.engine.gemm_tuning = *parsed_tuning;
    backend.engine.gemm_tuning_cache = gemm_tuning_cache;
    backend.model_fingerprint = options.capabilities.model_fingerprint;
    LmExecutorOptions lm;
    lm.prefix_reuse = prefix_reuse == "on";
    lm.max_batch_tokens = max_batch_tokens;
    s = RegisterLmExecutors(backend, lm, &registry);
    if (!s.ok()) {
      std::fprintf(stderr, "sweep-worker: --model %s: %s\n", model_dir.c_str(),
                   s.ToString().c_str());
      return 1;
    }
  }
  options.registry = &registry;

  auto agent = WorkerAgent::Create(options);
  if (!agent.ok()) {
    std::fprintf(stderr, "sweep-worker: %s\n",
                 agent.status().ToString().c_str());
    return 2;
  }
  WorkerAgent* agent_ptr = agent->get();
  std::thread signal_thread([agent_ptr, signals] {
    int signals_seen = 0;
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGUSR2) return;  // shutdown of this thread, sent by main
      if (++signals_seen == 1) {
        SWEEPD_LOG(INFO) << "received " << strsignal(sig) << "; draining";
        agent_ptr->Drain();
      } else {
        SWEEPD_LOG(WARNING)
            << "received " << strsignal(sig) << " again; stopping now";
        agent_ptr->Stop();
      }
    }
  });
  SWEEPD_LOG(INFO) << "sweep-worker " << options.name << " connecting to "
                   << options.coordinator;
  absl::Status result = (*agent)->Run();
  // Wake the signal thread with a signal it waits for but the process does not
  // otherwise use.
  pthread_kill(signal_thread.native_handle(), SIGUSR2);
  signal_thread.join();
  if (!result.ok()) {
    std::fprintf(stderr, "sweep-worker: %s\n", result.ToString().c_str());
    return 1;
  }
  return 0;
}

int Main(int argc, char** argv) {
  if (argc >= 2 &&
      (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
       std::strcmp(argv[1], "help") == 0)) {
    PrintTopUsage(stdout);
    return 0;
  }
  if (argc >= 2 && argv[1][0] != '-') {
    for (const Subcommand& sub : kSubcommands) {
      if (std::strcmp(argv[1], sub.name) == 0)
        return sub.main(argc - 1, argv + 1);
    }
    std::fprintf(stderr, "sweep-worker: unknown subcommand '%s'\n\n", argv[1]);
    PrintTopUsage(stderr);
    return 2;
  }
  // Flags only: `run`.
  return RunMain(argc, argv);
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
