// Starting from a launcher's environment instead of a unique id passed by the application:
// Open MPI (mpirun), Slurm (srun) and torchrun-style variables. See docs/ENV.md.
#pragma once

#include <string>

#include "bootstrap/unique_id.h"

namespace chorus {

struct LaunchInfo {
  std::string launcher;  // "openmpi", "slurm", "torchrun"
  int rank = -1;
  int size = 0;
  int localRank = -1;
  UniqueIdData id;       // root address, secret and comm id every rank derives alike
  std::string rootFrom;  // where the root address came from, for logs and errors
};

// "host:port", "[v6]:port" -> its parts (port 1-65535; the host is not resolved). Throws
// chorusInvalidArgument naming `what` (the variable) when malformed.
struct HostPort {
  std::string host;
  int port = 0;
};
HostPort splitHostPort(const std::string& text, const char* what);

// Reads the environment; throws chorusInvalidUsage when no launcher is recognized or the root
// address cannot be determined (naming the variables to set).
LaunchInfo detectLauncher();

}  // namespace chorus
