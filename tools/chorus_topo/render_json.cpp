// JSON renderings (chorus-topo --json): every field of a NodeTopology under the names the
// struct uses, and the cluster view that wraps ClusterTopology::toJson().
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "chorus_topo.h"
#include "topology/cluster_topology.h"
#include "topology/json_text.h"
#include "topology/node_topology.h"

namespace chorus::topo_tool {
namespace {

std::string str(const std::string& s) { return jsonString(s); }

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  // Integers (byte counts reach 2^40 and more) in full; fractions at float precision.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Builds one JSON object, "key": value pairs in insertion order.
class Object {
 public:
  Object& raw(const char* key, const std::string& json) {
    out_ << (first_ ? "" : ", ") << str(key) << ": " << json;
    first_ = false;
    return *this;
  }
  Object& s(const char* key, const std::string& v) { return raw(key, str(v)); }
  Object& n(const char* key, double v) { return raw(key, num(v)); }
  Object& b(const char* key, bool v) { return raw(key, v ? "true" : "false"); }
  std::string done() const { return "{" + out_.str() + "}"; }

 private:
  std::ostringstream out_;
  bool first_ = true;
};

template <typename T, typename F>
std::string array(const std::vector<T>& items, F&& one) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + one(items[i]);
  return out + "]";
}

}  // namespace

std::string renderNodeJson(const NodeTopology& t) {
  Object o;
  o.s("source", t.source).s("hostname", t.hostname);
  o.n("packages", t.packages).n("numaNodes", t.numaNodes).n("cores", t.cores).n("pus", t.pus);
  o.raw("numa", array(t.numa, [](const NumaInfo& n) {
    return Object()
        .n("index", n.index)
        .n("osIndex", n.osIndex)
        .n("memoryBytes", static_cast<double>(n.memoryBytes))
        .n("cores", n.cores)
        .n("pus", n.pus)
        .n("package", n.package)
        .done();
  }));
  o.raw("pci", array(t.pci, [](const PciInfo& p) {
    return Object()
        .s("busId", p.busId)
        .s("parentBusId", p.parentBusId)
        .b("bridge", p.bridge)
        .n("vendorId", p.vendorId)
        .n("deviceId", p.deviceId)
        .n("classId", p.classId)
        .s("class", pciClassText(p.classId))
        .n("linkGBps", p.linkGBps)
        .n("numaNode", p.numaNode)
        .n("depth", p.depth)
        .raw("osDevices", array(p.osDevices, [](const std::string& s) { return str(s); }))
        .done();
  }));
  o.raw("nics", array(t.nics, [](const NicInfo& n) {
    return Object()
        .s("name", n.name)
        .s("kind", n.kind)
        .n("speedGbps", n.speedGbps)
        .n("numaNode", n.numaNode)
        .s("pciBusId", n.pciBusId)
        .s("address", n.address)
        .done();
  }));
  o.raw("accelerators", array(t.accelerators, [](const AcceleratorInfo& a) {
    return Object()
        .s("name", a.name)
        .s("api", a.api)
        .s("model", a.model)
        .n("numaNode", a.numaNode)
        .s("pciBusId", a.pciBusId)
        .done();
  }));
  o.raw("binding", Object().s("cpuset", t.boundCpuset).b("bound", t.bound).n("numaNode", t.boundNuma).done());
  return o.done();
}

std::string renderClusterJson(const ClusterTopology& cluster, const NodeTopology& rank0) {
  return Object().raw("cluster", cluster.toJson()).raw("rank0", renderNodeJson(rank0)).done();
}

}  // namespace chorus::topo_tool
