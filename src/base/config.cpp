#include "base/config.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace chorus {

std::string envString(const char* name, const std::string& dflt) {
  const char* v = getenv(name);
  return (v && *v) ? std::string(v) : dflt;
}

long long envInt(const char* name, long long dflt) {
  const char* v = getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  CHORUS_CHECK_ARG(errno == 0 && end && *end == '\0', "environment variable %s=\"%s\" is not an integer", name, v);
  return x;
}

double envDouble(const char* name, double dflt) {
  const char* v = getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  errno = 0;
  double x = strtod(v, &end);
  CHORUS_CHECK_ARG(errno == 0 && end && *end == '\0' && std::isfinite(x), "environment variable %s=\"%s\" is not a number", name, v);
  return x;
}

size_t envBytes(const char* name, size_t dflt) {
  const char* v = getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  CHORUS_CHECK_ARG(errno == 0 && end != v && v[0] != '-', "environment variable %s=\"%s\" is not a byte count", name, v);
  unsigned long long mult = 1;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': mult = 1ull << 10; ++end; break;
    case 'm': case 'M': mult = 1ull << 20; ++end; break;
    case 'g': case 'G': mult = 1ull << 30; ++end; break;
    default: end = nullptr;
  }
  CHORUS_CHECK_ARG(end && *end == '\0', "environment variable %s=\"%s\" has an unknown suffix (use K, M or G)", name, v);
  CHORUS_CHECK_ARG(x <= SIZE_MAX / mult, "environment variable %s=\"%s\" is too large", name, v);
  return static_cast<size_t>(x * mult);
}

bool Config::cpuHasFastStringCopy() {
  static const bool fast = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream words(line);
      std::string w;
      while (words >> w)
        if (w == "erms" || w == "fsrm") return true;
      return false;
    }
    return false;
  }();
  return fast;
}

double Config::diagSeconds() const {
  if (diagTimeoutSec > 0) return diagTimeoutSec;
  return std::clamp(timeoutSec / 2, 1.0, 5.0);
}

double Config::probeSeconds() const { return std::clamp(timeoutSec / 8, 0.1, 1.0); }

Config Config::fromEnv() {
  Config c;
  c.timeoutSec = envDouble("CHORUS_TIMEOUT", c.timeoutSec);
  // The cap keeps deadline arithmetic far from overflow (about 11.5 days).
  CHORUS_CHECK_ARG(c.timeoutSec > 0 && c.timeoutSec <= 1e6, "CHORUS_TIMEOUT must be in (0, 1e6] seconds");
  c.diagTimeoutSec = envDouble("CHORUS_DIAG_TIMEOUT", 0);
  CHORUS_CHECK_ARG(c.diagTimeoutSec >= 0 && c.diagTimeoutSec <= 3600, "CHORUS_DIAG_TIMEOUT must be in [0, 3600] seconds");
  std::string sig = envString("CHORUS_DIAG_SIGNAL", "");
  if (sig == "USR1" || sig == "SIGUSR1") {
    c.diagSignal = SIGUSR1;
  } else if (sig == "USR2" || sig == "SIGUSR2") {
    c.diagSignal = SIGUSR2;
  } else if (!sig.empty()) {
    c.diagSignal = static_cast<int>(envInt("CHORUS_DIAG_SIGNAL", 0));
    CHORUS_CHECK_ARG(c.diagSignal > 0 && c.diagSignal < NSIG && c.diagSignal != SIGKILL && c.diagSignal != SIGSTOP,
                     "CHORUS_DIAG_SIGNAL=\"%s\" is not USR1, USR2 or a catchable signal number", sig.c_str());
  }
  c.shrinkTimeoutSec = envDouble("CHORUS_SHRINK_TIMEOUT", c.shrinkTimeoutSec);
  CHORUS_CHECK_ARG(c.shrinkTimeoutSec > 0 && c.shrinkTimeoutSec <= 3600, "CHORUS_SHRINK_TIMEOUT must be in (0, 3600] seconds");
  c.spin = envString("CHORUS_SPIN", c.spin);
  CHORUS_CHECK_ARG(c.spin == "auto" || c.spin == "1" || c.spin == "0", "CHORUS_SPIN=\"%s\" is not one of: auto, 1, 0", c.spin.c_str());
  c.transport = envString("CHORUS_TRANSPORT", "");
  CHORUS_CHECK_ARG(c.transport.empty() || c.transport == "shm" || c.transport == "tcp" || c.transport == "ucx" ||
                       c.transport == "ofi" || c.transport == "plugin",
                   "CHORUS_TRANSPORT=\"%s\" is not one of: shm, tcp, ucx, ofi, plugin", c.transport.c_str());
  c.transportMap = envString("CHORUS_TRANSPORT_MAP", "");
  c.netPlugin = envString("CHORUS_NET_PLUGIN", "");
  c.netChunkBytes = envBytes("CHORUS_NET_CHUNK", c.netChunkBytes);
  CHORUS_CHECK_ARG(c.netChunkBytes >= 4096 && c.netChunkBytes % 64 == 0, "CHORUS_NET_CHUNK must be >= 4096 and a multiple of 64");
  long long inflight = envInt("CHORUS_NET_INFLIGHT", c.netInflight);
  CHORUS_CHECK_ARG(inflight >= 1 && inflight <= 256, "CHORUS_NET_INFLIGHT must be in 1..256");
  c.netInflight = static_cast<int>(inflight);
  c.socketIfname = envString("CHORUS_SOCKET_IFNAME", "");
  long long nsocks = envInt("CHORUS_TCP_NSOCKS", c.tcpNumSockets);
  CHORUS_CHECK_ARG(nsocks >= 1 && nsocks <= 64, "CHORUS_TCP_NSOCKS must be in 1..64");
  c.tcpNumSockets = static_cast<int>(nsocks);
  c.tcpChunkBytes = envBytes("CHORUS_TCP_CHUNK", c.tcpChunkBytes);
  CHORUS_CHECK_ARG(c.tcpChunkBytes >= 4096 && c.tcpChunkBytes % 64 == 0, "CHORUS_TCP_CHUNK must be >= 4096 and a multiple of 64");
  c.shmSlotBytes = envBytes("CHORUS_SHM_SLOT_BYTES", c.shmSlotBytes);
  CHORUS_CHECK_ARG(c.shmSlotBytes >= 4096 && c.shmSlotBytes % 64 == 0, "CHORUS_SHM_SLOT_BYTES must be >= 4096 and a multiple of 64");
  long long nslots = envInt("CHORUS_SHM_NSLOTS", c.shmNumSlots);
  CHORUS_CHECK_ARG(nslots >= 2 && nslots <= 1024, "CHORUS_SHM_NSLOTS must be in 2..1024");
  c.shmNumSlots = static_cast<int>(nslots);
  c.shmFifoBytes = envBytes("CHORUS_SHM_FIFO_BYTES", c.shmFifoBytes);
  CHORUS_CHECK_ARG(c.shmFifoBytes >= c.shmSlotBytes && c.shmFifoBytes % 64 == 0 && c.shmFifoBytes <= (size_t(1) << 30),
                   "CHORUS_SHM_FIFO_BYTES must be a multiple of 64, at least CHORUS_SHM_SLOT_BYTES (%zu) and at most 1G",
                   c.shmSlotBytes);
  std::string cma = envString("CHORUS_SHM_CMA", "auto");
  CHORUS_CHECK_ARG(cma == "auto" || cma == "0" || cma == "1", "CHORUS_SHM_CMA=\"%s\" is not one of: auto, 0, 1", cma.c_str());
  c.shmUseCma = cma == "auto" ? cpuHasFastStringCopy() : cma == "1";
  c.shmCmaCopies = cma != "0";
  c.shmCmaCopyThreshold = envBytes("CHORUS_SHM_CMA_COPY_THRESHOLD", c.shmCmaCopyThreshold);
  c.shmCmaThreshold = envBytes("CHORUS_SHM_CMA_THRESHOLD", c.shmCmaThreshold);
  c.deviceSliceBytes = envBytes("CHORUS_DEVICE_SLICE", c.deviceSliceBytes);
  c.sliceBytes = envBytes("CHORUS_SLICE_BYTES", c.sliceBytes);
  // The floor keeps schedules small: a 1 GiB all-reduce in 4 KiB slices is ~0.5 M steps.
  CHORUS_CHECK_ARG(c.sliceBytes >= 4096 && c.sliceBytes % 64 == 0, "CHORUS_SLICE_BYTES must be >= 4096 and a multiple of 64");
  c.hostId = envString("CHORUS_HOSTID", "");
  c.clusterFile = envString("CHORUS_CLUSTER_FILE", "");
  c.algoTune = envString("CHORUS_ALGO", "");
  c.tuneLatencyUs = envDouble("CHORUS_TUNE_LATENCY_US", 0);
  c.tuneBandwidthGBps = envDouble("CHORUS_TUNE_BANDWIDTH_GBPS", 0);
  CHORUS_CHECK_ARG(c.tuneLatencyUs >= 0 && c.tuneBandwidthGBps >= 0, "CHORUS_TUNE_LATENCY_US and CHORUS_TUNE_BANDWIDTH_GBPS must be >= 0");
  return c;
}

}  // namespace chorus
