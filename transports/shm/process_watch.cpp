#include "transports/shm/process_watch.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace chorus::shm {
namespace {

int openPidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  long fd = syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -1 : static_cast<int>(fd);
#else
  (void)pid;
  return -1;
#endif
}

// /proc/<pid>/stat reads "pid (comm) S ..."; comm may hold spaces and parentheses, so the
// state is the first field after the last ')'.
bool aliveByProc(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT && errno != ESRCH;  // other errors: do not claim death
  char buf[512];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;  // the process vanished between open and read
  buf[n] = '\0';
  const char* close_paren = strrchr(buf, ')');
  if (!close_paren || close_paren[1] != ' ') return true;
  char state = close_paren[2];
  return state != 'Z' && state != 'X' && state != 'x';
}

}  // namespace

ProcessWatch::ProcessWatch(pid_t pid) : pid_(pid) {
  self_ = pid == getpid();
  if (!self_ && pid > 0) pidfd_ = openPidfd(pid);
}

ProcessWatch::~ProcessWatch() {
  if (pidfd_ >= 0) close(pidfd_);
}

ProcessWatch::ProcessWatch(ProcessWatch&& other) noexcept : pid_(other.pid_), pidfd_(other.pidfd_), self_(other.self_) {
  other.pidfd_ = -1;
}

ProcessWatch& ProcessWatch::operator=(ProcessWatch&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) close(pidfd_);
    pid_ = other.pid_;
    pidfd_ = other.pidfd_;
    self_ = other.self_;
    other.pidfd_ = -1;
  }
  return *this;
}

bool ProcessWatch::alive() const {
  if (self_ || pid_ <= 0) return true;
  if (pidfd_ >= 0) {
    pollfd p{pidfd_, POLLIN, 0};
    int r = poll(&p, 1, 0);
    return !(r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)));
  }
  return aliveByProc(pid_);
}

int cmaRead(pid_t pid, void* local, uint64_t remoteAddr, size_t n) {
  char* dst = static_cast<char*>(local);
  while (n > 0) {
    iovec l{dst, n};
    iovec r{reinterpret_cast<void*>(static_cast<uintptr_t>(remoteAddr)), n};
    ssize_t got = process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (got == 0) return EFAULT;  // no progress: the remote range ends early
    dst += got;
    remoteAddr += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
  return 0;
}

}  // namespace chorus::shm
