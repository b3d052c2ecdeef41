// The cluster view of chorus-topo: every rank joins the communicator its launcher describes
// (chorusCommInitFromEnv), which gathers every rank's topology card and builds the cluster
// topology; rank 0 prints it (tree, JSON or SVG) and every rank leaves with chorusCommDestroy.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <chorus/chorus.h>

#include "chorus_topo.h"
#include "core/api_internal.h"
#include "core/comm.h"
#include "topology/cluster_topology.h"
#include "topology/node_topology.h"

namespace chorus::topo_tool {

bool launcherDetected() {
  auto has = [](const char* v) {
    const char* e = std::getenv(v);
    return e && *e;
  };
  return has("OMPI_COMM_WORLD_SIZE") || (has("SLURM_NTASKS") && has("SLURM_PROCID")) ||
         (has("WORLD_SIZE") && has("RANK"));
}

int runClusterView(const Options& o) {
  // --xml under a launcher: this rank reports that file as its host's topology.
  if (!o.xml.empty()) setenv("CHORUS_TOPO_FILE", o.xml.c_str(), 1);
  chorusComm_t comm = nullptr;
  if (chorusCommInitFromEnv(&comm) != chorusSuccess) {
    std::fprintf(stderr, "chorus-topo: could not join the launcher's communicator: %s\n", chorusGetLastError(nullptr));
    return 1;
  }
  int rank = -1, status = 0;
  chorusCommUserRank(comm, &rank);
  if (rank == 0) {
    const ClusterTopology& cluster = communicatorOf(comm).cluster();
    const std::string text = o.json ? renderClusterJson(cluster, localTopology()) + "\n" : cluster.describe();
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    if (!o.svg.empty() && !writeFile(o.svg, renderClusterSvg(cluster))) status = 1;
  }
  if (chorusCommDestroy(comm) != chorusSuccess) {
    std::fprintf(stderr, "chorus-topo: rank %d: chorusCommDestroy failed: %s\n", rank, chorusGetLastError(nullptr));
    status = 1;
  }
  return status;
}

}  // namespace chorus::topo_tool
