// See perf_common.h: which launcher started us, and the local launcher behind -np N.
#include "perf_common.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace chorus::perf {

// ---------------------------------------------------------------------------------------------
// Launching
// ---------------------------------------------------------------------------------------------

LaunchEnv detectLaunchEnv() {
  auto has = [](const char* v) { return getenv(v) && *getenv(v); };
  if (has("OMPI_COMM_WORLD_SIZE")) return LaunchEnv::OpenMpi;
  if (has("SLURM_NTASKS") && has("SLURM_PROCID")) return LaunchEnv::Slurm;
  if (has("WORLD_SIZE") && has("RANK")) return LaunchEnv::Torchrun;
  return LaunchEnv::None;
}

const char* launchEnvName(LaunchEnv env) {
  switch (env) {
    case LaunchEnv::OpenMpi: return "Open MPI";
    case LaunchEnv::Slurm: return "Slurm";
    case LaunchEnv::Torchrun: return "torchrun";
    default: return "none";
  }
}

double chorusTimeoutSeconds() {
  const char* e = getenv("CHORUS_TIMEOUT");
  if (!e || !*e) return 300.0;
  char* end = nullptr;
  double v = strtod(e, &end);
  return (end != e && *end == '\0' && v > 0 && std::isfinite(v)) ? v : 300.0;
}


namespace {

volatile sig_atomic_t gInterrupted = 0;
void onParentSignal(int sig) { gInterrupted = sig; }

double nowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool writeAll(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool readAll(int fd, void* data, size_t len) {
  char* p = static_cast<char*>(data);
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Runs in the child: waits for the token, then the body. Never returns.
[[noreturn]] void childMain(const LocalLaunch& launch, int rank, int readFd, Progress* progress,
                            pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);  // the parent died before prctl took effect
  if (!launch.cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(launch.cpus[rank], &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
      fprintf(stderr, "[rank %d] could not pin to CPU %d (%s): running unpinned\n", rank, launch.cpus[rank], strerror(errno));
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  uint32_t len = 0;
  std::vector<char> token;
  if (!readAll(readFd, &len, sizeof len)) _exit(1);  // the launch was called off: say nothing
  token.resize(len);
  if (len > 0 && !readAll(readFd, token.data(), len)) _exit(1);
  close(readFd);
  int rc = launch.body(rank, token, progress);
  fflush(stdout);
  fflush(stderr);
  // exit, not _exit: the rank's exit handlers run as in any process (libfabric's shm provider
  // leaves its region in /dev/shm unless the ofi plugin's handler unlinks it).
  exit(rc & 0xff);
}

}  // namespace

LaunchResult launchLocal(const LocalLaunch& launch) {
  LaunchResult result;
  const int n = launch.nranks;
  if (n < 1 || !launch.body || !launch.makeToken) {
    result.exitCode = 2;
    result.message = "launchLocal: need nranks >= 1, a body and a token maker";
    return result;
  }
  const size_t mapBytes = sizeof(Progress) * static_cast<size_t>(n);
  void* mem = mmap(nullptr, mapBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    result.exitCode = 1;
    result.message = format("mmap of the progress counters failed: %s", strerror(errno));
    return result;
  }
  Progress* progress = static_cast<Progress*>(mem);
  for (int r = 0; r < n; ++r) new (&progress[r]) Progress();

  fflush(stdout);
  fflush(stderr);
  const pid_t self = getpid();
  std::vector<pid_t> pids(n, -1);
  std::vector<int> writeFds(n, -1);
  std::string forkError;
  for (int r = 0; r < n; ++r) {
    int fds[2];
    if (pipe(fds) != 0) {
      forkError = format("pipe for rank %d failed: %s", r, strerror(errno));
      break;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[1]);
      for (int k = 0; k < r; ++k) close(writeFds[k]);
      childMain(launch, r, fds[0], &progress[r], self);
    }
    close(fds[0]);
    if (pid < 0) {
      close(fds[1]);
      forkError = format("fork of rank %d failed: %s", r, strerror(errno));
      break;
    }
    pids[r] = pid;
    writeFds[r] = fds[1];
  }

  struct sigaction sa{}, oldInt{}, oldTerm{}, oldPipe{};
  sa.sa_handler = onParentSignal;
  sigemptyset(&sa.sa_mask);
  gInterrupted = 0;
  sigaction(SIGINT, &sa, &oldInt);
  sigaction(SIGTERM, &sa, &oldTerm);
  struct sigaction ign{};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGPIPE, &ign, &oldPipe);

  std::vector<std::string> notes;  // one line per rank that did not exit with 0
  std::string cause;               // why the launcher gave up, if it did
  if (forkError.empty()) {
    std::vector<char> token;
    std::string err;
    if (!launch.makeToken(&token, &err)) {
      forkError = "could not create the rendezvous token: " + err;
    } else {
      const uint32_t len = static_cast<uint32_t>(token.size());
      for (int r = 0; r < n; ++r) {
        // A rank that already died makes this fail; the wait loop below reports it.
        if (writeAll(writeFds[r], &len, sizeof len) && len > 0)
          writeAll(writeFds[r], token.data(), len);
      }
    }
  }
  for (int& fd : writeFds)
    if (fd >= 0) close(fd), fd = -1;  // ranks still waiting for a token read EOF and exit

  int alive = 0;
  for (pid_t p : pids) alive += p > 0;
  std::vector<bool> killedByUs(n, false);
  double killAt = -1, hardKillAt = -1;
  if (!forkError.empty()) {
    cause = forkError;
    result.exitCode = 1;
    killAt = nowSeconds();
  }
  uint64_t lastTicks = 0;
  double lastProgress = nowSeconds();
  auto signalAlive = [&](int sig) {
    for (int r = 0; r < n; ++r)
      if (pids[r] > 0) {
        kill(pids[r], sig);
        killedByUs[r] = true;
      }
  };
  while (alive > 0) {
    for (int r = 0; r < n; ++r) {
      if (pids[r] <= 0) continue;
      int status = 0;
      pid_t w = waitpid(pids[r], &status, WNOHANG);
      if (w == 0 || (w < 0 && errno == EINTR)) continue;
      const pid_t pid = pids[r];
      pids[r] = -1;
      --alive;
      std::string note;
      bool failed = false, bySignal = false;
      if (w < 0) {
        note = format("rank %d (pid %d) could not be waited for: %s", r, pid, strerror(errno));
        failed = true;
      } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        note = format("rank %d (pid %d) exited with status %d", r, pid, WEXITSTATUS(status));
        failed = true;
        if (result.exitCode == 0) result.exitCode = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        note = format("rank %d (pid %d) %s by signal %d (%s)", r, pid,
                      killedByUs[r] ? "was stopped by the launcher" : "died", sig, strsignal(sig));
        failed = !killedByUs[r];
        bySignal = true;
      }
      if (!note.empty()) notes.push_back(note);
      if (failed) {
        if (result.firstFailedRank < 0) result.firstFailedRank = r;
        if (result.exitCode == 0) result.exitCode = 1;
        const double deadline = nowSeconds() + (bySignal ? 0.0 : launch.graceSeconds);
        if (killAt < 0 || deadline < killAt) killAt = deadline;
        if (cause.empty()) cause = note;
      }
    }
    if (alive == 0) break;
    const double now = nowSeconds();
    uint64_t ticks = 0;
    for (int r = 0; r < n; ++r) ticks += progress[r].ticks.load(std::memory_order_relaxed);
    if (ticks != lastTicks) {
      lastTicks = ticks;
      lastProgress = now;
    }
    if (gInterrupted && hardKillAt < 0) {
      cause = format("interrupted by signal %d", static_cast<int>(gInterrupted));
      if (result.exitCode == 0) result.exitCode = 128 + gInterrupted;
      signalAlive(SIGTERM);
      hardKillAt = now + 2.0;
    } else if (killAt < 0 && now - lastProgress > launch.stallSeconds) {
      std::string still;
      for (int r = 0; r < n; ++r)
        if (pids[r] > 0) still += format("%s%d", still.empty() ? "" : ", ", r);
      cause = format("no rank made progress for %.0f s; stopping ranks %s", launch.stallSeconds,
                     still.c_str());
      if (result.firstFailedRank < 0)
        for (int r = 0; r < n && result.firstFailedRank < 0; ++r)
          if (pids[r] > 0) result.firstFailedRank = r;
      if (result.exitCode == 0) result.exitCode = 1;
      killAt = now;
    }
    if (killAt >= 0 && now >= killAt && hardKillAt < 0) {
      signalAlive(SIGTERM);
      hardKillAt = now + 2.0;
    }
    if (hardKillAt >= 0 && now >= hardKillAt) {
      signalAlive(SIGKILL);
      hardKillAt = now + 3600;  // SIGKILL once; the reaping above finishes the job
    }
    usleep(20000);
  }

  sigaction(SIGINT, &oldInt, nullptr);
  sigaction(SIGTERM, &oldTerm, nullptr);
  sigaction(SIGPIPE, &oldPipe, nullptr);
  munmap(mem, mapBytes);
  if (result.exitCode != 0) {
    result.message = cause;
    for (const auto& note : notes)
      if (note != cause) result.message += "\n  " + note;
  }
  return result;
}

}  // namespace chorus::perf
