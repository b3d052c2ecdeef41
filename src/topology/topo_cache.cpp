#include "topology/topo_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/config.h"
#include "base/deadline.h"
#include "base/error.h"
#include "base/hash.h"
#include "base/host_identity.h"
#include "base/log.h"

namespace chorus {
namespace {

// Bump when what is written (or how it is read) changes.
constexpr int kFormat = 1;

std::string readFile(const char* path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Owned by this user, a regular file, not writable by group or others.
bool ours(const struct stat& st) { return S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0; }

bool fresh(const std::string& path, double ttlSec) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !ours(st) || st.st_size == 0) return false;
  double age = difftime(time(nullptr), st.st_mtime);
  return age >= -ttlSec && age < ttlSec;
}

// Holds the host lock (flock on an fd of the lock file) until destroyed.
class HostLock {
 public:
  explicit HostLock(const std::string& path) {
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) {
      why_ = format("cannot open %s: %s", path.c_str(), strerror(errno));
      return;
    }
    struct stat st;
    if (fstat(fd_, &st) != 0 || !ours(st)) {
      why_ = format("%s is not this user's own private file", path.c_str());
      close(fd_);
      fd_ = -1;
    }
  }
  ~HostLock() {
    if (fd_ >= 0) close(fd_);  // closing drops the flock
  }
  HostLock(const HostLock&) = delete;
  HostLock& operator=(const HostLock&) = delete;

  // Waits for the lock until the deadline; false (with why()) when it did not come.
  bool acquire(double waitSec) {
    if (fd_ < 0) return false;
    Deadline deadline = Deadline::after(waitSec);
    Backoff backoff;
    while (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        why_ = format("flock: %s", strerror(errno));
        return false;
      }
      if (deadline.expired()) {
        why_ = format("another process held the host lock for %.0f s", waitSec);
        return false;
      }
      backoff.pause();
    }
    return true;
  }
  const std::string& why() const { return why_; }

 private:
  int fd_ = -1;
  std::string why_;
};

}  // namespace

TopologyCacheSettings TopologyCacheSettings::fromEnv() {
  TopologyCacheSettings s;
  const std::string on = envString("CHORUS_TOPO_CACHE", "1");
  CHORUS_CHECK_ARG(on == "0" || on == "1", "CHORUS_TOPO_CACHE=\"%s\" must be 0 or 1", on.c_str());
  s.enabled = on == "1";
  s.dir = envString("CHORUS_TOPO_CACHE_DIR", "");
  if (s.dir.empty()) s.dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return s;
}

std::string topologyCacheKey() {
  // The host as the transports tell hosts apart (host name, boot id, network namespace).
  std::string what = format("host %016llx|hwloc %x|", static_cast<unsigned long long>(hostHash("")), hwloc_get_api_version());
  const char* components = getenv("HWLOC_COMPONENTS");
  what += components ? components : "";
  what += "|" + readFile("/proc/self/cgroup");
  // Namespaces that change what discovery sees beyond the host's: /sys and /proc (mnt), the
  // host name (uts). Ranks posing as hosts in network namespaces each get their own file.
  for (const char* ns : {"mnt", "uts"}) {
    char link[128] = {0};
    ssize_t n = readlink(format("/proc/self/ns/%s", ns).c_str(), link, sizeof(link) - 1);
    what += format("|%s=%s", ns, n > 0 ? link : "?");
  }
  what += format("|format %d", kFormat);
  return format("%016llx", static_cast<unsigned long long>(fnv1a(what)));
}

std::string sharedTopologyPath(const TopologyCacheSettings& settings) {
  return format("%s/chorus-topo-%u-%s.xml", settings.dir.c_str(), static_cast<unsigned>(geteuid()), topologyCacheKey().c_str());
}

std::string sharedTopologyFile(const TopologyCacheSettings& settings, const std::function<std::string()>& discover) {
  if (!settings.enabled) return "";
  const std::string path = sharedTopologyPath(settings);
  const std::string base = path.substr(0, path.size() - 4);  // without ".xml"
  if (fresh(path, settings.ttlSec)) return path;
  HostLock lock(base + ".lock");
  if (!lock.acquire(settings.lockWaitSec)) {
    CHORUS_INFO(kLogTopo, "host topology cache not used (%s): discovering this host alone", lock.why().c_str());
    return "";
  }
  if (fresh(path, settings.ttlSec)) return path;  // another rank wrote it while this one waited
  const std::string xml = discover();
  std::string tmp = base + ".XXXXXX";
  int fd = xml.empty() ? -1 : mkstemp(tmp.data());  // O_EXCL, 0600: a name nobody else made
  std::string why = xml.empty() ? "hwloc could not export the topology" : fd < 0 ? format("mkstemp: %s", strerror(errno)) : "";
  if (fd >= 0) {
    size_t done = 0;
    while (done < xml.size()) {
      ssize_t n = write(fd, xml.data() + done, xml.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    if (done != xml.size()) why = format("write: %s", strerror(errno));
    else if (fchmod(fd, 0644) != 0) why = format("fchmod: %s", strerror(errno));
    close(fd);
    if (why.empty() && rename(tmp.c_str(), path.c_str()) != 0) why = format("rename: %s", strerror(errno));
    if (!why.empty()) unlink(tmp.c_str());
  }
  if (why.empty()) {
    CHORUS_INFO(kLogTopo, "discovered this host's topology and shared it with its other ranks: %s", path.c_str());
    return path;
  }
  CHORUS_INFO(kLogTopo, "host topology cache not used (cannot write %s: %s): discovering this host alone", path.c_str(), why.c_str());
  return "";
}

}  // namespace chorus
