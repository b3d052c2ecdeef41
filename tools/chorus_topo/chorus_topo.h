// chorus-topo: what Chorus sees of the machine it runs on (hwloc discovery, src/topology/) and,
// under a launcher, of the whole cluster (the ClusterTopology a communicator gathers at init).
// Three renderings of each: a readable tree, JSON and an SVG picture. This header is what the
// tool's files share; main.cpp says how they are chosen.
#pragma once

#include <string>

namespace chorus {
struct NodeTopology;
class ClusterTopology;
}  // namespace chorus

namespace chorus::topo_tool {

// The command line (main.cpp parses it).
struct Options {
  std::string xml;       // --xml FILE: inspect this hwloc XML (with --cluster: this rank's topology)
  std::string svg;       // --svg FILE: also write a picture there
  bool json = false;     // --json: JSON on stdout instead of the tree
  bool cluster = false;  // --cluster: join the launcher's communicator even if no launcher is seen
};

// The cluster view (cluster_view.cpp): joins the communicator the launcher describes, and rank 0
// prints the cluster topology. Returns the process exit status.
int runClusterView(const Options& opts);
// Whether a launcher's environment is present (Open MPI, Slurm, torchrun).
bool launcherDetected();

// The readable tree: host, packages, NUMA nodes, the PCI tree below each, NICs and
// accelerators on their PCI devices, then the binding.
std::string renderNodeText(const NodeTopology& topo);
// One JSON object with every field of the NodeTopology.
std::string renderNodeJson(const NodeTopology& topo);
// {"cluster": <ClusterTopology::toJson()>, "rank0": <renderNodeJson of rank 0's host>}.
std::string renderClusterJson(const ClusterTopology& cluster, const NodeTopology& rank0);
// Pictures: the host with its NUMA nodes, NICs and accelerators; the cluster's hosts and the
// links between them labelled with their class and speed.
std::string renderNodeSvg(const NodeTopology& topo);
std::string renderClusterSvg(const ClusterTopology& cluster);

// Shared helpers (render_common.cpp).
std::string xmlEscape(const std::string& s);   // text or attribute value for SVG
std::string bytesText(unsigned long long bytes);  // "256 GiB", "1.5 GiB", "512 MiB"
std::string gbpsText(double gbps);                // "200 Gb/s", "2.5 Gb/s", "? Gb/s"
std::string pciClassText(unsigned classId);       // "3D controller", "PCI bridge", ...
// Writes `content` to `path`; false (with a message on stderr, under the program's name) when
// it cannot. chorus-sim uses it too.
bool writeFile(const std::string& path, const std::string& content);

}  // namespace chorus::topo_tool
