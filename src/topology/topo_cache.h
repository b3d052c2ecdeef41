// One hwloc discovery per host, shared by the ranks that start there.
//
// Live discovery costs ~12 ms of CPU per process (hwloc reads /sys and /proc, scans PCI); 64
// ranks starting together on one host paid it 64 times, most of their init on a small machine
// (issue 13: init at 64 local ranks, ~510 ms of ~615 ms in "transports"). Instead the first rank
// discovers and writes the hwloc XML to a host-local file; the others read that file (~1 ms).
// Every rank, the discoverer included, then reads the same file, so all ranks of a host see the
// same topology.
//
// The file is trusted only when it is what this user's job on this boot would discover:
//  * its name carries a key over the boot id, hwloc's version, HWLOC_COMPONENTS, the process's
//    cgroups (a container or a per-task cgroup sees other CPUs), its network, mount and UTS
//    namespaces (other interfaces, /sys, host name) and this format's version;
//  * it is owned by this user, a regular file, not writable by group or others;
//  * it is younger than the TTL (60 s: a job's ranks start within it; the next job rediscovers,
//    so a NIC's renegotiated speed shows up then).
// When no fresh file exists, ranks take a host lock (flock on a lock file next to it) in turn:
// the first one discovers and renames the file into place; the others find it fresh. A rank
// that cannot get the lock within 10 s, or cannot use the folder at all, discovers alone
// (logged at INFO under TOPO): the cache saves time, it never decides a result.
//
// CHORUS_TOPO_CACHE=0 turns it off; CHORUS_TOPO_CACHE_DIR names the folder (default /dev/shm,
// else /tmp).
#pragma once

#include <functional>
#include <string>

namespace chorus {

struct TopologyCacheSettings {
  bool enabled = true;
  std::string dir;        // the folder of the cache and lock files
  double ttlSec = 60;     // a file older than this is rediscovered
  double lockWaitSec = 10;

  static TopologyCacheSettings fromEnv();
};

// The path of this host's fresh shared XML, made by calling `discover()` (load the live machine
// and return its XML; "" when it cannot be exported; throws when discovery failed) under the
// host lock when no fresh file exists. The XML goes to a new private file (mkstemp: nothing
// another user put in the folder is written through) renamed into place. "" when the cache is
// off or cannot be used: the caller then discovers on its own.
std::string sharedTopologyFile(const TopologyCacheSettings& settings, const std::function<std::string()>& discover);

// The file name's key for this process.
std::string topologyCacheKey();
// Where this process's shared XML lives: <dir>/chorus-topo-<uid>-<key>.xml (the lock file is
// the same name with .lock).
std::string sharedTopologyPath(const TopologyCacheSettings& settings);

}  // namespace chorus
