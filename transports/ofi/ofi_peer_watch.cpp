#include "transports/ofi/ofi_peer_watch.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace chorus::ofi {

namespace {

constexpr unsigned long kPfExiting = 0x4;  // PF_EXITING in the flags field (include/linux/sched.h)

// What /proc/<pid>/stat says about a process's end: "exited" (zombie or dead), "exiting",
// "killed" (a SIGKILL pending: it will not run user code again), or nullptr (alive). The
// fields after the command name, which may hold spaces and parentheses: state (3), ...,
// flags (9), ..., signal (31, the pending signals of its main thread).
const char* endOf(const char* stat) {
  const char* paren = strrchr(stat, ')');
  if (paren == nullptr || paren[1] != ' ') return nullptr;
  const char state = paren[2];
  if (state == 'Z' || state == 'X' || state == 'x') return "exited";
  const char* p = paren + 3;
  unsigned long field[29] = {};
  for (int i = 4; i <= 31 && *p != '\0'; ++i) {
    char* end = nullptr;
    const unsigned long v = strtoul(p, &end, 10);
    if (end == p) return nullptr;  // not the layout we know: claim nothing
    field[i - 3] = v;
    p = end;
  }
  if (field[9 - 3] & kPfExiting) return "exiting";
  if (field[31 - 3] & (1ul << (SIGKILL - 1))) return "killed";
  return nullptr;
}

}  // namespace

PeerWatch::PeerWatch(pid_t pid) : watch_(pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  statFd_ = ::open(path, O_RDONLY | O_CLOEXEC);
  // Visible: a pidfd or the stat file could be opened, and the process is alive now. A pid of
  // another namespace (or a stale one) is never reported gone.
  visible_ = pid > 0 && statFd_ >= 0 && watch_.alive();
}

PeerWatch::~PeerWatch() {
  if (statFd_ >= 0) close(statFd_);
}

bool PeerWatch::gone(bool thorough) {
  if (gone_ || !visible_) return gone_;
  const int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (!thorough && now - lastCheckNs_ < kCheckIntervalNs) return false;
  lastCheckNs_ = now;
  if (!watch_.alive()) {
    gone_ = true;
    why_ = "exited";
    return true;
  }
  char buf[1024];
  const ssize_t n = pread(statFd_, buf, sizeof(buf) - 1, 0);
  if (n < 0 && errno == ESRCH) {  // reaped since: the file is bound to the process, not the pid
    gone_ = true;
    why_ = "exited";
    return true;
  }
  if (n <= 0) return false;
  buf[n] = '\0';
  if (const char* end = endOf(buf)) {
    gone_ = true;
    why_ = end;
  }
  return gone_;
}

uint64_t localHostTag() {
  static const uint64_t tag = [] {
    char boot[64] = {};
    const int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return uint64_t{0};
    const ssize_t n = read(fd, boot, sizeof(boot) - 1);
    close(fd);
    struct stat ns {};
    if (n < 16 || stat("/proc/self/ns/pid", &ns) != 0) return uint64_t{0};
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the boot id and the namespace's identity
    auto mix = [&h](const void* p, size_t len) {
      for (size_t i = 0; i < len; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 1099511628211ull;
    };
    mix(boot, static_cast<size_t>(n));
    mix(&ns.st_dev, sizeof(ns.st_dev));
    mix(&ns.st_ino, sizeof(ns.st_ino));
    return h == 0 ? uint64_t{1} : h;
  }();
  return tag;
}

}  // namespace chorus::ofi
