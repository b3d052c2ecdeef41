// The cluster description file (CHORUS_CLUSTER_FILE): what hwloc cannot see. Hosts are put in
// groups (racks) and rails (switch groups), given uplink speeds, and links between groups,
// rails or hosts are given speeds and latencies. docs/TOPOLOGY.md has the format; in short:
//
//   # comment
//   host <pattern> [name=<label>] [group=<g>] [rail=<r>] [gbps=<uplink>]
//   link <a> <b> [gbps=<x>] [latency_us=<y>]      a, b: a group, a rail, a host label or '*'
//   fabric <shape> [key=value ...]                  for the simulator only (chorus-sim)
//
// <pattern> is matched (shell glob) against a host's name and its bootstrap IP address; the
// first matching host line wins. For a pair of hosts the most specific link line applies:
// host-host, then rail-rail, then group-group, then '*'. Unknown keys and malformed numbers
// are errors that name the file and line.
#pragma once

#include <string>
#include <vector>

namespace chorus {

struct ClusterFileHost {
  std::string pattern;
  std::string name, group, rail;
  double gbps = 0;  // 0: not declared
  int line = 0;
};

struct ClusterFileLink {
  std::string a, b;
  double gbps = 0;       // 0: not declared
  double latencyUs = -1; // < 0: not declared
  int line = 0;
};

// A fabric file's `fabric <shape> key=value ...` line (chorus-sim, docs/SIMULATOR.md): the
// runtime keeps it unread, so one file can serve both.
struct ClusterFileFabric {
  std::string shape;  // empty: no such line
  std::vector<std::pair<std::string, std::string>> options;
  int line = 0;
};

struct ClusterFile {
  std::string path;
  ClusterFileFabric fabric;
  std::vector<ClusterFileHost> hosts;
  std::vector<ClusterFileLink> links;

  // The first host line whose pattern matches hostname or address; null when none does.
  const ClusterFileHost* hostFor(const std::string& hostname, const std::string& address) const;
};

// Parses the text of a cluster file (`path` only names it in errors). Throws
// chorusInvalidArgument naming path:line and the problem.
ClusterFile parseClusterFile(const std::string& text, const std::string& path);
// Reads and parses a file; chorusInvalidArgument when it cannot be read.
ClusterFile loadClusterFile(const std::string& path);

}  // namespace chorus
