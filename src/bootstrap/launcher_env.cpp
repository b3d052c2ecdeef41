#include "bootstrap/launcher_env.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "bootstrap/socket.h"
#include "base/error.h"
#include "base/hash.h"
#include "base/log.h"

namespace chorus {
namespace {

const char* env(const char* name) {
  const char* v = getenv(name);
  return (v && *v) ? v : nullptr;
}

int envRank(const char* name) {
  const char* v = env(name);
  if (!v) return -1;
  char* end = nullptr;
  long x = strtol(v, &end, 10);
  CHORUS_CHECK_ARG(end && *end == '\0' && x >= 0 && x < (1L << 30), "%s=\"%s\" is not a valid rank/size", name, v);
  return static_cast<int>(x);
}

std::string firstOf(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (const char* v = env(n)) return std::string(n) + "=" + v;
  return "";
}

}  // namespace

HostPort splitHostPort(const std::string& text, const char* what) {
  size_t colon = text.rfind(':');
  CHORUS_CHECK_ARG(colon != std::string::npos && colon > 0, "%s=\"%s\" must be host:port", what, text.c_str());
  HostPort hp;
  hp.host = text.substr(0, colon);
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']') hp.host = hp.host.substr(1, hp.host.size() - 2);
  // The port: 1-5 digits, nothing else (strtol would also take blanks, signs and "0x").
  std::string port = text.substr(colon + 1);
  bool digits = !port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos;
  hp.port = digits ? std::stoi(port) : 0;
  CHORUS_CHECK_ARG(hp.port > 0 && hp.port < 65536, "%s=\"%s\": bad port", what, text.c_str());
  CHORUS_CHECK_ARG(hp.host.find('\0') == std::string::npos, "%s: host name holds a NUL byte", what);
  return hp;
}

LaunchInfo detectLauncher() {
  LaunchInfo info;
  std::string jobId;
  bool allLocal = false;
  if (env("OMPI_COMM_WORLD_SIZE")) {
    info.launcher = "openmpi";
    info.rank = envRank("OMPI_COMM_WORLD_RANK");
    info.size = envRank("OMPI_COMM_WORLD_SIZE");
    info.localRank = envRank("OMPI_COMM_WORLD_LOCAL_RANK");
    jobId = firstOf({"OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE", "OMPI_MCA_orte_hnp_uri"});
    allLocal = envRank("OMPI_COMM_WORLD_LOCAL_SIZE") == info.size;
  } else if (env("SLURM_NTASKS") && env("SLURM_PROCID")) {
    info.launcher = "slurm";
    info.rank = envRank("SLURM_PROCID");
    info.size = envRank("SLURM_NTASKS");
    info.localRank = envRank("SLURM_LOCALID");
    jobId = firstOf({"SLURM_JOB_ID"}) + "." + firstOf({"SLURM_STEP_ID"});
    allLocal = envRank("SLURM_NNODES") == 1;
  } else if (env("WORLD_SIZE") && env("RANK")) {
    info.launcher = "torchrun";
    info.rank = envRank("RANK");
    info.size = envRank("WORLD_SIZE");
    info.localRank = envRank("LOCAL_RANK");
    jobId = firstOf({"TORCHELASTIC_RUN_ID"});
    allLocal = envRank("LOCAL_WORLD_SIZE") == info.size;
  } else {
    CHORUS_THROW(chorusInvalidUsage,
                 "no launcher environment found: expected OMPI_COMM_WORLD_RANK/SIZE (mpirun), SLURM_PROCID/NTASKS (srun) or "
                 "RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT (torchrun)");
  }
  CHORUS_CHECK_ARG(info.size >= 1 && info.rank >= 0 && info.rank < info.size, "%s environment gives rank %d of %d",
                   info.launcher.c_str(), info.rank, info.size);

  // Root address: CHORUS_ROOT_ADDR, else MASTER_ADDR with MASTER_PORT+1 (torchrun's own store
  // holds MASTER_PORT), else, when every rank is on this host, loopback with a port derived
  // from the job id.
  const char* rootAddr = env("CHORUS_ROOT_ADDR");
  if (rootAddr) {
    HostPort hp = splitHostPort(rootAddr, "CHORUS_ROOT_ADDR");
    info.id.root = parseAddress(hp.host, hp.port);
    info.rootFrom = "CHORUS_ROOT_ADDR";
  } else if (env("MASTER_ADDR") && env("MASTER_PORT")) {
    long long master = envInt("MASTER_PORT", 0);
    CHORUS_CHECK_ARG(master > 0 && master < 65535, "MASTER_PORT=\"%s\" is not a port", env("MASTER_PORT"));
    long long port = envInt("CHORUS_ROOT_PORT", master + 1);
    CHORUS_CHECK_ARG(port > 0 && port < 65536, "CHORUS_ROOT_PORT must be a port number");
    info.id.root = parseAddress(env("MASTER_ADDR"), static_cast<int>(port));
    info.rootFrom = "MASTER_ADDR and MASTER_PORT+1";
  } else if (allLocal || info.size == 1) {
    long long port = envInt("CHORUS_ROOT_PORT", 20000 + static_cast<long long>(fnv1a(jobId) % 30000));
    CHORUS_CHECK_ARG(port > 0 && port < 65536, "CHORUS_ROOT_PORT must be a port number");
    info.id.root = parseAddress("127.0.0.1", static_cast<int>(port));
    info.rootFrom = "loopback (all ranks on this host), port from the job id";
  } else {
    CHORUS_THROW(chorusInvalidUsage,
                 "%s launch across hosts needs the root's address: set CHORUS_ROOT_ADDR=host:port (reachable from every rank; "
                 "rank 0 listens there)",
                 info.launcher.c_str());
  }

  // Secret: CHORUS_SECRET when the operator provides one; else derived from the job identity,
  // which keeps other jobs out by accident but is not a defence against a local attacker.
  std::string secretText = envString("CHORUS_SECRET", "");
  if (secretText.empty()) {
    secretText = info.launcher + "|" + jobId + "|" + addrToString(info.id.root);
    CHORUS_INFO(kLogBootstrap, "no CHORUS_SECRET: secret derived from the launcher's job id (%s)", jobId.c_str());
  }
  // The n-th chorusCommInitFromEnv of every rank forms the n-th communicator: mix n in, so that
  // two communicators of one job never share a secret, comm id (shm names) or root port.
  static std::atomic<unsigned> calls{0};
  secretText += "|" + std::to_string(calls.fetch_add(1));
  info.id.secret[0] = fnv1a(secretText);
  info.id.secret[1] = fnv1a(secretText, info.id.secret[0] | 1);
  info.id.commId = fnv1a("comm|" + secretText);
  CHORUS_INFO(kLogBootstrap, "launcher %s: rank %d of %d (local rank %d), root %s (%s)", info.launcher.c_str(), info.rank, info.size,
              info.localRank,
              addrToString(info.id.root).c_str(), info.rootFrom.c_str());
  return info;
}

}  // namespace chorus
