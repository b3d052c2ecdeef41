// Local topology discovery with hwloc 2.x (see node_topology.h for the data it fills).
//
// Where each field comes from:
//  - Packages, NUMA nodes (local memory, cores and PUs inside the node's cpuset, enclosing
//    package), cores, PUs: hwloc's normal objects.
//  - PCI tree: every PCI device and PCI-to-PCI bridge, depth first (parents before children).
//    Host bridges are not listed; a device right below one has depth 0 and no parent bus id.
//    Link bandwidth is hwloc's pcidev.linkspeed (GB/s, 0 when hwloc does not know it).
//  - NUMA locality of an I/O object: the nodeset of its nearest non-I/O ancestor
//    (hwloc_get_non_io_ancestor_obj). When that nodeset holds exactly one NUMA node, that node's
//    logical index; otherwise (an ancestor spanning several nodes) -1.
//  - NICs: hwloc OS devices of type NETWORK and OPENFABRICS, one entry per PCI function. A port
//    hwloc reports twice (the verbs device mlx5_0 and its IP interface ib0 on the same PCI
//    function) is one NIC named after the OpenFabrics device; the other name stays visible in
//    that PCI device's osDevices. Kind: OpenFabrics -> "omnipath" for hfi*, "roce" when the
//    info LinkLayer (or Port1LinkLayer) is Ethernet, else "infiniband"; network -> "infiniband"
//    for ib*, "other" for wireless (wl*, ww*), else "ethernet".
//  - NIC speed (Gb/s): the info ChorusLinkSpeedGbps on either OS device of the port when present
//    (fixtures carry it, and so do dumps of a live machine). Live only, when absent:
//    /sys/class/infiniband/<dev>/ports/1/rate ("200 Gb/sec (4X HDR)") for OpenFabrics devices,
//    else /sys/class/net/<ifname>/speed (Mb/s; -1 or unreadable = unknown). Unknown = 0. Live
//    discovery writes what it read back into hwloc as ChorusLinkSpeedGbps (and the port's
//    link_layer as LinkLayer) before a dump, so a dump reloads with the same speeds and kinds.
//  - Accelerators: OS devices of type GPU and COPROC. api from hwloc's subtype (CoProcType info
//    in v1 XML): CUDA, NVML, RSMI -> "ROCm", LevelZero, OpenCL, Display; no subtype: by name
//    (card*, renderD*, controlD* are Linux DRM nodes -> "Display"). One entry per PCI device:
//    hwloc lists one GPU under several APIs (cuda0 + nvml0 + card1); the entry kept is the
//    first of CUDA / ROCm / LevelZero, else the first other named API (NVML, OpenCL, ...), else
//    the DRM/display node; every name stays in the PCI device's osDevices. A device only seen
//    through DRM counts when it is a 3D / processing controller (PCI class 0302, 12xx) or a
//    display controller from NVIDIA, AMD or Intel, so a BMC's VGA (ASPEED, Matrox) is not
//    reported as an accelerator. Model: GPUModel, else Model, else the PCI device name.
//  - Binding: sched_getaffinity of the calling thread, intersected with the topology's PUs by
//    OS index (so it also applies to a loaded file). See NodeTopology for the three fields.
//
// Live discovery keeps the I/O objects hwloc deems important (KEEP_IMPORTANT: every OS device
// but DMA channels; network, storage, display, processor and accelerator PCI functions and the
// bridges above them; not USB or SMBus controllers); a file keeps every I/O object it contains
// (KEEP_ALL). hwloc's OpenCL and GL plugins are not used for live discovery
// (the first initializes every vendor's OpenCL driver inside each rank, the second probes X
// displays) unless the user sets hwloc's own HWLOC_COMPONENTS, in which case hwloc's choice
// applies as given.
#include "topology/node_topology.h"

#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <sched.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <mutex>

#include "base/error.h"
#include "base/log.h"
#include "topology/topo_cache.h"

namespace chorus {
namespace {

using PciAttr = hwloc_obj_attr_u::hwloc_pcidev_attr_s;

constexpr const char* kSpeedInfo = "ChorusLinkSpeedGbps";
constexpr const char* kLinkLayerInfo = "LinkLayer";

// Owns an hwloc topology handle.
struct HwlocTopology {
  hwloc_topology_t t = nullptr;
  HwlocTopology() {
    if (hwloc_topology_init(&t) != 0) CHORUS_THROW_ERRNO("hwloc_topology_init failed");
  }
  ~HwlocTopology() { hwloc_topology_destroy(t); }
  HwlocTopology(const HwlocTopology&) = delete;
  HwlocTopology& operator=(const HwlocTopology&) = delete;
};

// Owns an hwloc bitmap.
struct Bitmap {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  ~Bitmap() { hwloc_bitmap_free(b); }
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
  Bitmap() = default;
};

std::string info(hwloc_obj_t obj, const char* name) {
  const char* v = hwloc_obj_get_info_by_name(obj, name);
  return v ? v : "";
}

bool startsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

std::string busIdString(unsigned domain, unsigned bus, unsigned dev, unsigned func) {
  return format("%04x:%02x:%02x.%01x", domain, bus, dev, func);
}

bool isPciBridge(hwloc_obj_t obj) {
  return obj->type == HWLOC_OBJ_BRIDGE && obj->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_PCI;
}

// The PCI attributes of a PCI device or a PCI-to-PCI bridge (its upstream side); null otherwise.
const PciAttr* pciAttr(hwloc_obj_t obj) {
  if (obj->type == HWLOC_OBJ_PCI_DEVICE) return &obj->attr->pcidev;
  if (isPciBridge(obj)) return &obj->attr->bridge.upstream.pci;
  return nullptr;
}

std::string busIdOf(hwloc_obj_t obj) {
  const PciAttr* a = pciAttr(obj);
  return a ? busIdString(a->domain, a->bus, a->dev, a->func) : "";
}

// The PCI device an OS device hangs from (null when it is not on PCI).
hwloc_obj_t pciParentOf(hwloc_obj_t osdev) {
  for (hwloc_obj_t p = osdev->parent; p; p = p->parent) {
    if (p->type == HWLOC_OBJ_PCI_DEVICE || isPciBridge(p)) return p;
    if (p->type != HWLOC_OBJ_OS_DEVICE) return nullptr;
  }
  return nullptr;
}

// Logical index of the only NUMA node in `nodeset`, -1 when it holds none or several.
int singleNuma(hwloc_topology_t t, hwloc_const_nodeset_t nodeset) {
  if (!nodeset) return -1;
  int found = -1;
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); n;
       n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, n)) {
    if (!hwloc_bitmap_isset(nodeset, n->os_index)) continue;
    if (found >= 0) return -1;
    found = static_cast<int>(n->logical_index);
  }
  return found;
}

int ioNuma(hwloc_topology_t t, hwloc_obj_t io) {
  hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, io);
  return anc ? singleNuma(t, anc->nodeset) : -1;
}

// ---------------------------------------------------------------------------------------------
// Live link speeds (sysfs); written into hwloc as infos so that a dump carries them.
// ---------------------------------------------------------------------------------------------

std::string readFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  return line;
}

// Leading number of a sysfs value ("200 Gb/sec (4X HDR)", "25000"); 0 when there is none.
double leadingNumber(const std::string& s) {
  if (s.empty()) return 0;
  char* end = nullptr;
  double v = strtod(s.c_str(), &end);
  return (end != s.c_str() && v > 0) ? v : 0;
}

void annotateLive(hwloc_topology_t t) {
  for (hwloc_obj_t o = hwloc_get_next_osdev(t, nullptr); o; o = hwloc_get_next_osdev(t, o)) {
    if (!o->name || hwloc_obj_get_info_by_name(o, kSpeedInfo)) continue;
    const std::string name = o->name;
    double gbps = 0;
    if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS) {
      const std::string port = "/sys/class/infiniband/" + name + "/ports/1/";
      gbps = leadingNumber(readFirstLine(port + "rate"));
      std::string layer = readFirstLine(port + "link_layer");
      if (!layer.empty() && !hwloc_obj_get_info_by_name(o, kLinkLayerInfo))
        hwloc_obj_add_info(o, kLinkLayerInfo, layer.c_str());
    } else if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK) {
      gbps = leadingNumber(readFirstLine("/sys/class/net/" + name + "/speed")) / 1000.0;
    } else {
      continue;
    }
    if (gbps > 0) hwloc_obj_add_info(o, kSpeedInfo, format("%g", gbps).c_str());
  }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

void loadInto(hwloc_topology_t t, const std::string& xmlPath) {
  const bool live = xmlPath.empty();
  // Only I/O objects need a filter change (hwloc drops them by default). A file keeps all it has.
  hwloc_topology_set_io_types_filter(t, live ? HWLOC_TYPE_FILTER_KEEP_IMPORTANT : HWLOC_TYPE_FILTER_KEEP_ALL);
  if (live) {
    const char* userComponents = getenv("HWLOC_COMPONENTS");
    if (!userComponents || !*userComponents) {
      hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "opencl");
      hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "gl");
    }
    if (hwloc_topology_load(t) != 0) CHORUS_THROW_ERRNO("hwloc could not discover this machine's topology");
    annotateLive(t);
    return;
  }
  // Say "cannot read" before hwloc says something vaguer about the same problem.
  int fd = open(xmlPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    CHORUS_THROW(chorusInvalidArgument, "cannot read hwloc XML topology '%s': %s", xmlPath.c_str(), strerror(errno));
  close(fd);
  if (hwloc_topology_set_xml(t, xmlPath.c_str()) != 0)
    CHORUS_THROW(chorusInvalidArgument, "hwloc refused XML topology '%s': %s", xmlPath.c_str(), strerror(errno));
  if (hwloc_topology_load(t) != 0)
    CHORUS_THROW(chorusInvalidArgument, "hwloc could not load XML topology '%s': %s (is it an hwloc XML export?)",
                 xmlPath.c_str(), strerror(errno));
}

// ---------------------------------------------------------------------------------------------
// Reading the loaded topology into plain data
// ---------------------------------------------------------------------------------------------

void readNuma(hwloc_topology_t t, NodeTopology& out) {
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); n;
       n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, n)) {
    NumaInfo ni;
    ni.index = static_cast<int>(n->logical_index);
    ni.osIndex = static_cast<int>(n->os_index);
    ni.memoryBytes = n->attr->numanode.local_memory;
    if (n->cpuset && !hwloc_bitmap_iszero(n->cpuset)) {
      ni.cores = hwloc_get_nbobjs_inside_cpuset_by_type(t, n->cpuset, HWLOC_OBJ_CORE);
      ni.pus = hwloc_get_nbobjs_inside_cpuset_by_type(t, n->cpuset, HWLOC_OBJ_PU);
    }
    hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, n);
    for (hwloc_obj_t p = nullptr; !pkg && n->cpuset && !hwloc_bitmap_iszero(n->cpuset) &&
                                  (p = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PACKAGE, p));) {
      if (hwloc_bitmap_isincluded(n->cpuset, p->cpuset)) pkg = p;
    }
    ni.package = pkg ? static_cast<int>(pkg->logical_index) : -1;
    out.numa.push_back(ni);
  }
}

// Depth-first walk of the I/O tree below `obj` (an I/O object).
void walkIo(hwloc_topology_t t, hwloc_obj_t obj, const std::string& parentBusId, int depth, NodeTopology& out) {
  std::string childParent = parentBusId;
  int childDepth = depth;
  if (const PciAttr* a = pciAttr(obj)) {
    PciInfo p;
    p.busId = busIdOf(obj);
    p.parentBusId = parentBusId;
    p.bridge = obj->type == HWLOC_OBJ_BRIDGE;
    p.vendorId = a->vendor_id;
    p.deviceId = a->device_id;
    p.classId = a->class_id;
    p.linkGBps = a->linkspeed;
    p.numaNode = ioNuma(t, obj);
    p.depth = depth;
    for (hwloc_obj_t c = obj->io_first_child; c; c = c->next_sibling)
      if (c->type == HWLOC_OBJ_OS_DEVICE && c->name) p.osDevices.push_back(c->name);
    out.pci.push_back(std::move(p));
    childParent = busIdOf(obj);
    childDepth = depth + 1;
  }
  for (hwloc_obj_t c = obj->io_first_child; c; c = c->next_sibling) walkIo(t, c, childParent, childDepth, out);
}

// Visits every normal object and walks the I/O trees hanging from each.
void walkTree(hwloc_topology_t t, hwloc_obj_t obj, NodeTopology& out) {
  for (hwloc_obj_t c = obj->first_child; c; c = c->next_sibling) walkTree(t, c, out);
  for (hwloc_obj_t c = obj->io_first_child; c; c = c->next_sibling) walkIo(t, c, "", 0, out);
}

// OS devices of the two given types, grouped by the PCI function they hang from (in discovery
// order; a device not on PCI is a group of its own). hwloc may list one physical device several
// times (mlx5_0 + ib0, cuda0 + nvml0 + card1); a group is that device.
struct OsDevGroup {
  hwloc_obj_t pci = nullptr;
  std::vector<hwloc_obj_t> devs;
};

std::vector<OsDevGroup> osDevicesByPci(hwloc_topology_t t, hwloc_obj_osdev_type_t a, hwloc_obj_osdev_type_t b) {
  std::vector<OsDevGroup> groups;
  std::map<hwloc_obj_t, size_t> groupOfPci;
  for (hwloc_obj_t o = hwloc_get_next_osdev(t, nullptr); o; o = hwloc_get_next_osdev(t, o)) {
    if ((o->attr->osdev.type != a && o->attr->osdev.type != b) || !o->name) continue;
    hwloc_obj_t pci = pciParentOf(o);
    auto it = pci ? groupOfPci.find(pci) : groupOfPci.end();
    if (it != groupOfPci.end()) {
      groups[it->second].devs.push_back(o);
      continue;
    }
    if (pci) groupOfPci[pci] = groups.size();
    groups.push_back({pci, {o}});
  }
  return groups;
}

std::string nicKind(hwloc_obj_t o) {
  const std::string name = o->name ? o->name : "";
  if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS) {
    if (startsWith(name, "hfi")) return "omnipath";
    std::string layer = info(o, kLinkLayerInfo);
    if (layer.empty()) layer = info(o, "Port1LinkLayer");
    return strcasecmp(layer.c_str(), "Ethernet") == 0 ? "roce" : "infiniband";
  }
  if (startsWith(name, "ib")) return "infiniband";
  if (startsWith(name, "wl") || startsWith(name, "ww")) return "other";
  return "ethernet";
}

void readNics(hwloc_topology_t t, NodeTopology& out) {
  for (const OsDevGroup& g : osDevicesByPci(t, HWLOC_OBJ_OSDEV_NETWORK, HWLOC_OBJ_OSDEV_OPENFABRICS)) {
    const std::vector<hwloc_obj_t>& port = g.devs;
    hwloc_obj_t primary = port.front();
    for (hwloc_obj_t o : port)
      if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS) {
        primary = o;
        break;
      }
    NicInfo nic;
    nic.name = primary->name;
    nic.kind = nicKind(primary);
    std::string speed = info(primary, kSpeedInfo);
    for (hwloc_obj_t o : port)
      if (speed.empty()) speed = info(o, kSpeedInfo);
    nic.speedGbps = leadingNumber(speed);
    nic.numaNode = ioNuma(t, primary);
    if (g.pci) nic.pciBusId = busIdOf(g.pci);
    nic.address = info(primary, "Address");
    if (nic.address.empty()) nic.address = info(primary, "Port1GID0");
    for (hwloc_obj_t o : port)
      if (nic.address.empty()) nic.address = info(o, "Address");
    out.nics.push_back(std::move(nic));
  }
}

std::string acceleratorApi(hwloc_obj_t o) {
  std::string sub = o->subtype ? o->subtype : info(o, "CoProcType");
  const std::string name = o->name ? o->name : "";
  if (sub.empty()) {
    if (startsWith(name, "cuda")) sub = "CUDA";
    else if (startsWith(name, "nvml")) sub = "NVML";
    else if (startsWith(name, "rsmi")) sub = "RSMI";
    else if (startsWith(name, "ze")) sub = "LevelZero";
    else if (startsWith(name, "opencl")) sub = "OpenCL";
    else if (startsWith(name, "card") || startsWith(name, "renderD") || startsWith(name, "controlD") ||
             startsWith(name, ":"))
      sub = "Display";
    else
      sub = "other";
  }
  return sub == "RSMI" ? "ROCm" : sub;
}

// 0: a compute runtime, 1: another named API, 2: a display / DRM node or unknown.
int apiRank(const std::string& api) {
  if (api == "CUDA" || api == "ROCm" || api == "LevelZero") return 0;
  if (api == "Display" || api == "other") return 2;
  return 1;
}

// Whether a PCI device seen only through DRM is a compute device rather than, say, a BMC's VGA.
bool drmDeviceCounts(hwloc_obj_t pci) {
  if (!pci) return false;
  const PciAttr* a = pciAttr(pci);
  if (!a) return false;
  if (a->class_id == 0x0302 || (a->class_id >> 8) == 0x12) return true;
  const bool display = (a->class_id >> 8) == 0x03;
  return display && (a->vendor_id == 0x10de || a->vendor_id == 0x1002 || a->vendor_id == 0x8086);
}

void readAccelerators(hwloc_topology_t t, NodeTopology& out) {
  for (const OsDevGroup& g : osDevicesByPci(t, HWLOC_OBJ_OSDEV_GPU, HWLOC_OBJ_OSDEV_COPROC)) {
    hwloc_obj_t best = g.devs.front();
    for (hwloc_obj_t o : g.devs)
      if (apiRank(acceleratorApi(o)) < apiRank(acceleratorApi(best))) best = o;
    const std::string api = acceleratorApi(best);
    if (apiRank(api) == 2 && !drmDeviceCounts(g.pci)) continue;
    AcceleratorInfo a;
    a.name = best->name;
    a.api = api;
    a.model = info(best, "GPUModel");
    if (a.model.empty()) a.model = info(best, "Model");
    for (hwloc_obj_t o : g.devs)
      if (a.model.empty()) a.model = info(o, "GPUModel");
    if (a.model.empty() && g.pci) a.model = info(g.pci, "PCIDevice");
    a.numaNode = ioNuma(t, best);
    if (g.pci) a.pciBusId = busIdOf(g.pci);
    out.accelerators.push_back(std::move(a));
  }
}

void readBinding(hwloc_topology_t t, NodeTopology& out) {
  // Size the affinity mask for the largest OS index the topology or the kernel may use.
  hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(t);
  int maxCpu = std::max(hwloc_bitmap_last(all), 0);
  long conf = sysconf(_SC_NPROCESSORS_CONF);
  size_t ncpus = static_cast<size_t>(std::max<long>({maxCpu + 1L, conf, 1024L}));
  cpu_set_t* mask = CPU_ALLOC(ncpus);
  if (!mask) return;
  size_t bytes = CPU_ALLOC_SIZE(ncpus);
  CPU_ZERO_S(bytes, mask);
  if (sched_getaffinity(0, bytes, mask) != 0) {
    CPU_FREE(mask);
    return;
  }
  Bitmap bound;
  for (hwloc_obj_t pu = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PU, nullptr); pu;
       pu = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PU, pu)) {
    if (pu->os_index < ncpus && CPU_ISSET_S(pu->os_index, bytes, mask)) hwloc_bitmap_set(bound.b, pu->os_index);
  }
  CPU_FREE(mask);
  if (hwloc_bitmap_iszero(bound.b)) return;  // the file's PUs and ours do not meet: unknown
  char* list = nullptr;
  if (hwloc_bitmap_list_asprintf(&list, bound.b) >= 0 && list) {
    out.boundCpuset = list;
    free(list);
  }
  out.bound = hwloc_bitmap_weight(bound.b) < out.pus;
  // The first NUMA node whose cpuset covers the binding (a CPU-less memory node shares its
  // locality's cpuset, so it never comes before the node that holds the cores).
  for (const NumaInfo& n : out.numa) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, n.index);
    if (obj && obj->cpuset && hwloc_bitmap_isincluded(bound.b, obj->cpuset)) {
      out.boundNuma = n.index;
      break;
    }
  }
}

NodeTopology readTopology(hwloc_topology_t t, const std::string& source) {
  NodeTopology out;
  out.source = source;
  out.hostname = info(hwloc_get_root_obj(t), "HostName");
  out.packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
  out.numaNodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  out.cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
  out.pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  readNuma(t, out);
  walkTree(t, hwloc_get_root_obj(t), out);
  readNics(t, out);
  readAccelerators(t, out);
  readBinding(t, out);
  return out;
}

// The live machine, read from the host's shared discovery (topology/topo_cache.h) when there
// is one; a shared file that does not load is rediscovered here.
void loadLive(HwlocTopology& topo) {
  std::string shared = sharedTopologyFile(TopologyCacheSettings::fromEnv(), [] {
    HwlocTopology live;
    loadInto(live.t, "");
    char* buf = nullptr;
    int len = 0;
    if (hwloc_topology_export_xmlbuffer(live.t, &buf, &len, 0) != 0 || !buf) return std::string();
    std::string xml(buf, len > 0 ? static_cast<size_t>(len - 1) : 0);  // len counts the final NUL
    hwloc_free_xmlbuffer(live.t, buf);
    return xml;
  });
  if (!shared.empty()) {
    try {
      // It describes this machine: hwloc may then answer binding questions from it.
      hwloc_topology_set_flags(topo.t, HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM);
      loadInto(topo.t, shared);
      return;
    } catch (const Error& e) {
      CHORUS_INFO(kLogTopo, "host topology cache not used (%s): discovering this host alone", e.what());
    }
    hwloc_topology_destroy(topo.t);
    if (hwloc_topology_init(&topo.t) != 0) CHORUS_THROW_ERRNO("hwloc_topology_init failed");
  }
  loadInto(topo.t, "");
}

}  // namespace

NodeTopology loadNodeTopology(const std::string& xmlPath, const std::string& dumpPath) {
  HwlocTopology topo;
  if (xmlPath.empty())
    loadLive(topo);
  else
    loadInto(topo.t, xmlPath);
  if (!dumpPath.empty() && hwloc_topology_export_xml(topo.t, dumpPath.c_str(), 0) != 0)
    CHORUS_THROW(chorusSystemError, "cannot write the hwloc XML topology to '%s' (CHORUS_TOPO_DUMP_FILE): %s",
                 dumpPath.c_str(), strerror(errno));
  return readTopology(topo.t, xmlPath.empty() ? "live" : xmlPath);
}

const NodeTopology& localTopology() {
  // Discovered once; a failure is kept too, so every later caller sees the same error quickly.
  static std::once_flag once;
  static NodeTopology topo;
  static std::exception_ptr failure;
  std::call_once(once, [] {
    try {
      const char* file = getenv("CHORUS_TOPO_FILE");
      const char* dump = getenv("CHORUS_TOPO_DUMP_FILE");
      topo = loadNodeTopology(file ? file : "", dump ? dump : "");
    } catch (...) {
      failure = std::current_exception();
    }
  });
  if (failure) std::rethrow_exception(failure);
  return topo;
}

}  // namespace chorus
