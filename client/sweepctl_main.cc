// sweepctl: the sweepd command-line client. All logic lives in
// client/ctl_commands.cc.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/artifacts_command.h"
#include "client/ctl_commands.h"
#include "client/ledger_command.h"
#include "client/report_command.h"
#include "common/clock.h"

int main(int argc, char** argv) {
  sweepd::CtlEnv env;
  env.out = &std::cout;
  env.err = &std::cerr;
  env.out_is_tty = isatty(STDOUT_FILENO) != 0;
  env.clock = sweepd::Clock::Real();
  if (const char* addr = std::getenv("SWEEPD_COORDINATOR"))
    env.env_coordinator = addr;
  if (const char* token = std::getenv("SWEEPD_TOKEN")) env.env_token = token;
  sweepd::RegisterCtlCommand(sweepd::ReportCtlCommand());
  sweepd::RegisterCtlCommand(sweepd::BackupCtlCommand());
  sweepd::RegisterCtlCommand(sweepd::RestoreCtlCommand());
  sweepd::RegisterCtlCommand(sweepd::ArtifactsCtlCommand());
  return sweepd::RunSweepctl(std::vector<std::string>(argv + 1, argv + argc),
                             env);
}
