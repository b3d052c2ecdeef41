// devices / getProperties of the UCX plugin.
//
// One device: UCX chooses its own transports and lanes per connection (UCX_TLS, UCX_NET_DEVICES).
// The properties are what can be known without a connection: when UCX_NET_DEVICES names exactly
// one device, its link speed, PCI path and NUMA node are read from sysfs ("mlx5_0:1" from
// /sys/class/infiniband, "eth0" from /sys/class/net); otherwise they are reported unknown (speed 0,
// pciPath "", numaNode -1). Latency is reported unknown (0): it depends on the transport UCX picks
// per peer (shared memory on one host, the network across hosts).
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "transports/ucx/ucx_comm.h"
#include "transports/ucx/ucx_state.h"

namespace chorus::ucxnet {

namespace {

// Largest message one isend may carry: UCX itself has no practical limit; 1 GiB keeps a single
// post's buffer (and a receiver's posted buffer) within what Chorus fragments anyway.
constexpr size_t kMaxMessageBytes = size_t{1} << 30;

bool readLine(const std::string& path, char* buf, size_t n) {
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return false;
  const bool ok = fgets(buf, static_cast<int>(n), f) != nullptr;
  fclose(f);
  return ok;
}

// sysfs facts about the one device UCX_NET_DEVICES names.
void probeDevice(const char* spec, chorusNetProperties_v1_t* props) {
  if (!spec || !*spec || strchr(spec, ',') || strcmp(spec, "all") == 0) return;
  std::string name(spec);
  std::string devDir;
  char line[128];
  const size_t colon = name.find(':');
  if (colon != std::string::npos) {
    // An RDMA device "mlx5_0:1": rate is "100 Gb/sec (4X EDR)".
    const std::string dev = name.substr(0, colon);
    const std::string port = name.substr(colon + 1);
    devDir = "/sys/class/infiniband/" + dev + "/device";
    if (readLine("/sys/class/infiniband/" + dev + "/ports/" + port + "/rate", line, sizeof(line))) {
      const double gbps = strtod(line, nullptr);
      if (gbps > 0 && gbps * 1000 < INT32_MAX) props->speedMbps = static_cast<int32_t>(gbps * 1000);
    }
  } else {
    // A network interface: speed in Mbit/s (-1 or unreadable when the driver does not know).
    devDir = "/sys/class/net/" + name + "/device";
    if (readLine("/sys/class/net/" + name + "/speed", line, sizeof(line))) {
      const long mbps = strtol(line, nullptr, 10);
      if (mbps > 0 && mbps < INT32_MAX) props->speedMbps = static_cast<int32_t>(mbps);
    }
  }
  char real[PATH_MAX];
  if (realpath(devDir.c_str(), real) && strstr(real, "/pci") && strlen(real) < sizeof(props->pciPath))
    memcpy(props->pciPath, real, strlen(real) + 1);
  if (readLine(devDir + "/numa_node", line, sizeof(line))) props->numaNode = static_cast<int32_t>(strtol(line, nullptr, 10));
}

}  // namespace

chorusNetResult_t ucxDevices(int* ndev) {
  if (chorusNetResult_t r = requireReady("devices")) return r;
  if (ndev == nullptr) return chorusNetInvalidArgument;
  *ndev = 1;
  return chorusNetSuccess;
}

chorusNetResult_t ucxGetProperties(int dev, chorusNetProperties_v1_t* props) {
  if (chorusNetResult_t r = requireReady("getProperties")) return r;
  if (dev != 0 || props == nullptr) return chorusNetInvalidArgument;
  memset(props, 0, sizeof(*props));
  const char* devices = getenv("UCX_NET_DEVICES");
  snprintf(props->name, sizeof(props->name), "ucx:%s", devices && *devices ? devices : "auto");
  props->numaNode = -1;
  probeDevice(devices, props);
  if (props->numaNode < -1) props->numaNode = -1;
  props->latencyUs = 0;
  props->maxInflight = kMaxInflight;
  props->maxMessageBytes = kMaxMessageBytes;
  props->ptrSupport = CHORUS_NET_PTR_HOST;
  props->regRequired = 0;
  props->guid = 0;
  return chorusNetSuccess;
}

}  // namespace chorus::ucxnet
