// SVG pictures (chorus-topo --svg FILE). The host picture is one box per host with a column per
// NUMA node (memory, cores, then the NICs and accelerators local to it; a last column holds the
// devices local to several nodes), the bound NUMA node outlined. The cluster picture places the
// hosts on a circle, each box listing its ranks, NICs and accelerators, with a line for every
// pair of hosts labelled with the link class and its bandwidth, and a legend of the classes.
// Plain SVG 1.1 with inline styles, so any viewer (and rsvg-convert) renders it the same.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "chorus_topo.h"
#include "topology/cluster_topology.h"
#include "topology/node_topology.h"

namespace chorus::topo_tool {
namespace {

constexpr const char* kFont = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";
constexpr const char* kNicFill = "#dcefdc";
constexpr const char* kNicStroke = "#3b7d3b";
constexpr const char* kAccFill = "#fde6cc";
constexpr const char* kAccStroke = "#b86400";

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

class Svg {
 public:
  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& stroke,
            double strokeWidth = 1, double radius = 6) {
    out_ << "<rect x=\"" << fmt(x) << "\" y=\"" << fmt(y) << "\" width=\"" << fmt(w) << "\" height=\"" << fmt(h)
         << "\" rx=\"" << fmt(radius) << "\" fill=\"" << fill << "\" stroke=\"" << stroke << "\" stroke-width=\""
         << fmt(strokeWidth) << "\"/>\n";
  }
  void text(double x, double y, const std::string& s, double size = 12, const char* weight = "normal",
            const char* anchor = "start", const char* color = "#222") {
    out_ << "<text x=\"" << fmt(x) << "\" y=\"" << fmt(y) << "\" " << kFont << " font-size=\"" << fmt(size)
         << "\" font-weight=\"" << weight << "\" text-anchor=\"" << anchor << "\" fill=\"" << color << "\">"
         << xmlEscape(s) << "</text>\n";
  }
  void line(double x1, double y1, double x2, double y2, const char* color, double width) {
    out_ << "<line x1=\"" << fmt(x1) << "\" y1=\"" << fmt(y1) << "\" x2=\"" << fmt(x2) << "\" y2=\"" << fmt(y2)
         << "\" stroke=\"" << color << "\" stroke-width=\"" << fmt(width) << "\"/>\n";
  }
  std::string done(double w, double h, const std::string& title) const {
    std::ostringstream doc;
    doc << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << fmt(w) << "\" height=\"" << fmt(h)
        << "\" viewBox=\"0 0 " << fmt(w) << " " << fmt(h) << "\">\n"
        << "<title>" << xmlEscape(title) << "</title>\n"
        << "<rect x=\"0\" y=\"0\" width=\"" << fmt(w) << "\" height=\"" << fmt(h) << "\" fill=\"white\"/>\n"
        << out_.str() << "</svg>\n";
    return doc.str();
  }

 private:
  std::ostringstream out_;
};

// Rough width of a string at a font size (DejaVu Sans averages about 0.6 em per character).
double textWidth(const std::string& s, double size) { return 0.6 * size * static_cast<double>(s.size()); }

// Shortens `s` to fit `width` pixels at `size`, ending it with "...".
std::string fit(const std::string& s, double width, double size) {
  if (textWidth(s, size) <= width) return s;
  size_t keep = static_cast<size_t>(std::max(0.0, width / (0.6 * size) - 3));
  return s.substr(0, keep) + "...";
}

// "0-3,8" from a sorted list of ranks.
std::string ranges(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(v[i]) + (j > i ? "-" + std::to_string(v[j]) : "");
    i = j + 1;
  }
  return out;
}

std::string cardString(const char* field, size_t size) { return std::string(field, strnlen(field, size)); }

std::string bandwidthText(const LinkClass& c) {
  char buf[96];
  if (c.bandwidthGBps > 0)
    std::snprintf(buf, sizeof buf, "%g GB/s, %g us", c.bandwidthGBps, c.latencyUs);
  else
    std::snprintf(buf, sizeof buf, "bandwidth unknown, %g us", c.latencyUs);
  return buf;
}

// --- host picture ----------------------------------------------------------------------------

struct Device {
  std::string line1, line2;
  bool nic = false;
};

constexpr double kMargin = 20, kColW = 250, kColGap = 14, kDevH = 38, kDevGap = 8, kHeadH = 56, kNumaHeadH = 44;

}  // namespace

std::string renderNodeSvg(const NodeTopology& topo) {
  // Columns: NUMA nodes by logical index, then "several / unknown".
  const int numaCols = static_cast<int>(topo.numa.size());
  std::vector<std::vector<Device>> cols(numaCols + 1);
  auto colOf = [&](int numa) { return (numa >= 0 && numa < numaCols) ? numa : numaCols; };
  for (const NicInfo& n : topo.nics)
    cols[colOf(n.numaNode)].push_back({n.name + " \u00b7 " + n.kind, gbpsText(n.speedGbps) +
                                                                   (n.pciBusId.empty() ? "" : " \u00b7 " + n.pciBusId),
                                       true});
  for (const AcceleratorInfo& a : topo.accelerators)
    cols[colOf(a.numaNode)].push_back({a.name + " \u00b7 " + a.api, a.model.empty() ? a.pciBusId : a.model, false});
  const bool extraCol = !cols[numaCols].empty() || numaCols == 0;
  const int ncols = numaCols + (extraCol ? 1 : 0);
  size_t rows = 0;
  for (const auto& c : cols) rows = std::max(rows, c.size());

  // At least wide enough for the binding line and the legend under the host.
  const double hostW = std::max(ncols * kColW + (ncols - 1) * kColGap + 2 * kMargin, 440.0);
  const double colH = kNumaHeadH + static_cast<double>(rows) * (kDevH + kDevGap) + kDevGap;
  const double hostH = kHeadH + colH + 40;
  const double W = hostW + 2 * kMargin, H = hostH + 2 * kMargin + 30;
  Svg svg;
  const std::string host = topo.hostname.empty() ? "(unnamed host)" : topo.hostname;
  svg.rect(kMargin, kMargin, hostW, hostH, "#f4f4f6", "#555", 1.5, 10);
  svg.text(kMargin + 16, kMargin + 26, host, 18, "bold");
  char sub[160];
  std::snprintf(sub, sizeof sub, "%d package%s, %d NUMA node%s, %d cores, %d PUs", topo.packages,
                topo.packages == 1 ? "" : "s", topo.numaNodes, topo.numaNodes == 1 ? "" : "s", topo.cores, topo.pus);
  svg.text(kMargin + 16, kMargin + 44, sub, 12, "normal", "start", "#555");

  for (int c = 0; c < ncols; ++c) {
    const double x = 2 * kMargin + c * (kColW + kColGap), y = kMargin + kHeadH;
    const bool isNuma = c < numaCols;
    const bool boundHere = isNuma && topo.bound && topo.boundNuma == topo.numa[c].index;
    svg.rect(x, y, kColW, colH, isNuma ? "#e4ecf7" : "#ececec", boundHere ? "#1f5fbf" : "#8aa0bf", boundHere ? 3 : 1);
    if (isNuma) {
      const NumaInfo& n = topo.numa[c];
      std::string title = "NUMA node " + std::to_string(n.index) +
                          (n.package >= 0 ? "  (package " + std::to_string(n.package) + ")" : "");
      svg.text(x + 10, y + 18, title, 13, "bold");
      svg.text(x + 10, y + 34,
               (n.memoryBytes ? bytesText(n.memoryBytes) : std::string("memory ?")) + ", " + std::to_string(n.cores) +
                   " cores, " + std::to_string(n.pus) + " PUs" + (boundHere ? "  - bound" : ""),
               11, "normal", "start", boundHere ? "#1f5fbf" : "#333");
    } else {
      svg.text(x + 10, y + 18, "Local to several NUMA nodes", 13, "bold");
      svg.text(x + 10, y + 34, "(or locality unknown)", 11, "normal", "start", "#555");
    }
    for (size_t i = 0; i < cols[c].size(); ++i) {
      const Device& d = cols[c][i];
      const double dy = y + kNumaHeadH + kDevGap + static_cast<double>(i) * (kDevH + kDevGap);
      svg.rect(x + 8, dy, kColW - 16, kDevH, d.nic ? kNicFill : kAccFill, d.nic ? kNicStroke : kAccStroke);
      svg.text(x + 16, dy + 16, fit((d.nic ? "NIC " : "GPU ") + d.line1, kColW - 32, 12), 12, "bold");
      svg.text(x + 16, dy + 31, fit(d.line2, kColW - 32, 11), 11, "normal", "start", "#444");
    }
  }
  std::string binding = topo.boundCpuset.empty()
                            ? "binding: unknown (this process's CPUs are not in this topology)"
                            : "binding: PUs " + topo.boundCpuset + (topo.bound ? " (bound)" : " (not bound)") +
                                  (topo.boundNuma >= 0 ? ", NUMA node " + std::to_string(topo.boundNuma)
                                                       : ", several NUMA nodes");
  svg.text(kMargin + 16, kMargin + kHeadH + colH + 26, binding, 12, "normal", "start", "#333");
  svg.text(kMargin, H - 14,
           fit("green: NICs, orange: accelerators; source: " +
                   (topo.source == "live" ? std::string("live hwloc discovery") : topo.source),
               W - 2 * kMargin, 10),
           10, "normal", "start", "#777");
  return svg.done(W, H, "chorus-topo: " + host);
}

// --- cluster picture -------------------------------------------------------------------------

std::string renderClusterSvg(const ClusterTopology& cluster) {
  const auto& hosts = cluster.hosts();
  const int n = static_cast<int>(hosts.size());
  auto nicLine = [](const TopoCardNic& nic) {
    return cardString(nic.name, sizeof nic.name) + " \u00b7 " + cardString(nic.kind, sizeof nic.kind) + " \u00b7 " +
           gbpsText(nic.speedGbps) + (nic.numaNode >= 0 ? " \u00b7 NUMA " + std::to_string(nic.numaNode) : "");
  };
  // Boxes as wide as their longest NIC line needs (within limits; longer lines are shortened).
  constexpr double lineH = 15;
  double boxW = 230;
  for (const HostInfo& h : hosts)
    for (const TopoCardNic& nic : h.nics) boxW = std::max(boxW, textWidth(nicLine(nic), 11) + 24);
  boxW = std::min(boxW, 340.0);
  auto boxH = [&](const HostInfo& h) { return 78 + lineH * static_cast<double>(std::max<size_t>(h.nics.size(), 1)); };
  double maxH = 0;
  for (const HostInfo& h : hosts) maxH = std::max(maxH, boxH(h));

  // Hosts on a circle (two hosts: side by side), big enough that boxes do not overlap.
  const double radius = n <= 1 ? 0 : std::max(200.0, (boxW + 60) * n / (2 * M_PI));
  const double legendH = 30 + 16 * static_cast<double>(cluster.linkSummary().size());
  const double W = 2 * radius + boxW + 2 * kMargin + 40, H = 2 * radius + maxH + 2 * kMargin + 60 + legendH;
  const double cx = W / 2, cy = kMargin + 40 + radius + maxH / 2;
  std::vector<double> hx(n), hy(n);
  for (int i = 0; i < n; ++i) {
    const double a = M_PI + 2 * M_PI * i / std::max(n, 1);  // host 0 on the left
    hx[i] = cx + radius * std::cos(a);
    hy[i] = cy + radius * std::sin(a) * (n == 2 ? 0 : 1);
  }
  Svg svg;
  int totalRanks = 0;
  for (const HostInfo& h : hosts) totalRanks += static_cast<int>(h.ranks.size());
  svg.text(kMargin, kMargin + 16,
           "Chorus cluster: " + std::to_string(n) + " host" + (n == 1 ? "" : "s") + ", " + std::to_string(totalRanks) +
               " rank" + (totalRanks == 1 ? "" : "s"),
           16, "bold");

  // Links between hosts (drawn first, under the boxes). Beyond 8 hosts the legend says it all.
  if (n <= 8) {
    for (int a = 0; a < n; ++a)
      for (int b = a + 1; b < n; ++b) {
        if (hosts[a].ranks.empty() || hosts[b].ranks.empty()) continue;
        const LinkClass& c = cluster.link(hosts[a].ranks.front(), hosts[b].ranks.front());
        const double width = c.bandwidthGBps > 0 ? std::clamp(1 + std::log2(1 + c.bandwidthGBps), 1.0, 6.0) : 1;
        svg.line(hx[a], hy[a], hx[b], hy[b], "#6a7fa8", width);
        // Neighbours on the circle get their label mid-way, chords a third of the way along so
        // that crossing chords do not stack their labels in the middle.
        const bool neighbours = (b - a == 1) || (a == 0 && b == n - 1);
        const double t = neighbours ? 0.5 : 0.33;
        const double lx = hx[a] + t * (hx[b] - hx[a]), ly = hy[a] + t * (hy[b] - hy[a]);
        const std::string l1 = c.name, l2 = bandwidthText(c);
        const double lw = std::max(textWidth(l1, 11), textWidth(l2, 10)) + 12;
        svg.rect(lx - lw / 2, ly - 16, lw, 32, "white", "#6a7fa8", 1, 4);
        svg.text(lx, ly - 3, l1, 11, "bold", "middle");
        svg.text(lx, ly + 11, l2, 10, "normal", "middle", "#333");
      }
  }

  for (int i = 0; i < n; ++i) {
    const HostInfo& h = hosts[i];
    const double bh = boxH(h), x = hx[i] - boxW / 2, y = hy[i] - bh / 2;
    svg.rect(x, y, boxW, bh, "#e4ecf7", "#1f3f7f", 1.5, 8);
    std::string title = h.name.empty() ? "host " + std::to_string(i) : h.name;
    svg.text(x + 10, y + 18, fit(title, boxW - 20, 13), 13, "bold");
    std::string where;
    if (!h.group.empty()) where += "group " + h.group;
    if (!h.rail.empty()) where += (where.empty() ? "" : ", ") + std::string("rail ") + h.rail;
    if (!h.address.empty()) where += (where.empty() ? "" : ", ") + h.address;
    svg.text(x + 10, y + 33, fit(where, boxW - 20, 10), 10, "normal", "start", "#555");
    svg.text(x + 10, y + 49,
             fit("ranks " + ranges(h.ranks) + ", " + std::to_string(h.numaNodes) + " NUMA, " +
                     std::to_string(h.accelerators) + " accel.",
                 boxW - 20, 11),
             11);
    std::string uplink = h.uplinkGbps > 0 ? "uplink " + gbpsText(h.uplinkGbps) : "uplink speed unknown";
    if (h.ranks.size() >= 2) uplink += ", local: " + cluster.link(h.ranks[0], h.ranks[1]).name;
    svg.text(x + 10, y + 64, fit(uplink, boxW - 20, 11), 11);
    if (h.nics.empty()) svg.text(x + 10, y + 64 + lineH, "no NIC reported", 11, "normal", "start", "#777");
    for (size_t k = 0; k < h.nics.size(); ++k) {
      svg.text(x + 10, y + 64 + lineH * static_cast<double>(k + 1), fit(nicLine(h.nics[k]), boxW - 20, 11), 11,
               "normal", "start", kNicStroke);
    }
  }

  // Legend: every link class in use, with its pair count and where its numbers came from.
  double ly = H - legendH - kMargin + 10;
  svg.text(kMargin, ly, "Link classes (rank pairs):", 12, "bold");
  for (const auto& [c, pairs] : cluster.linkSummary()) {
    ly += 16;
    svg.text(kMargin + 10, ly,
             fit(c.name + ": " + std::to_string(pairs) + (pairs == 1 ? " pair, " : " pairs, ") + bandwidthText(c) + (c.why.empty() ? "" : "  - " + c.why),
                 W - 2 * kMargin - 10, 11),
             11);
  }
  return svg.done(W, H, "chorus-topo: cluster of " + std::to_string(n) + " hosts");
}

}  // namespace chorus::topo_tool
