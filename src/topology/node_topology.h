// One host's hardware as hwloc sees it: packages, NUMA nodes, cores, the PCI tree, NICs and
// accelerators, and where the calling process is bound. Read from the live machine or from an
// hwloc XML file (CHORUS_TOPO_FILE); what was used can be written back out as XML
// (CHORUS_TOPO_DUMP_FILE). Everything here is plain data; hwloc stays inside node_topology.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace chorus {

struct NumaInfo {
  int index = 0;             // hwloc logical index
  int osIndex = 0;           // the kernel's node number
  uint64_t memoryBytes = 0;  // local memory (0 when the XML does not say)
  int cores = 0;             // cores whose PUs lie in this node
  int pus = 0;
  int package = -1;          // logical index of the package holding it (-1: unknown)
};

// A NIC: an hwloc network OS device (eth0, ib0) or an OpenFabrics one (mlx5_0, hfi1_0).
struct NicInfo {
  std::string name;         // OS name
  std::string kind;         // "ethernet", "infiniband", "roce", "omnipath" or "other"
  double speedGbps = 0;     // link speed; 0 = unknown (see node_topology.cpp for the sources)
  int numaNode = -1;        // logical index of the NUMA node it is local to; -1 = unknown
  std::string pciBusId;     // "0000:3b:00.0"; empty when not on PCI
  std::string address;      // MAC or port GID when hwloc reports one
};

// An accelerator: an hwloc GPU or co-processor OS device.
struct AcceleratorInfo {
  std::string name;      // OS name: cuda0, nvml0, rsmi0, ze0, opencl0d0, card0
  std::string api;       // "CUDA", "NVML", "ROCm", "LevelZero", "OpenCL", "Display" or hwloc's subtype
  std::string model;     // GPUModel / model info when present
  int numaNode = -1;
  std::string pciBusId;
};

// A PCI device or bridge, in depth-first order of the tree (parents before children).
struct PciInfo {
  std::string busId;        // "0000:3b:00.0"
  std::string parentBusId;  // the upstream bridge; empty under a host bridge
  bool bridge = false;
  uint16_t vendorId = 0, deviceId = 0, classId = 0;
  float linkGBps = 0;       // PCIe link bandwidth hwloc reports (0 = unknown)
  int numaNode = -1;
  int depth = 0;            // 0: directly under the host bridge
  std::vector<std::string> osDevices;  // names of the OS devices it carries
};

struct NodeTopology {
  std::string source;    // "live" or the XML file it was loaded from
  std::string hostname;  // hwloc's HostName info (the XML's host for a file)
  int packages = 0, numaNodes = 0, cores = 0, pus = 0;
  std::vector<NumaInfo> numa;
  std::vector<PciInfo> pci;
  std::vector<NicInfo> nics;
  std::vector<AcceleratorInfo> accelerators;
  // Where the calling process may run (sched_getaffinity, mapped onto this topology's PUs by OS
  // index, so it also means something for a loaded file).
  std::string boundCpuset;  // e.g. "0-3,8"; empty when unknown
  bool bound = false;       // narrower than the whole machine
  int boundNuma = -1;       // the single NUMA node the binding lies in; -1: several or unknown
};

// Loads `xmlPath` ("" = the live machine) and, when dumpPath is not empty, writes the hwloc XML
// that was used there. Throws chorus::Error (chorusSystemError / chorusInvalidArgument) with
// hwloc's complaint and the file name.
NodeTopology loadNodeTopology(const std::string& xmlPath, const std::string& dumpPath);
// The process's topology: CHORUS_TOPO_FILE or the live machine, dumped to CHORUS_TOPO_DUMP_FILE
// when set; discovered once per process and cached (a communicator init reads it).
const NodeTopology& localTopology();

}  // namespace chorus
