// sweepctl: the user's command-line client of the Coordinator service.
// RunSweepctl parses the global flags, picks a subcommand from the dispatch
// table and runs it against one gRPC channel. sweepctl_main.cc only forwards
// argv and the real streams; tests call RunSweepctl with string streams, a
// FakeClock and a test server's address.
//
// Global flags: --coordinator HOST:PORT (default $SWEEPD_COORDINATOR, else
// 127.0.0.1:7070),
// --timeout-s N (deadline of every unary call, default 30), --tls-ca,
// --tls-cert, --tls-key, --token-file (default $SWEEPD_TOKEN;
// docs/SECURITY.md),
// --help.
// Exit codes: 0 ok; 1 RPC, server or input error (the status code and message
// go to stderr); 2 usage error; watch: 3 when the sweep ends FAILED, 4 when
// CANCELLED.
//
// Ownership: CtlEnv borrows its streams and clock. Not thread-safe (one call at
// a time).
#ifndef SWEEPD_CLIENT_CTL_COMMANDS_H_
#define SWEEPD_CLIENT_CTL_COMMANDS_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"
#include "sweepd/v1/coordinator.grpc.pb.h"

namespace sweepd {

inline constexpr char kDefaultCoordinatorAddress[] = "127.0.0.1:7070";
inline constexpr int kCtlExitOk = 0;
inline constexpr int kCtlExitError = 1;
inline constexpr int kCtlExitUsage = 2;
inline constexpr int kCtlExitSweepFailed = 3;
inline constexpr int kCtlExitSweepCancelled = 4;

struct CtlEnv {
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  // Whether `out` is a terminal: watch redraws one line with '\r' when true.
  bool out_is_tty = false;
  Clock* clock = nullptr;  // rates, ETA and reconnect backoff
  // Value of $SWEEPD_COORDINATOR (empty when unset).
  std::string env_coordinator;
  // Value of $SWEEPD_TOKEN (empty when unset): the bearer token when no
  // --token-file is given.
  std::string env_token;
};

// What a subcommand gets: the connection, the deadline policy and the streams.
struct CtlContext {
  CtlEnv env;
  std::string coordinator;  // HOST:PORT
  absl::Duration timeout = absl::Seconds(30);
  sweepd::v1::Coordinator::StubInterface* stub = nullptr;  // borrowed
  std::string command;                                     // for error messages

  // A ClientContext with the per-call deadline set.
  std::unique_ptr<grpc::ClientContext> CallContext() const;
  // Prints "sweepctl <command>: <CODE>: <message>" to err and returns
  // kCtlExitError.
  int RpcError(const grpc::Status& status) const;
};

struct CtlCommand {
  std::string name;
  std::string args;     // "SWEEP [--format table|csv|json]"
  std::string summary;  // one line
  std::string help;     // details for `sweepctl COMMAND --help`
  // Runs with the arguments after the command name (global flags removed).
  std::function<int(CtlContext& ctx, const std::vector<std::string>& args)> run;
};

// The dispatch table: built-in commands plus any registered with
// RegisterCtlCommand.
const std::vector<CtlCommand>& CtlCommands();
// Adds a command (e.g. `report`) to the table; call before RunSweepctl.
void RegisterCtlCommand(CtlCommand command);

// --coordinator flag value, else $SWEEPD_COORDINATOR, else 127.0.0.1:7070.
std::string ResolveCoordinatorAddress(const std::string& flag_value,
                                      const std::string& env_value);

// Runs sweepctl with `args` (argv without argv[0]); returns the exit code.
int RunSweepctl(const std::vector<std::string>& args, const CtlEnv& env);

// Streams progress of `sweep_id` until it ends; reconnects when the stream
// breaks.
int WatchSweepProgress(CtlContext& ctx, const std::string& sweep_id);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_CTL_COMMANDS_H_
