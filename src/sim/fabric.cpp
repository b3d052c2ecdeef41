#include "sim/fabric.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/log.h"
#include "topology/cluster_file.h"

namespace chorus::sim {
namespace {

// `where` starts every message: "fabric" for a generator spec, "FILE:LINE: fabric" for a file.
double number(const std::string& where, const std::string& key, const std::string& v, double lo) {
  char* end = nullptr;
  double x = strtod(v.c_str(), &end);
  CHORUS_CHECK_ARG(!v.empty() && end && *end == '\0' && x >= lo, "%s: %s=%s is not a number >= %g", where.c_str(), key.c_str(), v.c_str(), lo);
  return x;
}

// Calls item(text) for each non-empty piece of `list` between separators.
template <typename F>
void forEachItem(const std::string& list, char sep, F item) {
  size_t at = 0;
  while (at <= list.size()) {
    size_t end = list.find(sep, at);
    if (end == std::string::npos) end = list.size();
    if (end > at) item(list.substr(at, end - at));
    at = end + 1;
  }
}

constexpr double kGbitToBytesPerUs = 1e9 / 8 / 1e6;  // 1 Gbit/s = 125 bytes/us
constexpr double kGBToBytesPerUs = 1e3;              // 1 GB/s = 1000 bytes/us

}  // namespace

uint32_t Fabric::addLink(const std::string& name, double bytesPerUs, double latencyUs) {
  links_.push_back({name, bytesPerUs, latencyUs});
  return static_cast<uint32_t>(links_.size() - 1);
}

Fabric Fabric::generate(const std::string& spec) {
  size_t colon = spec.find(':');
  std::map<std::string, std::string> kv;
  if (colon != std::string::npos) {
    forEachItem(spec.substr(colon + 1), ',', [&](const std::string& item) {
      size_t eq = item.find('=');
      CHORUS_CHECK_ARG(eq != std::string::npos, "fabric: '%s' is not key=value", item.c_str());
      std::string key = item.substr(0, eq), value = item.substr(eq + 1);
      if (key == "slow" && kv.count(key)) value = kv[key] + ";" + value;
      kv[key] = value;
    });
  }
  return make(spec.substr(0, colon), kv, nullptr, "fabric");
}

Fabric Fabric::load(const std::string& path) {
  std::ifstream in(path);
  CHORUS_CHECK_ARG(in.good(), "fabric file %s cannot be read: %s", path.c_str(), strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  const ClusterFile file = parseClusterFile(text.str(), path);
  CHORUS_CHECK_ARG(!file.fabric.shape.empty(), "%s: no 'fabric' line (a fabric file names its shape first: fabric <flat|fat-tree|rail> "
                   "hosts=H gpus=G ...; docs/SIMULATOR.md)", path.c_str());
  CHORUS_CHECK_ARG(file.links.empty(), "%s:%d: 'link' lines are not simulated yet (between hosts, the fabric's shape gives the links)",
                   path.c_str(), file.links.empty() ? 0 : file.links[0].line);
  std::map<std::string, std::string> kv;
  for (const auto& [key, value] : file.fabric.options) {
    CHORUS_CHECK_ARG(key != "slow", "%s:%d: slow= is the generator's shorthand; in a file, give the hosts their uplink (host <pattern> gbps=)",
                     path.c_str(), file.fabric.line);
    kv[key] = value;
  }
  // Host lines, as the runtime reads them: the first line matching "host<h>" gives host h its
  // uplink (its NICs together) and its group (on a fat tree, its leaf).
  return make(file.fabric.shape, kv, [&](Fabric& f) {
    std::vector<const ClusterFileHost*> decl(f.hosts_);
    int grouped = -1, ungrouped = -1;  // a host with a group, one without
    for (int h = 0; h < f.hosts_; ++h) {
      decl[h] = file.hostFor("host" + std::to_string(h), "");
      if (decl[h] && decl[h]->gbps > 0) f.nic_[h] = decl[h]->gbps / f.gpus_ * kGbitToBytesPerUs;
      (decl[h] && !decl[h]->group.empty() ? grouped : ungrouped) = h;
    }
    if (f.shape_ != Shape::FatTree || grouped < 0) return;
    CHORUS_CHECK_ARG(ungrouped < 0, "%s: host%d has a group and host%d none: on a fat tree the groups are the leaves, so every "
                     "host needs one (or none, and leaf= sets them)", path.c_str(), grouped, ungrouped);
    std::map<std::string, int> leafOfGroup;  // leaves numbered in the order of their first host
    for (int h = 0; h < f.hosts_; ++h)
      f.leafOf_[h] = leafOfGroup.try_emplace(decl[h]->group, static_cast<int>(leafOfGroup.size())).first->second;
    f.fromGroups_ = true;
  }, format("%s:%d: fabric", path.c_str(), file.fabric.line));
}

Fabric Fabric::make(const std::string& shape, const std::map<std::string, std::string>& kv, const std::function<void(Fabric&)>& adjust,
                    const std::string& where) {
  Fabric f;
  if (shape == "flat") f.shape_ = Shape::Flat;
  else if (shape == "fat-tree") f.shape_ = Shape::FatTree;
  else if (shape == "rail") f.shape_ = Shape::Rail;
  else CHORUS_THROW(chorusInvalidArgument, "%s: unknown shape '%s' (flat, fat-tree or rail)", where.c_str(), shape.c_str());
  double nicGbps = 400, nvGBps = 450, membusGBps = 0;
  for (const auto& [key, value] : kv) {
    if (key == "hosts") f.hosts_ = static_cast<int>(number(where, key, value, 1));
    else if (key == "gpus") f.gpus_ = static_cast<int>(number(where, key, value, 1));
    else if (key == "leaf") f.leafHosts_ = static_cast<int>(number(where, key, value, 1));
    else if (key == "oversub") f.oversub_ = number(where, key, value, 1);
    else if (key == "nic") nicGbps = number(where, key, value, 1e-3);
    else if (key == "nvlink") nvGBps = number(where, key, value, 1e-3);
    else if (key == "hop_us") f.hopUs_ = number(where, key, value, 0);
    else if (key == "alpha_us") f.alphaUs_ = number(where, key, value, 0);
    else if (key == "gap_us") f.gapUs_ = number(where, key, value, 0);
    else if (key == "membus") membusGBps = number(where, key, value, 1e-3);
    else if (key != "slow") CHORUS_THROW(chorusInvalidArgument, "%s: unknown key '%s'", where.c_str(), key.c_str());
  }
  CHORUS_CHECK_ARG(static_cast<double>(f.hosts_) * f.gpus_ <= (1 << 20), "%s: %d x %d ranks is too many", where.c_str(), f.hosts_, f.gpus_);
  if (f.shape_ != Shape::FatTree) f.leafHosts_ = f.hosts_;
  f.nic_.assign(f.hosts_, nicGbps * kGbitToBytesPerUs);
  if (kv.count("slow")) {
    forEachItem(kv.at("slow"), ';', [&](const std::string& item) {
      size_t dash = item.find('-'), amp = item.find('@');
      CHORUS_CHECK_ARG(dash != std::string::npos && amp != std::string::npos && dash < amp,
                       "%s: slow=%s is not <first>-<last>@<Gbit/s>", where.c_str(), item.c_str());
      int first = static_cast<int>(number(where, "slow", item.substr(0, dash), 0));
      int last = static_cast<int>(number(where, "slow", item.substr(dash + 1, amp - dash - 1), first));
      double gbps = number(where, "slow", item.substr(amp + 1), 1e-3);
      CHORUS_CHECK_ARG(last < f.hosts_, "%s: slow=%s names host %d of %d", where.c_str(), item.c_str(), last, f.hosts_);
      for (int h = first; h <= last; ++h) f.nic_[h] = gbps * kGbitToBytesPerUs;
    });
  }
  f.leafOf_.resize(f.hosts_);
  for (int h = 0; h < f.hosts_; ++h) f.leafOf_[h] = h / f.leafHosts_;
  if (adjust) adjust(f);
  int leaves = 0;
  for (int l : f.leafOf_) leaves = std::max(leaves, l + 1);
  const int p = f.ranks();
  for (int r = 0; r < p; ++r) {
    const int h = r / f.gpus_, g = r % f.gpus_;
    const std::string gpu = "host" + std::to_string(h) + ".gpu" + std::to_string(g);
    f.nvUp_.push_back(f.addLink(gpu + "->nvswitch", nvGBps * kGBToBytesPerUs, 0));
    f.nvDown_.push_back(f.addLink("nvswitch->" + gpu, nvGBps * kGBToBytesPerUs, 0));
    const std::string sw = f.shape_ == Shape::Rail ? "rail" + std::to_string(g) : "leaf" + std::to_string(f.leafOf_[h]);
    f.nicUp_.push_back(f.addLink(gpu + "->" + sw, f.nic_[h], f.hopUs_));
    f.nicDown_.push_back(f.addLink(sw + "->" + gpu, f.nic_[h], 0));
  }
  if (membusGBps > 0)
    for (int h = 0; h < f.hosts_; ++h) f.membus_.push_back(f.addLink("host" + std::to_string(h) + ".membus", membusGBps * kGBToBytesPerUs, 0));
  if (f.shape_ == Shape::FatTree) {
    std::vector<double> down(leaves, 0);
    for (int h = 0; h < f.hosts_; ++h) down[f.leafOf_[h]] += f.nic_[h] * f.gpus_;
    for (int l = 0; l < leaves; ++l) {
      f.leafUp_.push_back(f.addLink("leaf" + std::to_string(l) + "->spine", down[l] / f.oversub_, f.hopUs_));
      f.leafDown_.push_back(f.addLink("spine->leaf" + std::to_string(l), down[l] / f.oversub_, f.hopUs_));
    }
  }
  return f;
}

void Fabric::path(int a, int b, std::vector<uint32_t>* out) const {
  out->clear();
  if (a == b) return;
  const int ha = a / gpus_, hb = b / gpus_;
  if (ha == hb) {
    out->push_back(nvUp_[a]);
    if (!membus_.empty()) out->push_back(membus_[ha]);
    out->push_back(nvDown_[b]);
    return;
  }
  int src = a;
  if (shape_ == Shape::Rail && a % gpus_ != b % gpus_) {
    // Across the host to the GPU on the destination's rail, then that GPU's NIC.
    src = ha * gpus_ + b % gpus_;
    out->push_back(nvUp_[a]);
    out->push_back(nvDown_[src]);
  }
  out->push_back(nicUp_[src]);
  if (shape_ == Shape::FatTree && leafOf_[ha] != leafOf_[hb]) {
    out->push_back(leafUp_[leafOf_[ha]]);
    out->push_back(leafDown_[leafOf_[hb]]);
  }
  out->push_back(nicDown_[b]);
}

std::vector<uint32_t> Fabric::linkClasses(int period) const {
  const int p = ranks();
  std::vector<uint32_t> cls(links_.size());
  for (uint32_t l = 0; l < cls.size(); ++l) cls[l] = l;
  if (period == p) return cls;
  if (period < 1 || p % period != 0 || period % gpus_ != 0) return {};
  const int hostPeriod = period / gpus_;
  if (shape_ == Shape::FatTree && leafUp_.size() > 1) {
    if (fromGroups_ || hosts_ % leafHosts_ != 0 || hostPeriod % leafHosts_ != 0) return {};
    const int leafPeriod = hostPeriod / leafHosts_;
    for (size_t l = 0; l < leafUp_.size(); ++l) {
      cls[leafUp_[l]] = leafUp_[l % leafPeriod];
      cls[leafDown_[l]] = leafDown_[l % leafPeriod];
    }
  }
  for (int r = 0; r < p; ++r)
    for (const std::vector<uint32_t>* perRank : {&nvUp_, &nvDown_, &nicUp_, &nicDown_}) cls[(*perRank)[r]] = (*perRank)[r % period];
  for (size_t h = 0; h < membus_.size(); ++h) cls[membus_[h]] = membus_[h % hostPeriod];
  for (uint32_t l = 0; l < cls.size(); ++l)
    if (links_[l].bytesPerUs != links_[cls[l]].bytesPerUs || links_[l].latencyUs != links_[cls[l]].latencyUs) return {};
  return cls;
}

int Fabric::period() const {
  const int p = ranks();
  for (int t = gpus_; t < p; t += gpus_)
    if (p % t == 0 && !linkClasses(t).empty()) return t;
  return p;
}

std::string Fabric::describe() const {
  const char* name = shape_ == Shape::Flat ? "flat" : shape_ == Shape::FatTree ? "fat-tree" : "rail";
  std::string s = format("%s: %d hosts x %d GPUs, NIC %.0f Gbit/s, NVLink %.0f GB/s", name, hosts_, gpus_,
                         nic_.empty() ? 0.0 : nic_[0] / kGbitToBytesPerUs, links_.empty() ? 0.0 : links_[0].bytesPerUs / kGBToBytesPerUs);
  if (shape_ == Shape::FatTree && fromGroups_) s += format(", %zu leaves (the hosts' groups), oversubscription %.2g:1", leafUp_.size(), oversub_);
  else if (shape_ == Shape::FatTree) s += format(", %d hosts per leaf, oversubscription %.2g:1", leafHosts_, oversub_);
  int slow = 0;
  for (int h = 0; h < hosts_; ++h) slow += nic_[h] != nic_[0];
  if (slow) s += format(", %d hosts with slower NICs", slow);
  s += format(", %.3g us per hop, %.3g us per message", hopUs_, alphaUs_);
  return gapUs_ > 0 ? s + format(", %.3g us between a rank's message starts", gapUs_) : s;
}

}  // namespace chorus::sim
