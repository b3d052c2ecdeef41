// Cheap checks on another process of this host: is it still alive, and can we read its memory
// with one copy (cross-memory attach, process_vm_readv)?
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace chorus::shm {

// Watches one process for its death. Uses a pidfd (poll() says readable once the process has
// exited, zombie or reaped, and a recycled pid cannot fool it); where pidfd_open is unavailable
// it falls back to /proc/<pid>/stat (missing, or state Z/X, means dead). Watching our own pid
// is a no-op: ranks that are threads of one process cannot outlive each other.
class ProcessWatch {
 public:
  ProcessWatch() = default;
  explicit ProcessWatch(pid_t pid);
  ~ProcessWatch();
  ProcessWatch(ProcessWatch&& other) noexcept;
  ProcessWatch& operator=(ProcessWatch&& other) noexcept;
  ProcessWatch(const ProcessWatch&) = delete;
  ProcessWatch& operator=(const ProcessWatch&) = delete;

  // False once the process is known to be gone. Never throws; about one system call.
  bool alive() const;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = 0;
  int pidfd_ = -1;
  bool self_ = false;
};

// Reads n bytes at remoteAddr in process pid into local (looping over partial reads).
// Returns 0 or the errno of the failure (EPERM/EACCES: not allowed; ESRCH: no such process;
// EFAULT: bad address; ENOSYS: no CMA in this kernel).
int cmaRead(pid_t pid, void* local, uint64_t remoteAddr, size_t n);

}  // namespace chorus::shm
