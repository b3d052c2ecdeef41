// The readable tree of one host (chorus-topo without --json): host, then each package's NUMA
// nodes with their memory and cores, the PCI tree local to each NUMA node (devices local to
// several nodes come last, under the host), and on each PCI device its NICs, accelerators and
// other OS devices. The binding closes it.
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "chorus_topo.h"
#include "topology/node_topology.h"

namespace chorus::topo_tool {
namespace {

std::string plural(int n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

std::string hex4(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04x", v & 0xffff);
  return buf;
}

class TreeWriter {
 public:
  explicit TreeWriter(const NodeTopology& topo) : topo_(topo) {
    for (const NicInfo& n : topo.nics)
      if (!n.pciBusId.empty()) nicOn_[n.pciBusId] = &n;
    for (const AcceleratorInfo& a : topo.accelerators)
      if (!a.pciBusId.empty()) accelOn_[a.pciBusId] = &a;
  }

  std::string str() {
    header();
    // Packages in order; NUMA nodes whose package is unknown come under the host.
    std::set<int> packages;
    for (const NumaInfo& n : topo_.numa) packages.insert(n.package);
    for (int pkg : packages) {
      int indent = 1;
      if (pkg >= 0) {
        line(1, "Package " + std::to_string(pkg));
        indent = 2;
      }
      for (const NumaInfo& n : topo_.numa)
        if (n.package == pkg) numaNode(n, indent);
    }
    bool hostWide = false;
    for (const PciInfo& p : topo_.pci) hostWide |= p.numaNode < 0;
    if (hostWide) {
      line(1, "I/O not local to a single NUMA node");
      pciTree(-1, 2);
    }
    // NICs and accelerators that are not on PCI have no place in the tree.
    for (const NicInfo& n : topo_.nics)
      if (n.pciBusId.empty()) line(1, nicText(n));
    for (const AcceleratorInfo& a : topo_.accelerators)
      if (a.pciBusId.empty()) line(1, accelText(a));
    binding();
    return out_.str();
  }

 private:
  void line(int indent, const std::string& text) { out_ << std::string(2 * indent, ' ') << text << '\n'; }

  void header() {
    out_ << "Host " << (topo_.hostname.empty() ? "(unnamed)" : topo_.hostname) << "  ["
         << (topo_.source == "live" ? std::string("live hwloc discovery") : "hwloc XML " + topo_.source) << "]\n";
    line(1, plural(topo_.packages, "package") + ", " + plural(topo_.numaNodes, "NUMA node") + ", " +
                plural(topo_.cores, "core") + ", " + plural(topo_.pus, "PU") + ", " +
                plural(static_cast<int>(topo_.nics.size()), "NIC") + ", " +
                plural(static_cast<int>(topo_.accelerators.size()), "accelerator"));
  }

  void numaNode(const NumaInfo& n, int indent) {
    std::string text = "NUMA node " + std::to_string(n.index);
    if (n.osIndex != n.index) text += " (OS #" + std::to_string(n.osIndex) + ")";
    text += ": " + (n.memoryBytes ? bytesText(n.memoryBytes) : std::string("memory unknown")) + ", " +
            plural(n.cores, "core") + ", " + plural(n.pus, "PU");
    if (topo_.boundNuma == n.index && topo_.bound) text += "  <- bound here";
    line(indent, text);
    pciTree(n.index, indent + 1);
  }

  // The PCI devices local to NUMA node `numa` (-1: to several), indented by their depth.
  void pciTree(int numa, int indent) {
    for (const PciInfo& p : topo_.pci) {
      if (p.numaNode != numa) continue;
      std::string text = p.bridge ? "PCI bridge " + p.busId : "PCI " + p.busId + " " + pciClassText(p.classId);
      text += " [" + hex4(p.vendorId) + ":" + hex4(p.deviceId) + "]";
      if (p.linkGBps > 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, " %.3g GB/s", p.linkGBps);
        text += buf;
      }
      line(indent + p.depth, text);
      osDevices(p, indent + p.depth + 1);
    }
  }

  void osDevices(const PciInfo& p, int indent) {
    auto nic = nicOn_.find(p.busId);
    auto acc = accelOn_.find(p.busId);
    std::string others;
    for (const std::string& name : p.osDevices) {
      const bool shown = (nic != nicOn_.end() && nic->second->name == name) ||
                         (acc != accelOn_.end() && acc->second->name == name);
      if (!shown) others += (others.empty() ? "" : ", ") + name;
    }
    if (nic != nicOn_.end()) line(indent, nicText(*nic->second) + (others.empty() ? "" : "  (also " + others + ")"));
    if (acc != accelOn_.end()) line(indent, accelText(*acc->second) + (others.empty() ? "" : "  (also " + others + ")"));
    if (nic == nicOn_.end() && acc == accelOn_.end() && !others.empty()) line(indent, "OS devices: " + others);
  }

  static std::string nicText(const NicInfo& n) {
    std::string text = "NIC " + n.name + "  " + n.kind + ", " + gbpsText(n.speedGbps);
    if (!n.address.empty()) text += ", " + n.address;
    return text;
  }

  static std::string accelText(const AcceleratorInfo& a) {
    std::string text = "Accelerator " + a.name + "  " + a.api;
    if (!a.model.empty()) text += ", " + a.model;
    return text;
  }

  void binding() {
    std::string text = "Binding: ";
    if (topo_.boundCpuset.empty()) {
      text += "unknown (this process's CPUs are not in this topology)";
    } else {
      text += "PUs " + topo_.boundCpuset + (topo_.bound ? " (bound)" : " (all PUs, not bound)");
      text += topo_.boundNuma >= 0 ? ", NUMA node " + std::to_string(topo_.boundNuma) : ", several NUMA nodes";
    }
    line(1, text);
  }

  const NodeTopology& topo_;
  std::ostringstream out_;
  std::map<std::string, const NicInfo*> nicOn_;
  std::map<std::string, const AcceleratorInfo*> accelOn_;
};

}  // namespace

std::string renderNodeText(const NodeTopology& topo) { return TreeWriter(topo).str(); }

}  // namespace chorus::topo_tool
