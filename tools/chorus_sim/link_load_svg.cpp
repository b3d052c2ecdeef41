#include "link_load_svg.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/error.h"
#include "chorus_topo.h"

namespace chorus {
namespace {

// White at 0, deep blue at 1 (of the link's bandwidth).
std::string shade(double u) {
  u = std::clamp(u, 0.0, 1.0);
  auto mix = [&](int from, int to) { return static_cast<int>(std::lround(from + (to - from) * u)); };
  return format("#%02x%02x%02x", mix(255, 8), mix(255, 48), mix(255, 107));
}

std::string timeText(double us) {
  if (us >= 1e6) return format("%.3g s", us / 1e6);
  if (us >= 1e3) return format("%.3g ms", us / 1e3);
  return format("%.3g us", us);
}

}  // namespace

std::string linkLoadSvg(const sim::Fabric& fabric, const sim::SimResult& res, const std::string& title, size_t rows) {
  const sim::LinkLoadOverTime& ll = res.linkLoad;
  std::vector<std::pair<double, size_t>> order;  // total load (us of its bandwidth), link
  for (size_t l = 0; l < ll.bytes.size(); ++l) {
    if (ll.bytes[l].empty()) continue;
    double total = 0;
    for (double b : ll.bytes[l]) total += b;
    order.push_back({total / fabric.links()[l].bytesPerUs, l});
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (order.size() > rows) order.resize(rows);
  const size_t bins = std::min(sim::LinkLoadOverTime::kLoadBins, static_cast<size_t>(std::ceil(res.timeUs / ll.binUs)));
  constexpr int kLeft = 190, kTop = 54, kRowH = 14, kPlotW = 768, kRight = 20;
  const double colW = bins ? static_cast<double>(kPlotW) / static_cast<double>(bins) : kPlotW;
  const int height = kTop + static_cast<int>(order.size()) * kRowH + 70;
  std::string svg = format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"10\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%d\" y=\"18\" font-size=\"13\">%s</text>\n"
      "<text x=\"%d\" y=\"32\">%s</text>\n"
      "<text x=\"%d\" y=\"46\" fill=\"#555\">the %zu busiest links, share of each link's bandwidth used over time (%s per column)</text>\n",
      kLeft + kPlotW + kRight, height, 10, topo_tool::xmlEscape(title).c_str(), 10, topo_tool::xmlEscape(fabric.describe()).c_str(), 10, order.size(),
      timeText(ll.binUs).c_str());
  for (size_t row = 0; row < order.size(); ++row) {
    const size_t l = order[row].second;
    const int y = kTop + static_cast<int>(row) * kRowH;
    svg += format("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", kLeft - 6, y + kRowH - 4,
                  topo_tool::xmlEscape(fabric.links()[l].name).c_str());
    for (size_t b = 0; b < bins; ++b) {
      const double u = ll.bytes[l][b] / (fabric.links()[l].bytesPerUs * ll.binUs);
      if (u < 0.005) continue;
      svg += format("<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\"><title>%.0f%%</title></rect>\n",
                    kLeft + colW * static_cast<double>(b), y, colW + 0.05, kRowH - 1, shade(u).c_str(), 100 * u);
    }
  }
  const int axisY = kTop + static_cast<int>(order.size()) * kRowH + 4;
  svg += format("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", kLeft, axisY, kLeft + kPlotW, axisY);
  const double span = ll.binUs * static_cast<double>(bins);
  for (int k = 0; k <= 4; ++k) {
    const double x = kLeft + kPlotW * k / 4.0;
    svg += format("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\"/><text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                  x, axisY, x, axisY + 4, x, axisY + 16, timeText(span * k / 4).c_str());
  }
  svg += format("<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">simulated time (the run ends at %s)</text>\n", kLeft + kPlotW / 2,
                axisY + 30, timeText(res.timeUs).c_str());
  for (int k = 0; k <= 10; ++k)
    svg += format("<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"10\" fill=\"%s\" stroke=\"#ccc\"/>\n", 10 + 12 * k, axisY + 40,
                  shade(k / 10.0).c_str());
  svg += format("<text x=\"%d\" y=\"%d\">0 to 100%% of the link's bandwidth</text>\n</svg>\n", 10 + 12 * 11 + 6, axisY + 49);
  return svg;
}

}  // namespace chorus
