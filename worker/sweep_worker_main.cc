// sweep-worker: the worker binary. A dispatch table of subcommands; `run` (the
// default) parses its flags, has the worker assembly (worker_assembly.h) build
// the executor registry and agent options, runs the WorkerAgent and turns
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

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/metrics_endpoint.h"
#include "proto/tls_config.h"
#include "worker/agent/agent.h"
#include "worker/dump_logits_command.h"
#include "worker/make_model_command.h"
#include "worker/materialize_command.h"
#include "worker/prometheus_worker_metrics.h"
#include "worker/tokenize_command.h"
#include "worker/worker_assembly.h"

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
  --connect-timeout-ms MS     one connection attempt to the coordinator (default
                              500; raise it for slow, cross-region links)
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
  --device-kind KIND          advertised device kind (default: "cpu", or with --device cuda
                              the GPU's name, e.g. "NVIDIA H100 80GB HBM3")
  --gpu-count N               advertised GPU count (default 0; with --device cuda the TP size)
  --gpu-memory-bytes N        advertised memory per GPU (default 0; with --device cuda the
                              GPU's)
  --tp N                      tensor-parallel size of the engine, advertised (default 1)
  --model-root DIR            only load models whose directory and files (config.json,
                              tokenizer.json, shards, index) resolve under DIR, symlinks
                              followed; repeatable (default: any path)
  --data-root DIR             only read datasets that resolve under DIR; repeatable
  --artifact-root DIR         the artifact store (docs/ARTIFACTS.md): the directory or bucket
                              mount sweepd's --artifact-root names; jobs that write or read
                              artifacts (capture, heal, materialize, retrain, steering
                              vectors) need it. Only object paths are read from it.
  --verifier-command PROG     let a generate sweep's command verifier start PROG (its
                              argv[0] as written in the spec); repeatable; default: none
  --tls-ca PEM                connect with TLS, verifying sweepd's certificate against
                              this CA bundle
  --tls-cert PEM --tls-key PEM  client certificate and key (mutual TLS); re-read when
                              they change
  --token-file PATH           bearer token (first line) sent with every call (default:
                              $SWEEPD_TOKEN); needs TLS, never sent in plaintext
  --fault-drop-report-reply P test fault switch: with probability P treat a successful
                              ReportResult as if its reply was lost and resend it (default 0)
  --seed N                    seed of backoff jitter and the fault switch (default: random)
  --metrics-listen HOST:PORT  serve Prometheus /metrics there (port 0 picks one, printed as
                              'sweep-worker metrics on HOST:PORT'; default: none)
  --log-format text|json      log lines as text (default) or one JSON object per line
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
    {"make-model", &MakeModelMain,
     "write a random-weight Gemma 4 model directory from a config.json"},
    {"tokenize", &TokenizeMain,
     "print the token ids of stdin as JSON (--tokenizer FILE --bos on|off)"},
    {"materialize", &MaterializeMain,
     "write an edited (head-pruned / healed) copy of a model directory"},
    {"dump-logits", &DumpLogitsMain,
     "write one engine forward's token ids and logits as safetensors"},
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

// Parses a subcommand's argv (argv[0] is the program or subcommand name) with
// `app`, whose --help CLI11 must not print (each subcommand has its own text).
// On a usage error prints it and returns false.
bool ParseOrExplain(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "sweep-worker %s: %s (see --help)\n",
                 app.get_name().c_str(), e.what());
    return false;
  }
  return true;
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

  WorkerOptions worker;
  WorkerAgentOptions& options = worker.agent;
  const char* env = std::getenv("SWEEPD_COORDINATOR");
  options.coordinator =
      (env != nullptr && *env != '\0') ? env : "127.0.0.1:7070";
  options.name = DefaultName();
  CLI::App app{"sweep-worker run", "run"};
  app.set_help_flag();
  bool help = false;
  app.add_flag("--help,-h", help);
  // A repeated flag keeps its last value, as `--flag value` lists usually do.
  auto add = [&app](const std::string& name, auto* value) {
    return app.add_option(name, *value)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  };
  add("--coordinator", &options.coordinator);
  add("--name", &options.name);
  add("--max-tasks", &options.max_tasks);
  add("--heartbeat-ms", &options.heartbeat_interval_ms);
  add("--drain-grace-s", &worker.drain_grace_s);
  add("--rpc-deadline-ms", &options.rpc_deadline_ms);
  add("--connect-timeout-ms", &options.connect_timeout_ms);
  add("--model", &worker.model_dir);
  add("--dtype", &worker.dtype);
  add("--device", &worker.device);
  add("--prefix-reuse", &worker.prefix_reuse);
  add("--gemm-tuning", &worker.gemm_tuning);
  add("--gemm-tuning-cache", &worker.gemm_tuning_cache);
  add("--prefix-budget-mb", &worker.prefix_budget_mb);
  add("--max-batch-tokens", &worker.max_batch_tokens);
  add("--threads", &worker.cpu_threads);
  add("--device-kind", &options.capabilities.device_kind);
  add("--gpu-count", &options.capabilities.gpu_count);
  add("--gpu-memory-bytes", &options.capabilities.gpu_memory_bytes);
  add("--tp", &options.capabilities.tensor_parallel);
  app.add_option("--model-root", worker.model_roots);
  app.add_option("--data-root", worker.data_roots);
  app.add_option("--verifier-command", worker.verifier_commands);
  add("--artifact-root", &worker.artifact_root);
  add("--tls-ca", &worker.tls.ca_file);
  add("--tls-cert", &worker.tls.cert_file);
  add("--tls-key", &worker.tls.key_file);
  std::string token_file;
  add("--token-file", &token_file);
  add("--fault-drop-report-reply", &options.fault_drop_report_reply);
  add("--seed", &options.seed);
  std::string metrics_listen, log_format = "text";
  add("--metrics-listen", &metrics_listen);
  add("--log-format", &log_format);
  if (!ParseOrExplain(app, argc, argv)) return 2;
  if (help) {
    std::fputs(kRunUsage, stdout);
    return 0;
  }
  const char* env_token = std::getenv("SWEEPD_TOKEN");
  absl::StatusOr<std::string> token =
      ReadClientToken(token_file, env_token != nullptr ? env_token : "");
  if (!token.ok()) {
    std::fprintf(stderr, "sweep-worker: %s\n",
                 std::string(token.status().message()).c_str());
    return 2;
  }
  worker.tls.token = *token;
  LogFormat format;
  if (!ParseLogFormat(log_format, &format)) {
    std::fprintf(stderr, "sweep-worker: --log-format must be text or json\n");
    return 2;
  }
  SetLogFormat(format);
  // Metrics outlive the agent and executors that record into them.
  std::unique_ptr<PrometheusWorkerMetrics> metrics;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint;
  if (!metrics_listen.empty()) {
    metrics = PrometheusWorkerMetrics::Create(
        {MetricsModelName(worker), GpuMemoryProviderFor(worker)});
    auto endpoint =
        MetricsEndpoint::Create(metrics_listen, metrics->collectables());
    if (!endpoint.ok()) {
      std::fprintf(stderr, "sweep-worker: --metrics-listen: %s\n",
                   endpoint.status().ToString().c_str());
      return 1;
    }
    metrics_endpoint = std::move(*endpoint);
    options.metrics = metrics.get();
    std::printf("sweep-worker metrics on %s\n",
                metrics_endpoint->address().c_str());
    std::fflush(stdout);
  }
  absl::Status valid = ValidateWorkerOptions(worker);
  if (!valid.ok()) {
    std::fprintf(stderr, "sweep-worker: %s\n",
                 std::string(valid.message()).c_str());
    return 2;
  }
  absl::StatusOr<WorkerAssembly> assembly = AssembleWorker(worker);
  if (!assembly.ok()) {
    std::fprintf(stderr, "sweep-worker: %s\n",
                 std::string(assembly.status().message()).c_str());
    return 1;
  }
  auto agent = WorkerAgent::Create(assembly->agent_options);
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
  // The subcommand is the first argument when it does not start with '-';
  // everything after it is the subcommand's own argv (its argv[0] is its
  // name). With flags first, or nothing, `run` is meant.
  CLI::App app{"sweep-worker"};
  app.set_help_flag();
  bool help = false;
  app.add_flag("--help,-h", help);
  std::string subcommand;
  app.add_option("subcommand", subcommand);
  try {
    app.parse(std::min(argc, 2), argv);
  } catch (const CLI::ParseError&) {
    // A flag first: `run`'s, parsed by RunMain.
  }
  if (help || subcommand == "help") {
    PrintTopUsage(stdout);
    return 0;
  }
  if (subcommand.empty()) return RunMain(argc, argv);
  for (const Subcommand& sub : kSubcommands) {
    if (subcommand == sub.name) return sub.main(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "sweep-worker: unknown subcommand '%s'\n\n",
               subcommand.c_str());
  PrintTopUsage(stderr);
  return 2;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
