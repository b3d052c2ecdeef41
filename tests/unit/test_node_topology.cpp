// Local topology discovery (src/topology/node_topology.cpp) against the hwloc XML fixtures in
// tests/topology/ (README.md there says what each models): exactly what discovery reports for
// each; the rules that pick one accelerator per PCI device and one NIC per port; the binding
// mapped onto a file's PUs; dump and reload giving the same result; clear errors for bad files;
// XML that lstopo writes (v2, v1, synthetic, this machine) loading; CHORUS_TOPO_FILE and
// CHORUS_TOPO_DUMP_FILE; and makeTopoCard's ordering and truncation.
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "fixtures/ranks.h"
#include "topology/node_topology.h"
#include "topology/topo_cache.h"
#include "topology/topo_card.h"

namespace chorus {
namespace {

namespace fs = std::filesystem;

// tests/topology, found from this file's own path (no build-system help needed).
std::string fixture(const std::string& name) {
  return (fs::path(__FILE__).parent_path().parent_path() / "topology" / name).string();
}

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/chorus_topo_test_XXXXXX";
    const char* d = mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    path_ = d ? d : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name)) << text;
    return file(name);
  }

 private:
  std::string path_;
};

const PciInfo* findPci(const NodeTopology& t, const std::string& busId) {
  for (const PciInfo& p : t.pci)
    if (p.busId == busId) return &p;
  return nullptr;
}

std::vector<std::string> nicNames(const NodeTopology& t) {
  std::vector<std::string> v;
  for (const NicInfo& n : t.nics) v.push_back(n.name);
  return v;
}

std::vector<std::string> acceleratorNames(const NodeTopology& t) {
  std::vector<std::string> v;
  for (const AcceleratorInfo& a : t.accelerators) v.push_back(a.name);
  return v;
}

// The chain of parent bus ids from `busId` up to the host bridge, checking depths on the way.
std::vector<std::string> parentChain(const NodeTopology& t, const std::string& busId) {
  std::vector<std::string> chain;
  const PciInfo* p = findPci(t, busId);
  while (p && !p->parentBusId.empty()) {
    const PciInfo* parent = findPci(t, p->parentBusId);
    EXPECT_NE(parent, nullptr) << p->parentBusId;
    if (!parent) break;
    EXPECT_TRUE(parent->bridge) << parent->busId;
    EXPECT_EQ(parent->depth + 1, p->depth) << p->busId;
    chain.push_back(parent->busId);
    p = parent;
  }
  if (p) EXPECT_EQ(p->depth, 0) << p->busId;
  return chain;
}

// Parents come before their children in the list.
void expectParentsFirst(const NodeTopology& t) {
  for (size_t i = 0; i < t.pci.size(); ++i) {
    if (t.pci[i].parentBusId.empty()) continue;
    bool seen = false;
    for (size_t j = 0; j < i; ++j) seen |= t.pci[j].busId == t.pci[i].parentBusId;
    EXPECT_TRUE(seen) << t.pci[i].busId << " listed before its parent " << t.pci[i].parentBusId;
  }
}

// Every field but `source`, one line per item, so that two topologies compare as text and a
// difference shows as the lines that differ.
std::string fingerprint(const NodeTopology& t) {
  std::ostringstream o;
  o << "host " << t.hostname << " packages " << t.packages << " numa " << t.numaNodes << " cores " << t.cores
    << " pus " << t.pus << "\nbinding " << t.boundCpuset << " " << t.bound << " " << t.boundNuma << "\n";
  for (const NumaInfo& n : t.numa)
    o << "numa " << n.index << " os " << n.osIndex << " mem " << n.memoryBytes << " cores " << n.cores << " pus "
      << n.pus << " package " << n.package << "\n";
  for (const PciInfo& p : t.pci) {
    o << "pci " << p.busId << " parent " << p.parentBusId << " bridge " << p.bridge << " ids " << p.vendorId << ":"
      << p.deviceId << " class " << p.classId << " link " << p.linkGBps << " numa " << p.numaNode << " depth "
      << p.depth << " os";
    for (const std::string& d : p.osDevices) o << " " << d;
    o << "\n";
  }
  for (const NicInfo& n : t.nics)
    o << "nic " << n.name << " " << n.kind << " " << n.speedGbps << " numa " << n.numaNode << " " << n.pciBusId << " "
      << n.address << "\n";
  for (const AcceleratorInfo& a : t.accelerators)
    o << "accel " << a.name << " " << a.api << " " << a.model << " numa " << a.numaNode << " " << a.pciBusId << "\n";
  return o.str();
}

void expectSameTopology(const NodeTopology& a, const NodeTopology& b) { EXPECT_EQ(fingerprint(a), fingerprint(b)); }

// Runs `body` with the calling thread bound to `cpus`, restoring the old mask afterwards.
// Returns false (the test should skip) when those CPUs are not available here.
template <typename F>
bool withAffinity(const std::vector<int>& cpus, F&& body) {
  cpu_set_t old;
  if (sched_getaffinity(0, sizeof old, &old) != 0) return false;
  cpu_set_t want;
  CPU_ZERO(&want);
  for (int c : cpus) {
    if (!CPU_ISSET(c, &old)) return false;
    CPU_SET(c, &want);
  }
  if (sched_setaffinity(0, sizeof want, &want) != 0) return false;
  body();
  sched_setaffinity(0, sizeof old, &old);
  return true;
}

bool haveLstopo() { return std::system("command -v lstopo-no-graphics >/dev/null 2>&1 || command -v lstopo >/dev/null 2>&1") == 0; }
std::string lstopo() {
  return std::system("command -v lstopo-no-graphics >/dev/null 2>&1") == 0 ? "lstopo-no-graphics" : "lstopo";
}

// --- the fixtures ----------------------------------------------------------------------------

TEST(NodeTopology, DualSocket8Gpu4NicReportsWhatTheFileHolds) {
  const std::string path = fixture("dual_socket_8gpu_4nic.xml");
  NodeTopology t = loadNodeTopology(path, "");
  EXPECT_EQ(t.source, path);
  EXPECT_EQ(t.hostname, "gpu-node-a");
  EXPECT_EQ(t.packages, 2);
  EXPECT_EQ(t.numaNodes, 2);
  EXPECT_EQ(t.cores, 8);
  EXPECT_EQ(t.pus, 16);
  ASSERT_EQ(t.numa.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(t.numa[i].index, i);
    EXPECT_EQ(t.numa[i].osIndex, i);
    EXPECT_EQ(t.numa[i].memoryBytes, 256ull << 30);
    EXPECT_EQ(t.numa[i].cores, 4);
    EXPECT_EQ(t.numa[i].pus, 8);
    EXPECT_EQ(t.numa[i].package, i);
  }

  // One NIC per port: mlx5_0 and ib0 share a PCI function, so they are one InfiniBand NIC.
  ASSERT_EQ(nicNames(t), (std::vector<std::string>{"eno1", "mlx5_0", "mlx5_1", "ens5f0"}));
  const NicInfo& eno1 = t.nics[0];
  EXPECT_EQ(eno1.kind, "ethernet");
  EXPECT_DOUBLE_EQ(eno1.speedGbps, 1);
  EXPECT_EQ(eno1.numaNode, 0);
  EXPECT_EQ(eno1.pciBusId, "0000:01:00.0");
  EXPECT_EQ(eno1.address, "3c:ec:ef:10:20:01");
  const NicInfo& ib = t.nics[1];
  EXPECT_EQ(ib.kind, "infiniband");
  EXPECT_DOUBLE_EQ(ib.speedGbps, 200);
  EXPECT_EQ(ib.numaNode, 0);
  EXPECT_EQ(ib.pciBusId, "0000:14:00.0");
  EXPECT_EQ(ib.address, "fe80:0000:0000:0000:b8ce:f603:00a1:b2c3");
  EXPECT_EQ(t.nics[2].kind, "infiniband");
  EXPECT_DOUBLE_EQ(t.nics[2].speedGbps, 200);
  EXPECT_EQ(t.nics[2].numaNode, 1);
  EXPECT_EQ(t.nics[2].pciBusId, "0000:84:00.0");
  EXPECT_EQ(t.nics[3].kind, "ethernet");
  EXPECT_DOUBLE_EQ(t.nics[3].speedGbps, 100);
  EXPECT_EQ(t.nics[3].numaNode, 1);

  // One accelerator per GPU (CUDA preferred over NVML); the BMC's VGA (card0) is not one.
  ASSERT_EQ(acceleratorNames(t),
            (std::vector<std::string>{"cuda0", "cuda1", "cuda2", "cuda3", "cuda4", "cuda5", "cuda6", "cuda7"}));
  const char* gpuBus[] = {"0000:12:00.0", "0000:13:00.0", "0000:1a:00.0", "0000:1b:00.0",
                          "0000:82:00.0", "0000:83:00.0", "0000:8a:00.0", "0000:8b:00.0"};
  for (int i = 0; i < 8; ++i) {
    const AcceleratorInfo& a = t.accelerators[i];
    EXPECT_EQ(a.api, "CUDA") << a.name;
    EXPECT_EQ(a.model, "NVIDIA H100 80GB HBM3") << a.name;
    EXPECT_EQ(a.numaNode, i < 4 ? 0 : 1) << a.name;
    EXPECT_EQ(a.pciBusId, gpuBus[i]) << a.name;
    const PciInfo* p = findPci(t, gpuBus[i]);
    ASSERT_NE(p, nullptr);
    // Package 1's GPUs list NVML first: the choice does not depend on hwloc's order.
    const std::string cuda = "cuda" + std::to_string(i), nvml = "nvml" + std::to_string(i);
    const std::vector<std::string> expected = i < 4 ? std::vector<std::string>{cuda, nvml} : std::vector<std::string>{nvml, cuda};
    EXPECT_EQ(p->osDevices, expected);
  }

  // The PCI tree: 31 functions, a GPU two switch levels down, parents first.
  EXPECT_EQ(t.pci.size(), 31u);
  expectParentsFirst(t);
  EXPECT_EQ(parentChain(t, "0000:12:00.0"), (std::vector<std::string>{"0000:11:00.0", "0000:10:00.0"}));
  EXPECT_EQ(parentChain(t, "0000:84:00.0"), (std::vector<std::string>{"0000:81:02.0", "0000:80:00.0"}));
  EXPECT_EQ(parentChain(t, "0000:03:00.0"), (std::vector<std::string>{"0000:02:00.0", "0000:00:1c.4"}));
  const PciInfo* gpu0 = findPci(t, "0000:12:00.0");
  ASSERT_NE(gpu0, nullptr);
  EXPECT_FALSE(gpu0->bridge);
  EXPECT_EQ(gpu0->vendorId, 0x10de);
  EXPECT_EQ(gpu0->deviceId, 0x2330);
  EXPECT_EQ(gpu0->classId, 0x0302);
  EXPECT_EQ(gpu0->depth, 2);
  EXPECT_NEAR(gpu0->linkGBps, 63.015, 0.01);
  EXPECT_EQ(gpu0->numaNode, 0);
  const PciInfo* vga = findPci(t, "0000:03:00.0");
  ASSERT_NE(vga, nullptr);
  EXPECT_EQ(vga->osDevices, (std::vector<std::string>{"card0"}));
  EXPECT_EQ(vga->vendorId, 0x1a03);
  const PciInfo* hca = findPci(t, "0000:14:00.0");
  ASSERT_NE(hca, nullptr);
  EXPECT_EQ(hca->osDevices, (std::vector<std::string>{"ib0", "mlx5_0"}));
  EXPECT_EQ(hca->classId, 0x0207);
  EXPECT_EQ(findPci(t, "0000:91:00.0")->numaNode, 1);
}

TEST(NodeTopology, QuadGpu2NicReportsWhatTheFileHolds) {
  NodeTopology t = loadNodeTopology(fixture("quad_gpu_2nic.xml"), "");
  EXPECT_EQ(t.hostname, "gpu-node-b");
  EXPECT_EQ(t.packages, 1);
  EXPECT_EQ(t.numaNodes, 2);
  EXPECT_EQ(t.cores, 8);
  EXPECT_EQ(t.pus, 16);
  ASSERT_EQ(t.numa.size(), 2u);
  for (const NumaInfo& n : t.numa) {
    EXPECT_EQ(n.package, 0);
    EXPECT_EQ(n.memoryBytes, 128ull << 30);
    EXPECT_EQ(n.cores, 4);
  }
  // The RoCE port (LinkLayer Ethernet) and a NIC attached to the whole package (no single NUMA).
  ASSERT_EQ(nicNames(t), (std::vector<std::string>{"mlx5_0", "eno1"}));
  EXPECT_EQ(t.nics[0].kind, "roce");
  EXPECT_DOUBLE_EQ(t.nics[0].speedGbps, 100);
  EXPECT_EQ(t.nics[0].numaNode, 0);
  EXPECT_EQ(t.nics[0].pciBusId, "0000:43:00.0");
  EXPECT_EQ(t.nics[1].kind, "ethernet");
  EXPECT_DOUBLE_EQ(t.nics[1].speedGbps, 25);
  EXPECT_EQ(t.nics[1].numaNode, -1);
  // ROCm wins over OpenCL and the DRM nodes of the same GPU.
  ASSERT_EQ(acceleratorNames(t), (std::vector<std::string>{"rsmi0", "rsmi1", "rsmi2", "rsmi3"}));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(t.accelerators[i].api, "ROCm");
    EXPECT_EQ(t.accelerators[i].model, "AMD Instinct MI210");
    EXPECT_EQ(t.accelerators[i].numaNode, i < 2 ? 0 : 1);
  }
  EXPECT_EQ(t.accelerators[2].pciBusId, "0000:c1:00.0");
  const PciInfo* gpu0 = findPci(t, "0000:41:00.0");
  ASSERT_NE(gpu0, nullptr);
  EXPECT_EQ(gpu0->osDevices, (std::vector<std::string>{"card1", "renderD128", "rsmi0", "opencl0d0"}));
  EXPECT_EQ(gpu0->classId, 0x0380);
  EXPECT_EQ(parentChain(t, "0000:c2:00.0"), (std::vector<std::string>{"0000:c0:03.1"}));
  EXPECT_EQ(t.pci.size(), 12u);
  expectParentsFirst(t);
  EXPECT_EQ(findPci(t, "0000:01:00.0")->numaNode, -1);
}

TEST(NodeTopology, CpuOnlyReportsWhatTheFileHolds) {
  NodeTopology t = loadNodeTopology(fixture("cpu_only.xml"), "");
  EXPECT_EQ(t.hostname, "cpu-node");
  EXPECT_EQ(t.packages, 1);
  EXPECT_EQ(t.numaNodes, 1);
  EXPECT_EQ(t.cores, 4);
  EXPECT_EQ(t.pus, 8);
  ASSERT_EQ(t.numa.size(), 1u);
  EXPECT_EQ(t.numa[0].memoryBytes, 64ull << 30);
  EXPECT_TRUE(t.accelerators.empty());
  ASSERT_EQ(nicNames(t), (std::vector<std::string>{"eth0"}));
  EXPECT_EQ(t.nics[0].kind, "ethernet");
  EXPECT_DOUBLE_EQ(t.nics[0].speedGbps, 10);
  EXPECT_EQ(t.nics[0].numaNode, 0);
  // The NVMe disk is in the PCI tree but is neither a NIC nor an accelerator.
  ASSERT_EQ(t.pci.size(), 4u);
  const PciInfo* nvme = findPci(t, "0000:02:00.0");
  ASSERT_NE(nvme, nullptr);
  EXPECT_EQ(nvme->osDevices, (std::vector<std::string>{"nvme0n1"}));
  EXPECT_EQ(nvme->classId, 0x0108);
  EXPECT_EQ(parentChain(t, "0000:02:00.0"), (std::vector<std::string>{"0000:00:02.0"}));
}

// Without ROCm SMI the OpenCL device stands for the GPU; with only DRM nodes left, the first DRM
// node does, named after the PCI device (an AMD display controller counts as an accelerator).
TEST(NodeTopology, AcceleratorApiPreferenceFallsBackInOrder) {
  TempDir dir;
  const std::string quad = readText(fixture("quad_gpu_2nic.xml"));
  auto without = [](std::string text, const std::string& prefix) {
    const std::regex osdev("[ ]*<object type=\"OSDev\"[^>]*name=\"" + prefix + "[0-9d]+\"[^>]*>[\\s\\S]*?</object>\n");
    return std::regex_replace(text, osdev, "");
  };
  const std::string noRsmi = without(quad, "rsmi");
  ASSERT_EQ(noRsmi.find("rsmi"), std::string::npos);
  NodeTopology ocl = loadNodeTopology(dir.write("ocl.xml", noRsmi), "");
  ASSERT_EQ(acceleratorNames(ocl), (std::vector<std::string>{"opencl0d0", "opencl0d1", "opencl0d2", "opencl0d3"}));
  EXPECT_EQ(ocl.accelerators[0].api, "OpenCL");
  EXPECT_EQ(ocl.accelerators[0].model, "gfx90a:sramecc+:xnack-");

  const std::string drmOnly = without(noRsmi, "opencl");
  ASSERT_EQ(drmOnly.find("opencl0d"), std::string::npos);
  NodeTopology drm = loadNodeTopology(dir.write("drm.xml", drmOnly), "");
  ASSERT_EQ(acceleratorNames(drm), (std::vector<std::string>{"card1", "card2", "card3", "card4"}));
  EXPECT_EQ(drm.accelerators[0].api, "Display");
  EXPECT_EQ(drm.accelerators[0].model, "Aldebaran/MI200 [Instinct MI210]");
  EXPECT_EQ(drm.accelerators[3].numaNode, 1);
}

// A port that hwloc reports twice is one NIC; without the OpenFabrics device it is the IP
// interface, an "ib" name still meaning InfiniBand.
TEST(NodeTopology, NicPortsMergeAndKindsFollowTheRules) {
  TempDir dir;
  std::string text = readText(fixture("dual_socket_8gpu_4nic.xml"));
  const std::regex ofdev("[ ]*<object type=\"OSDev\"[^>]*name=\"mlx5_[0-9]\"[^>]*>[\\s\\S]*?</object>\n");
  NodeTopology t = loadNodeTopology(dir.write("noof.xml", std::regex_replace(text, ofdev, "")), "");
  ASSERT_EQ(nicNames(t), (std::vector<std::string>{"eno1", "ib0", "ib1", "ens5f0"}));
  EXPECT_EQ(t.nics[1].kind, "infiniband");
  EXPECT_DOUBLE_EQ(t.nics[1].speedGbps, 0);  // the speed info was on mlx5_0
  EXPECT_EQ(t.nics[1].address, "00:00:10:87:fe:80:00:00:00:00:00:00:b8:ce:f6:03:00:a1:b2:c3");
  // An Omni-Path HCA is named hfi1_*.
  std::string opa = std::regex_replace(text, std::regex("name=\"mlx5_0\""), "name=\"hfi1_0\"");
  NodeTopology o = loadNodeTopology(dir.write("opa.xml", opa), "");
  EXPECT_EQ(o.nics[1].name, "hfi1_0");
  EXPECT_EQ(o.nics[1].kind, "omnipath");
  EXPECT_DOUBLE_EQ(o.nics[1].speedGbps, 200);
}

// --- binding ---------------------------------------------------------------------------------

// The 8-GPU fixture numbers its PUs the way many dual-socket machines do: even OS indexes on
// package 0, odd on package 1. The binding follows OS indexes onto the file's NUMA nodes.
TEST(NodeTopology, BindingMapsOntoTheFilesPusByOsIndex) {
  const std::string path = fixture("dual_socket_8gpu_4nic.xml");
  struct Case {
    std::vector<int> cpus;
    const char* cpuset;
    int numa;
  } cases[] = {{{0}, "0", 0}, {{1}, "1", 1}, {{0, 1}, "0-1", -1}};
  for (const Case& c : cases) {
    NodeTopology t;
    if (!withAffinity(c.cpus, [&] { t = loadNodeTopology(path, ""); }))
      GTEST_SKIP() << "CPUs 0 and 1 are not both available to this process";
    EXPECT_EQ(t.boundCpuset, c.cpuset);
    EXPECT_TRUE(t.bound);
    EXPECT_EQ(t.boundNuma, c.numa) << c.cpuset;
  }
}

// --- dump and reload -------------------------------------------------------------------------

TEST(NodeTopology, DumpReloadsToTheSameTopology) {
  TempDir dir;
  for (const char* name : {"dual_socket_8gpu_4nic.xml", "quad_gpu_2nic.xml", "cpu_only.xml"}) {
    const std::string dump = dir.file(std::string("dump_") + name);
    NodeTopology first = loadNodeTopology(fixture(name), dump);
    struct stat st {};
    ASSERT_EQ(stat(dump.c_str(), &st), 0) << dump;
    NodeTopology again = loadNodeTopology(dump, "");
    EXPECT_EQ(again.source, dump);
    SCOPED_TRACE(name);
    expectSameTopology(first, again);
  }
}

TEST(NodeTopology, LiveDiscoveryIsSaneAndRoundTrips) {
  TempDir dir;
  const std::string dump = dir.file("live.xml");
  NodeTopology live = loadNodeTopology("", dump);
  EXPECT_EQ(live.source, "live");
  EXPECT_GE(live.pus, 1);
  EXPECT_GE(live.numaNodes, 1);
  EXPECT_EQ(static_cast<int>(live.numa.size()), live.numaNodes);
  EXPECT_FALSE(live.boundCpuset.empty());
  EXPECT_LE(live.pus, sysconf(_SC_NPROCESSORS_CONF));
  int online = 0;
  for (const NumaInfo& n : live.numa) online += n.pus;
  EXPECT_GE(online, live.pus);  // every PU lies in some NUMA node
  for (const NicInfo& n : live.nics) {
    EXPECT_FALSE(n.name.empty());
    EXPECT_GE(n.speedGbps, 0);
  }
  expectParentsFirst(live);
  NodeTopology again = loadNodeTopology(dump, "");
  expectSameTopology(live, again);
}

// --- errors ----------------------------------------------------------------------------------

TEST(NodeTopology, BadFilesGiveErrorsNamingThem) {
  TempDir dir;
  const std::string missing = dir.file("no_such_topology.xml");
  try {
    loadNodeTopology(missing, "");
    FAIL() << "a missing file loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  for (const char* text : {"this is not XML\n", "<topology version=\"2.0\"><object type=\"Bogus\"/></topology>\n", ""}) {
    const std::string bad = dir.write("bad.xml", text);
    try {
      loadNodeTopology(bad, "");
      FAIL() << "garbage loaded: " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), chorusInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  const std::string unwritable = dir.file("no_dir/dump.xml");
  try {
    loadNodeTopology(fixture("cpu_only.xml"), unwritable);
    FAIL() << "a dump into a missing directory succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusSystemError);
    EXPECT_NE(std::string(e.what()).find(unwritable), std::string::npos) << e.what();
  }
}

// --- what lstopo writes ----------------------------------------------------------------------

TEST(NodeTopology, LoadsWhatLstopoWrites) {
  if (!haveLstopo()) GTEST_SKIP() << "lstopo is not installed (Debian: apt-get install hwloc)";
  TempDir dir;
  const std::string synth = "pack:2 numa:1(memory=1GiB) core:3 pu:2";
  struct Case {
    const char* file;
    const char* flags;
  } cases[] = {{"v2.xml", ""}, {"v1.xml", "--export-xml-flags v1"}};
  for (const Case& c : cases) {
    const std::string out = dir.file(c.file);
    const std::string cmd = lstopo() + " --input \"" + synth + "\" --of xml " + c.flags + " " + out + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    NodeTopology t = loadNodeTopology(out, "");
    SCOPED_TRACE(c.file);
    EXPECT_EQ(t.packages, 2);
    EXPECT_EQ(t.numaNodes, 2);
    EXPECT_EQ(t.cores, 6);
    EXPECT_EQ(t.pus, 12);
    ASSERT_EQ(t.numa.size(), 2u);
    EXPECT_EQ(t.numa[1].memoryBytes, 1ull << 30);
    EXPECT_EQ(t.numa[1].package, 1);
    EXPECT_EQ(t.numa[1].pus, 6);
    EXPECT_TRUE(t.pci.empty());
  }
  // A v1 export of a fixture keeps its I/O: same NICs, accelerators and PCI tree.
  const std::string v1 = dir.file("fixture_v1.xml");
  const std::string cmd = lstopo() + " --input " + fixture("dual_socket_8gpu_4nic.xml") +
                          " --whole-io --of xml --export-xml-flags v1 " + v1 + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  ASSERT_NE(readText(v1).find("<topology>"), std::string::npos) << "not a v1 export";
  expectSameTopology(loadNodeTopology(fixture("dual_socket_8gpu_4nic.xml"), ""), loadNodeTopology(v1, ""));

  // A one-PU machine: this process may run on all of it, so it is not bound there.
  const std::string one = dir.file("one.xml");
  ASSERT_EQ(std::system((lstopo() + " --input \"pack:1 core:1 pu:1\" --of xml " + one).c_str()), 0);
  NodeTopology t;
  if (withAffinity({0}, [&] { t = loadNodeTopology(one, ""); })) {
    EXPECT_EQ(t.boundCpuset, "0");
    EXPECT_FALSE(t.bound);
    EXPECT_EQ(t.boundNuma, 0);
  }
  // This machine as lstopo sees it: the same processors as live discovery.
  const std::string here = dir.file("here.xml");
  ASSERT_EQ(std::system((lstopo() + " --of xml " + here).c_str()), 0);
  NodeTopology fromLstopo = loadNodeTopology(here, "");
  NodeTopology live = loadNodeTopology("", "");
  EXPECT_EQ(fromLstopo.pus, live.pus);
  EXPECT_EQ(fromLstopo.cores, live.cores);
  EXPECT_EQ(fromLstopo.numaNodes, live.numaNodes);
  EXPECT_EQ(fromLstopo.hostname, live.hostname);
}

// --- localTopology and its environment -------------------------------------------------------

// localTopology() caches for the whole process, so each case runs in a fresh one (a gtest
// death test in the "threadsafe" style re-executes the binary).
TEST(NodeTopology, LocalTopologyReadsTheEnvironmentOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const std::string dump = "/tmp/chorus_topo_dump_" + std::to_string(getpid()) + ".xml";
        setenv("CHORUS_TOPO_FILE", fixture("quad_gpu_2nic.xml").c_str(), 1);
        setenv("CHORUS_TOPO_DUMP_FILE", dump.c_str(), 1);
        const NodeTopology& a = localTopology();
        unsetenv("CHORUS_TOPO_FILE");  // read once: later calls do not look again
        const NodeTopology& b = localTopology();
        const bool ok = &a == &b && a.hostname == "gpu-node-b" && a.accelerators.size() == 4 &&
                        loadNodeTopology(dump, "").hostname == "gpu-node-b";
        unlink(dump.c_str());
        std::exit(ok ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        setenv("CHORUS_TOPO_FILE", "/nonexistent/chorus/missing.xml", 1);
        int failures = 0;
        for (int i = 0; i < 2; ++i) {
          try {
            localTopology();
          } catch (const Error& e) {
            if (std::string(e.what()).find("missing.xml") != std::string::npos) ++failures;
          }
        }
        std::exit(failures == 2 ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        unsetenv("CHORUS_TOPO_FILE");
        unsetenv("CHORUS_TOPO_DUMP_FILE");
        const NodeTopology& t = localTopology();
        std::exit(t.source == "live" && t.pus >= 1 ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

// --- the host's shared discovery (topology/topo_cache.h) --------------------------------------

using test::ScopedEnv;

// The shared file of this process (each test points CHORUS_TOPO_CACHE_DIR into its TempDir).
std::string cacheFile() { return sharedTopologyPath(TopologyCacheSettings::fromEnv()); }

// This process's own live discovery, the cache off.
NodeTopology discoveredAlone() {
  ScopedEnv off("CHORUS_TOPO_CACHE", "0");
  return loadNodeTopology("", "");
}

ino_t inodeOf(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST(TopologyCache, TheSecondRankReadsTheFirstOnesDiscoveryAndSeesTheSameMachine) {
  TempDir dir;
  ScopedEnv where("CHORUS_TOPO_CACHE_DIR", dir.file("").c_str());
  const NodeTopology own = discoveredAlone();
  EXPECT_FALSE(fs::exists(cacheFile())) << "CHORUS_TOPO_CACHE=0 wrote a file";
  NodeTopology first = loadNodeTopology("", "");
  const ino_t written = inodeOf(cacheFile());
  ASSERT_NE(written, 0u) << "no shared file " << cacheFile();
  struct stat st {};
  ASSERT_EQ(stat(cacheFile().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  NodeTopology second = loadNodeTopology("", "");
  EXPECT_EQ(inodeOf(cacheFile()), written) << "the fresh file was rewritten";
  EXPECT_EQ(second.source, "live");
  expectSameTopology(own, first);
  expectSameTopology(first, second);
  EXPECT_EQ(second.boundCpuset, own.boundCpuset);
  // Only the file and its lock are left (no temporary).
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.file(""))) entries += e.path().string().find(".tmp.") == std::string::npos ? 1 : 100;
  EXPECT_EQ(entries, 2);
}

TEST(TopologyCache, StaleWritableOrBrokenFilesAreRediscovered) {
  TempDir dir;
  ScopedEnv where("CHORUS_TOPO_CACHE_DIR", dir.file("").c_str());
  const NodeTopology own = discoveredAlone();
  const std::string path = cacheFile();
  loadNodeTopology("", "");
  const std::string good = readText(path);
  ASSERT_FALSE(good.empty());
  // Older than the TTL.
  timeval old[2] = {{time(nullptr) - 3600, 0}, {time(nullptr) - 3600, 0}};
  ASSERT_EQ(utimes(path.c_str(), old), 0);
  ino_t before = inodeOf(path);
  expectSameTopology(own, loadNodeTopology("", ""));
  EXPECT_NE(inodeOf(path), before) << "a stale file was used";
  // Writable by others: somebody else may have written it.
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);
  before = inodeOf(path);
  expectSameTopology(own, loadNodeTopology("", ""));
  EXPECT_NE(inodeOf(path), before) << "a world-writable file was used";
  // Fresh and ours but not hwloc XML: discovered alone, right anyway.
  {
    std::ofstream(path, std::ios::trunc) << "<not a topology";
  }
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  expectSameTopology(own, loadNodeTopology("", ""));
}

TEST(TopologyCache, RanksStartingTogetherAllGetTheMachine) {
  TempDir dir;
  ScopedEnv where("CHORUS_TOPO_CACHE_DIR", dir.file("").c_str());
  const NodeTopology own = discoveredAlone();
  std::vector<pid_t> kids;
  for (int i = 0; i < 8; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      NodeTopology t = loadNodeTopology("", "");
      _exit(t.pus == own.pus && t.cores == own.cores && t.pci.size() == own.pci.size() && t.nics.size() == own.nics.size() ? 0 : 1);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  EXPECT_TRUE(fs::exists(cacheFile()));
}

TEST(TopologyCache, ABadSwitchIsAnError) {
  ScopedEnv bad("CHORUS_TOPO_CACHE", "yes");
  EXPECT_THROW(loadNodeTopology("", ""), Error);
}

// --- the topology card -----------------------------------------------------------------------

TEST(TopoCard, FastestNicsFirstFromAFixture) {
  NodeTopology t = loadNodeTopology(fixture("dual_socket_8gpu_4nic.xml"), "");
  TopoCard card = makeTopoCard(t);
  EXPECT_EQ(card.nicCount, 4);
  EXPECT_EQ(card.accelerators, 8);
  EXPECT_EQ(card.numaNodes, 2);
  EXPECT_EQ(card.boundNuma, t.boundNuma);
  const char* names[] = {"mlx5_0", "mlx5_1", "ens5f0", "eno1"};
  const char* kinds[] = {"infiniband", "infiniband", "ethernet", "ethernet"};
  const float speeds[] = {200, 200, 100, 1};
  const int numa[] = {0, 1, 1, 0};
  for (int i = 0; i < 4; ++i) {
    EXPECT_STREQ(card.nics[i].name, names[i]);
    EXPECT_STREQ(card.nics[i].kind, kinds[i]);
    EXPECT_FLOAT_EQ(card.nics[i].speedGbps, speeds[i]);
    EXPECT_EQ(card.nics[i].numaNode, numa[i]);
  }
}

TEST(TopoCard, TruncatesAndKeepsTheFastestFour) {
  NodeTopology t;
  t.numaNodes = 3;
  t.boundNuma = 2;
  auto nic = [](const std::string& name, const std::string& kind, double gbps, int numa) {
    NicInfo n;
    n.name = name;
    n.kind = kind;
    n.speedGbps = gbps;
    n.numaNode = numa;
    return n;
  };
  t.nics = {nic("slow0", "ethernet", 1, 0),
            nic("unknown0", "other", 0, -1),
            nic("a_very_long_interface_name_0", "infiniband_extended", 400, 1),
            nic("mid0", "roce", 100, 2),
            nic("mid1", "roce", 100, 0),
            nic("fast_but_fifth", "ethernet", 50, 1)};
  t.accelerators.resize(2);
  TopoCard card = makeTopoCard(t);
  EXPECT_EQ(card.nicCount, 6);
  EXPECT_EQ(card.accelerators, 2);
  EXPECT_EQ(card.numaNodes, 3);
  EXPECT_EQ(card.boundNuma, 2);
  // Truncated to the field, always NUL-terminated.
  EXPECT_EQ(std::string(card.nics[0].name), std::string("a_very_long_interface_name_0").substr(0, sizeof card.nics[0].name - 1));
  EXPECT_EQ(card.nics[0].name[sizeof card.nics[0].name - 1], '\0');
  EXPECT_EQ(std::string(card.nics[0].kind), std::string("infiniband_extended").substr(0, sizeof card.nics[0].kind - 1));
  EXPECT_FLOAT_EQ(card.nics[0].speedGbps, 400);
  // Equal speeds keep discovery order; slower and unknown ones fall off the card.
  EXPECT_STREQ(card.nics[1].name, "mid0");
  EXPECT_STREQ(card.nics[2].name, "mid1");
  EXPECT_STREQ(card.nics[3].name, "fast_but_fifth");
  EXPECT_EQ(card.nics[3].numaNode, 1);
  // Fewer NICs than slots: the rest stay empty.
  NodeTopology one;
  one.nics = {nic("eth0", "ethernet", 0, -1)};
  TopoCard c1 = makeTopoCard(one);
  EXPECT_EQ(c1.nicCount, 1);
  EXPECT_STREQ(c1.nics[0].name, "eth0");
  EXPECT_FLOAT_EQ(c1.nics[0].speedGbps, 0);
  EXPECT_STREQ(c1.nics[1].name, "");
  EXPECT_EQ(c1.nics[1].numaNode, -1);
}

}  // namespace
}  // namespace chorus
