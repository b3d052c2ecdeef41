// chorus-topo: prints what Chorus sees of this machine, of an hwloc XML file, or (under a
// launcher) of the whole cluster. Usage below; chorus_topo.h lists the renderings.
//
// Which view: --cluster, or a launcher's environment (Open MPI, Slurm, torchrun) without --xml,
// gives the cluster view (cluster_view.cpp); otherwise the local one: --xml FILE, else
// CHORUS_TOPO_FILE, else the live machine (the same discovery a communicator makes at init).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "chorus_topo.h"
#include "base/error.h"
#include "topology/node_topology.h"

namespace {

using chorus::topo_tool::Options;

void usage(FILE* out) {
  std::fputs(
      "usage: chorus-topo [--xml FILE] [--json] [--svg FILE] [--cluster]\n"
      "\n"
      "Prints the topology Chorus discovers with hwloc: packages, NUMA nodes, the PCI tree,\n"
      "NICs (kind, speed, NUMA locality), accelerators, and where this process is bound.\n"
      "\n"
      "  --xml FILE   inspect an hwloc XML file (lstopo --of xml) instead of this machine;\n"
      "               with --cluster, use it as this rank's topology\n"
      "  --json       print JSON instead of the tree\n"
      "  --svg FILE   also draw the topology as an SVG picture into FILE\n"
      "  --cluster    join the communicator a launcher describes (chorusCommInitFromEnv) and\n"
      "               print the cluster topology on rank 0; implied under Open MPI, Slurm or\n"
      "               torchrun unless --xml is given\n"
      "  -h, --help   this text\n"
      "\n"
      "Environment: CHORUS_TOPO_FILE (hwloc XML used instead of this machine),\n"
      "CHORUS_TOPO_DUMP_FILE (write the XML that was used), CHORUS_CLUSTER_FILE (cluster view).\n",
      out);
}

// Returns 0 when parsed, 1 for --help, 2 for a bad command line (after saying what is wrong).
int parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= argc || argv[i + 1][0] == '\0') {
        std::fprintf(stderr, "chorus-topo: %s needs a file name\n", a.c_str());
        return false;
      }
      dst = argv[++i];
      return true;
    };
    if (a == "-h" || a == "--help") return 1;
    if (a == "--json") {
      o.json = true;
    } else if (a == "--cluster") {
      o.cluster = true;
    } else if (a == "--xml") {
      if (!value(o.xml)) return 2;
    } else if (a == "--svg") {
      if (!value(o.svg)) return 2;
    } else {
      std::fprintf(stderr, "chorus-topo: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  return 0;
}

int runLocalView(const Options& o) {
  const chorus::NodeTopology topo = o.xml.empty() ? chorus::localTopology() : chorus::loadNodeTopology(o.xml, "");
  const std::string text =
      o.json ? chorus::topo_tool::renderNodeJson(topo) + "\n" : chorus::topo_tool::renderNodeText(topo);
  std::fputs(text.c_str(), stdout);
  if (!o.svg.empty() && !chorus::topo_tool::writeFile(o.svg, chorus::topo_tool::renderNodeSvg(topo))) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  switch (parse(argc, argv, opts)) {
    case 1: usage(stdout); return 0;
    case 2: usage(stderr); return 2;
  }
  try {
    if (opts.cluster || (chorus::topo_tool::launcherDetected() && opts.xml.empty()))
      return chorus::topo_tool::runClusterView(opts);
    return runLocalView(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorus-topo: %s\n", e.what());
    return 1;
  }
}
