// sweepd: the coordinator process. Parses flags into CoordinatorOptions, builds
// the Coordinator (coordinator/coordinator.h: snapshot restore, ledger,
// scheduler, services, server), runs its maintenance pass every second and
// shuts it down cleanly on SIGTERM/SIGINT. Everything else lives in
// sweepd::coordinator.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_digest_cache.h"
#include "common/logging.h"
#include "coordinator/coordinator.h"
#include "coordinator/server_security.h"
#include "coordinator/service.h"
#include "dashboard/dashboard_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070",
          "HOST:PORT to serve on. Port 0 picks a free port; the chosen address "
          "is printed as "
          "'sweepd listening on HOST:PORT'.");
ABSL_FLAG(std::string, port_file, "",
          "If set, the chosen port number is written to this file once the "
          "server listens.");
ABSL_FLAG(std::string, ledger, "",
          "Path of the SQLite ledger (created if missing). Required.");
ABSL_FLAG(std::string, model_root, "",
          "Directory that sweep model paths must resolve into (relative paths "
          "are taken from "
          "it).");
ABSL_FLAG(std::string, data_root, "",
          "Directory that sweep dataset paths must resolve into (relative "
          "paths are taken "
          "from it).");
ABSL_FLAG(std::string, artifact_root, "",
          "Directory of the artifact store (docs/ARTIFACTS.md): the same "
          "directory or bucket mount the workers' --artifact-root names. With "
          "it, the artifacts a result references are checked before the "
          "result commits, and sweepctl artifacts fetch/gc work. Not a model "
          "or data root: only object paths are ever read from it.");
ABSL_FLAG(std::string, artifact_verify, "size",
          "How reported artifacts are checked before a result commits: "
          "'size' (exists with the reported size) or 'sha256' (also hashed).");
ABSL_FLAG(int, lease_seconds, 60,
          "Lease length for sweeps whose policy.lease_seconds is 0; also how "
          "long a silent "
          "worker keeps its prefix-share groups.");
ABSL_FLAG(std::string, default_dtype, "float32",
          "Compute dtype (float32|bfloat16) of sweeps whose model.dtype is "
          "empty; resolved at submit time into every task key.");
ABSL_FLAG(std::string, snapshot_dir, "",
          "Durable directory for ledger snapshots. On start, if the ledger is "
          "missing or "
          "empty, the newest intact snapshot here is restored and every sweep "
          "resumes.");
ABSL_FLAG(std::string, fingerprint_cache, sweepd::DefaultFileDigestCachePath(),
          "Cache file of per-file SHA-256 digests for model fingerprints "
          "(keyed by path, size, mtime, inode, device), so a large checkpoint "
          "is read once; empty = no cache. Default: $SWEEPD_FINGERPRINT_CACHE, "
          "else $XDG_CACHE_HOME/sweepd/fingerprints.json, else "
          "~/.cache/sweepd/fingerprints.json.");
ABSL_FLAG(int, snapshot_interval_s, 300,
          "Seconds between snapshots (with --snapshot-dir).");
ABSL_FLAG(int, snapshot_keep, 3, "Snapshots kept in --snapshot-dir.");
ABSL_FLAG(int64_t, max_tasks_per_sweep, 1'000'000,
          "Most tasks one sweep may expand to; larger grids are refused at "
          "submit, before any task is built.");
ABSL_FLAG(int64_t, max_spec_bytes, 1 << 20,
          "Largest accepted sweep spec (serialized bytes).");
ABSL_FLAG(int, max_message_bytes, 64 << 20,
          "Largest gRPC request accepted / response sent.");
ABSL_FLAG(bool, allow_insecure_remote, false,
          "Allow plaintext gRPC, or serving without --token-file, on a "
          "non-loopback --listen address (insecure).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain served by the listener (with --tls-key); "
          "re-read when it changes (docs/SECURITY.md: rotation).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle that client certificates must chain to (mutual TLS; "
          "a presented certificate is verified).");
ABSL_FLAG(bool, tls_require_client_cert, false,
          "With --tls-client-ca: refuse clients without a valid certificate.");
ABSL_FLAG(int, tls_refresh_s, 60,
          "Seconds between re-reads of the --tls-* files.");
ABSL_FLAG(std::string, token_file, "",
          "Bearer tokens and their roles (NAME ROLE SHA256 [cert=ID] lines; "
          "docs/SECURITY.md); re-read when it changes. Needs TLS.");

ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT of a plaintext Prometheus /metrics endpoint without "
          "tokens (port 0 picks one; printed as 'sweepd metrics on "
          "HOST:PORT'); empty = none. A non-loopback address needs "
          "--allow-insecure-remote (the dashboard serves /metrics too).");
ABSL_FLAG(std::string, http_listen, "",
          "HOST:PORT of the read-only web dashboard (sweeps, tasks, workers, "
          "live report charts; also /metrics). Port 0 picks one, printed as "
          "'sweepd dashboard on http://HOST:PORT/' (https with --tls-cert: "
          "the same certificate files). With --token-file every request but "
          "the page needs a reader, submitter or admin bearer token. A "
          "non-loopback address needs TLS and --token-file, or "
          "--allow-insecure-remote.");
ABSL_FLAG(std::string, log_format, "text",
          "Log lines as 'text' or 'json' (one JSON object per line).");

namespace sweepd {
namespace {

int Run() {
  CoordinatorOptions options;
  options.ledger_path = absl::GetFlag(FLAGS_ledger);
  options.listen = absl::GetFlag(FLAGS_listen);
  options.model_root = absl::GetFlag(FLAGS_model_root);
  options.data_root = absl::GetFlag(FLAGS_data_root);
  options.policy.lease_seconds = absl::GetFlag(FLAGS_lease_seconds);
  options.snapshot_dir = absl::GetFlag(FLAGS_snapshot_dir);
  options.snapshot_interval_ms =
      int64_t{absl::GetFlag(FLAGS_snapshot_interval_s)} * 1000;
  options.snapshot_keep = absl::GetFlag(FLAGS_snapshot_keep);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.artifact_root = absl::GetFlag(FLAGS_artifact_root);
  const std::string artifact_verify = absl::GetFlag(FLAGS_artifact_verify);
  if (artifact_verify != "size" && artifact_verify != "sha256") {
    std::cerr << "sweepd: --artifact-verify must be size or sha256, got '"
              << artifact_verify << "'\n";
    return 2;
  }
  options.rehash_reported_artifacts = artifact_verify == "sha256";
  LogFormat log_format;
  if (!ParseLogFormat(absl::GetFlag(FLAGS_log_format), &log_format)) {
    std::cerr << "sweepd: --log-format must be text or json, got '"
              << absl::GetFlag(FLAGS_log_format) << "'\n";
    return 2;
  }
  SetLogFormat(log_format);
  options.service.planner.default_dtype = absl::GetFlag(FLAGS_default_dtype);
  options.service.planner.fingerprint_cache =
      absl::GetFlag(FLAGS_fingerprint_cache);
  options.service.planner.max_tasks = absl::GetFlag(FLAGS_max_tasks_per_sweep);
  options.service.max_spec_bytes = absl::GetFlag(FLAGS_max_spec_bytes);
  options.service.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (options.service.planner.max_tasks < 1 ||
      options.service.max_spec_bytes < 1024 ||
      options.service.max_message_bytes < 64 * 1024) {
    std::cerr << "sweepd: --max-tasks-per-sweep must be >= 1, "
                 "--max-spec-bytes >= 1024 and --max-message-bytes >= 65536\n";
    return 2;
  }
  if (options.service.planner.default_dtype != "float32" &&
      options.service.planner.default_dtype != "bfloat16") {
    std::cerr << "sweepd: --default-dtype must be float32 or bfloat16, got '"
              << options.service.planner.default_dtype << "'\n";
    return 2;
  }
  if (options.ledger_path.empty()) {
    std::cerr << "sweepd: --ledger PATH is required (see --help)\n";
    return 2;
  }
  SecurityOptions& security = options.security;
  security.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  security.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  security.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  security.tls.require_client_cert =
      absl::GetFlag(FLAGS_tls_require_client_cert);
  security.tls.refresh_interval_s =
      static_cast<unsigned>(std::max(1, absl::GetFlag(FLAGS_tls_refresh_s)));
  security.token_file = absl::GetFlag(FLAGS_token_file);
  security.allow_insecure_remote = absl::GetFlag(FLAGS_allow_insecure_remote);
  if (absl::Status s = CheckListenerSecurity(
          options.listen, security, options.model_root, options.data_root);
      !s.ok()) {
    std::cerr << "sweepd: " << s.message() << "\n";
    return 2;
  }
  const std::string http_listen = absl::GetFlag(FLAGS_http_listen);
  if (absl::Status s = CheckHttpListenerSecurity(
          http_listen, options.metrics_listen, security);
      !s.ok()) {
    std::cerr << "sweepd: " << s.message() << "\n";
    return 2;
  }
  if (options.policy.lease_seconds <= 0) {
    std::cerr << "sweepd: --lease-seconds must be > 0\n";
    return 2;
  }
  if (!options.snapshot_dir.empty() && options.snapshot_interval_ms <= 0) {
    std::cerr << "sweepd: --snapshot-interval-s must be > 0\n";
    return 2;
  }

  // Signals are taken synchronously by this thread; block them before any
  // thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto coordinator = Coordinator::Create(options);
  if (!coordinator.ok()) {
    std::cerr << "sweepd: " << coordinator.status() << "\n";
    return 1;
  }
  const int port = (*coordinator)->port();
  std::cout << "sweepd listening on " << (*coordinator)->address() << std::endl;
  if (const MetricsEndpoint* m = (*coordinator)->metrics_endpoint()) {
    std::cout << "sweepd metrics on " << m->address() << std::endl;
  }
  std::unique_ptr<DashboardServer> dashboard;
  if (!http_listen.empty()) {
    DashboardApiOptions api;
    api.scheduler = (*coordinator)->scheduler();
    api.ledger = (*coordinator)->ledger();
    api.worker_timeout_ms = int64_t{options.policy.lease_seconds} * 1000;
    api.metrics = (*coordinator)->metrics()->collectables();
    DashboardServerOptions http;
    http.listen = http_listen;
    http.authorizer = (*coordinator)->authorizer();
    http.tls_cert_file = security.tls.cert_file;
    http.tls_key_file = security.tls.key_file;
    http.tls_refresh_interval_ms =
        int64_t{security.tls.refresh_interval_s} * 1000;
    auto server = DashboardServer::Create(http, api);
    if (!server.ok()) {
      std::cerr << "sweepd: " << server.status() << "\n";
      return 1;
    }
    dashboard = std::move(*server);
    std::cout << "sweepd dashboard on " << dashboard->url() << std::endl;
  }
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    // Written to a temp name and renamed so readers never see a partial number.
    const std::string tmp = port_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << port << "\n";
    }
    if (std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      std::cerr << "sweepd: cannot write --port-file " << port_file << "\n";
      return 1;
    }
  }

  int exit_code = 0;
  while (true) {
    timespec wait{1, 0};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT) {
      SWEEPD_LOG(INFO) << "signal " << sig << ": shutting down";
      break;
    }
    absl::Status health = (*coordinator)->Tick();
    if (!health.ok()) {
      SWEEPD_LOG(ERROR)
          << "ledger failed, exiting so a supervisor restarts sweepd: "
          << health;
      exit_code = 1;
      break;
    }
  }

  dashboard.reset();  // it reads the scheduler and ledger
  absl::Status closed = (*coordinator)->Shutdown();
  if (!closed.ok()) {
    SWEEPD_LOG(ERROR) << "closing the ledger: " << closed;
    exit_code = 1;
  }
  SWEEPD_LOG(INFO) << "sweepd stopped";
  return exit_code;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "sweepd: the sweep coordinator (gRPC services Coordinator and "
      "WorkerGateway, plus "
      "grpc.health.v1 and server reflection).\n"
      "Usage: sweepd --ledger PATH [--listen HOST:PORT] [--port-file PATH] "
      "[--model-root DIR] [--data-root DIR] [--artifact-root DIR "
      "[--artifact-verify size|sha256]] [--lease-seconds N] "
      "[--snapshot-dir DIR --snapshot-interval-s N --snapshot-keep N] "
      "[--max-tasks-per-sweep N --max-spec-bytes N --max-message-bytes N] "
      "[--tls-cert PEM --tls-key PEM [--tls-client-ca PEM "
      "[--tls-require-client-cert]]] [--token-file PATH] "
      "[--allow-insecure-remote] [--metrics-listen HOST:PORT] "
      "[--http-listen HOST:PORT] [--log-format text|json]\n"
      "Flags may be written --flag=value or --flag value; dashes and "
      "underscores are "
      "equivalent (--port-file == --port_file).\n"
      "SIGTERM/SIGINT: stop accepting calls, drain the ledger queue, exit 0. "
      "Killed with -9, "
      "a restart on the same ledger resumes every sweep.");
  // absl flags use underscores; accept the documented dashed spellings too.
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& a = args[i];
    if (a == "--") break;
    if (a.rfind("--", 0) != 0) continue;
    const size_t eq = a.find('=');
    for (size_t j = 2; j < std::min(eq, a.size()); ++j) {
      if (a[j] == '-') a[j] = '_';
    }
  }
  std::vector<char*> argv2;
  for (auto& a : args) argv2.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(argv2.size()), argv2.data());
  // Lock-order cycle detection costs a graph update on every contended lock;
  // the unit tests (debug builds) keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return sweepd::Run();
}
