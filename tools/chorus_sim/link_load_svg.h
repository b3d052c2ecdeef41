// chorus-sim --svg: a simulated run's link load over time, drawn as an SVG heat map.
#pragma once

#include <string>

#include "sim/fabric.h"
#include "sim/simulator.h"

namespace chorus {

// Titled `title`, then the fabric. One row per link, the `rows` busiest by bytes over bandwidth (one per class when folded), one
// column per time bin of res.linkLoad, shaded by the share of the link's bandwidth used in
// the bin; the title, a time axis and the shading's scale. res must come from a run with
// SimOptions::linkLoad.
std::string linkLoadSvg(const sim::Fabric& fabric, const sim::SimResult& res, const std::string& title, size_t rows);

}  // namespace chorus
