#include "trial_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "rank_body.h"
#include "report_wire.h"

namespace chorus::campaign {
namespace {

// Past the deadline of 2 x CHORUS_TIMEOUT, this much more before the parent calls it a hang.
constexpr double kMarginSec = 5;
// Joining the communicator: CHORUS_TIMEOUT plus this.
constexpr double kJoinSlackSec = 20;
// From every rank joined to the victim reaching its call k (k <= 4 calls of a few MiB).
constexpr double kReachFaultSec = 60;
// After its error record, a survivor lingers kLingerSec, then aborts: this much more to exit.
constexpr double kTeardownSec = 10;

// "state S, 0.42 s CPU, in ep_poll": what a rank the parent gives up on is doing.
std::string procState(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return "gone";
  const size_t close = line.rfind(')');
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string w; rest >> w;) f.push_back(w);
  // After "(comm)": state is field 3, utime 14, stime 15 (1-based in proc(5)).
  double cpu = f.size() > 12 ? (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK)) : 0;
  std::string wchan;
  std::ifstream w("/proc/" + std::to_string(pid) + "/wchan");
  std::getline(w, wchan);
  char text[160];
  snprintf(text, sizeof text, "state %s, %.2f s CPU, in %s", f.empty() ? "?" : f[0].c_str(), cpu,
           wchan.empty() ? "?" : wchan.c_str());
  return text;
}

// libfabric's shm provider names its regions "<pid>:<n>:<n>" in /dev/shm and unlinks them in an
// exit handler, which a killed rank never runs: the parent removes its ranks' leftovers.
void removeShmLeftovers(const std::vector<RankOutcome>& ranks) {
  DIR* dir = opendir("/dev/shm");
  if (!dir) return;
  std::vector<std::string> names;
  while (dirent* e = readdir(dir)) {
    for (const RankOutcome& o : ranks)
      if (std::string(e->d_name).rfind(std::to_string(o.pid) + ":", 0) == 0) names.push_back(e->d_name);
  }
  closedir(dir);
  for (const std::string& n : names) unlink(("/dev/shm/" + n).c_str());
}

double field(const Record& rec, size_t i) {
  return i < rec.fields.size() ? std::atof(rec.fields[i].c_str()) : 0;
}

class Trial {
 public:
  Trial(const TrialPlan& plan, const RunnerOptions& options) : plan_(plan), options_(options), p_(plan.nranks) {
    out_.ranks.resize(p_);
    out_.deadlineSec = 2 * plan.timeoutSec + kMarginSec;
    out_.logPath = options.logPath;
    readers_.resize(p_);
    reportFds_.assign(p_, -1);
  }

  TrialOutcome run() {
    start_ = monotonicNow();
    if (!launch()) return out_;
    loop();
    finish();
    out_.wallSec = monotonicNow() - start_;
    return out_;
  }

 private:
  bool launch() {
    const int logFd = open(options_.logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<int> rep(2 * p_), id(2 * p_, -1);
    for (int r = 0; r < p_; ++r) {
      if (pipe(&rep[2 * r]) != 0 || (r > 0 && pipe(&id[2 * r]) != 0)) {
        out_.setupFailed = true;
        out_.setupText = "pipe() failed";
        return false;
      }
    }
    fflush(stdout);
    fflush(stderr);
    for (int r = 0; r < p_; ++r) {
      pid_t pid = fork();
      if (pid == 0) {
        if (logFd >= 0) {
          dup2(logFd, STDOUT_FILENO);
          dup2(logFd, STDERR_FILENO);
          close(logFd);
        }
        RankPipes pipes;
        for (int q = 0; q < p_; ++q) {
          close(rep[2 * q]);
          if (q == r)
            pipes.reportFd = rep[2 * q + 1];
          else
            close(rep[2 * q + 1]);
          if (q == 0) continue;
          if (q == r) {
            pipes.idReadFd = id[2 * q];
          } else {
            close(id[2 * q]);
          }
          if (r == 0)
            pipes.idWriteFds.push_back(id[2 * q + 1]);
          else
            close(id[2 * q + 1]);
        }
        runRank(plan_, r, pipes);
      }
      out_.ranks[r].pid = pid;
    }
    if (logFd >= 0) close(logFd);
    for (int r = 0; r < p_; ++r) {
      close(rep[2 * r + 1]);
      reportFds_[r] = rep[2 * r];
      if (r > 0) {
        close(id[2 * r]);
        close(id[2 * r + 1]);
      }
    }
    return true;
  }

  void onRecord(int r, const Record& rec, double now) {
    RankOutcome& o = out_.ranks[r];
    switch (rec.tag) {
      case kReady:
        o.ready = true;
        break;
      case kInitFailed:
        o.initFailed = true;
        o.code = static_cast<int>(field(rec, 0));
        o.text = rec.text;
        break;
      case kEntering:
        o.lastEntered = static_cast<long>(field(rec, 0));
        if (r == plan_.victim && plan_.fault != FaultKind::Mismatch && plan_.moment == Moment::MidCall && signalAt_ < 0)
          signalAt_ = now + plan_.delayFraction * field(rec, 2);
        break;
      case kFault:
        out_.faultAt = field(rec, 0);
        break;
      case kWrong:
        if (o.wrongCalls++ == 0) o.firstWrong = "call #" + std::to_string(static_cast<long>(field(rec, 0)) + 1) + ": " + rec.text;
        break;
      case kSkewPassed:
        o.skewPassed = true;
        break;
      case kError:
        o.reported = true;
        o.code = static_cast<int>(field(rec, 0));
        o.errCall = static_cast<long>(field(rec, 1));
        o.errAt = field(rec, 2);
        o.text = rec.text;
        lastReportAt_ = now;
        break;
      case kAborted:
        o.abortSec = field(rec, 0);
        break;
      default:
        break;
    }
  }

  void readRanks(int timeoutMs) {
    std::vector<pollfd> fds;
    std::vector<int> who;
    for (int r = 0; r < p_; ++r)
      if (reportFds_[r] >= 0) {
        fds.push_back({reportFds_[r], POLLIN, 0});
        who.push_back(r);
      }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeoutMs));
      return;
    }
    if (poll(fds.data(), fds.size(), timeoutMs) <= 0) return;
    const double now = monotonicNow();
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int r = who[i];
      char buf[65536];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(reportFds_[r]);
        reportFds_[r] = -1;
        continue;
      }
      readers_[r].feed(buf, static_cast<size_t>(n));
      Record rec;
      while (readers_[r].next(&rec)) onRecord(r, rec, now);
    }
  }

  void reap() {
    for (RankOutcome& o : out_.ranks) {
      if (o.exited) continue;
      int status = 0;
      if (waitpid(o.pid, &status, WNOHANG) != o.pid) continue;
      o.exited = true;
      if (WIFEXITED(status)) o.exitCode = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) o.termSignal = WTERMSIG(status);
    }
  }

  bool setupFailed(const std::string& why) {
    out_.setupFailed = true;
    out_.setupText = why;
    return true;
  }

  // One look at where the trial stands; true when it is over.
  bool step(double now) {
    std::string notReady;
    for (int r = 0; r < p_; ++r) {
      const RankOutcome& o = out_.ranks[r];
      if (o.initFailed) return setupFailed("rank " + std::to_string(r) + " failed to join: " + o.text);
      if (!o.ready) notReady += (notReady.empty() ? "" : ",") + std::to_string(r);
    }
    if (out_.faultAt < 0) {
      if (!notReady.empty()) {
        if (now - start_ > plan_.timeoutSec + kJoinSlackSec) return setupFailed("ranks " + notReady + " never joined");
        return false;
      }
      if (readyAt_ < 0) readyAt_ = now;
      if (signalAt_ >= 0 && now >= signalAt_) {
        kill(out_.ranks[plan_.victim].pid, plan_.fault == FaultKind::Kill ? SIGKILL : SIGSTOP);
        out_.faultAt = monotonicNow();
        return false;
      }
      for (int r = 0; r < p_; ++r) {
        const RankOutcome& o = out_.ranks[r];
        // (Exited and its pipe drained: a victim's fault record comes before its end.)
        if (o.reported) {
          out_.failedUnprovoked = true;
          return setupFailed("rank " + std::to_string(r) + "'s call #" + std::to_string(o.errCall + 1) +
                             " failed before any fault: " + o.text);
        }
        if (o.exited && reportFds_[r] < 0) return setupFailed("rank " + std::to_string(r) + " exited before the fault");
      }
      if (now - readyAt_ > kReachFaultSec) return setupFailed("the victim never reached its call");
      return false;
    }
    bool pending = false, allExited = true;
    for (int r = 0; r < p_; ++r) {
      if (!isSurvivor(plan_, r)) continue;
      const RankOutcome& o = out_.ranks[r];
      pending |= !o.reported && !o.exited;
      allExited &= o.exited;
    }
    if (pending) {
      if (now - out_.faultAt > out_.deadlineSec) {
        out_.hang = true;
        return true;
      }
      return false;
    }
    if (allExited) return true;
    if (now - lastReportAt_ > kLingerSec + kTeardownSec) {
      out_.teardownHang = true;
      return true;
    }
    return false;
  }

  void loop() {
    for (;;) {
      int waitMs = 50;
      const double now = monotonicNow();
      if (signalAt_ >= 0 && out_.faultAt < 0) waitMs = std::clamp(static_cast<int>((signalAt_ - now) * 1000), 0, 50);
      readRanks(waitMs);
      reap();
      if (step(monotonicNow())) return;
    }
  }

  void finish() {
    // A rank the parent gives up on: what it is doing, and its own hang report (into the log).
    bool asked = false;
    for (int r = 0; r < p_; ++r) {
      RankOutcome& o = out_.ranks[r];
      if (o.exited || !isSurvivor(plan_, r) || !(out_.hang || out_.teardownHang)) continue;
      o.hungState = procState(o.pid);
      kill(o.pid, SIGUSR1);
      asked = true;
    }
    if (asked) std::this_thread::sleep_for(std::chrono::duration<double>(std::clamp(plan_.timeoutSec / 2, 1.0, 5.0) + 0.5));
    for (RankOutcome& o : out_.ranks)
      if (!o.exited) kill(o.pid, SIGKILL);
    for (RankOutcome& o : out_.ranks) {
      if (o.exited) continue;
      int status = 0;
      while (waitpid(o.pid, &status, 0) < 0 && errno == EINTR) {
      }
      o.exited = true;
      if (WIFEXITED(status)) o.exitCode = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) o.termSignal = WTERMSIG(status);
    }
    // Whatever they wrote before they went.
    while (std::any_of(reportFds_.begin(), reportFds_.end(), [](int fd) { return fd >= 0; })) readRanks(10);
    removeShmLeftovers(out_.ranks);
  }

  const TrialPlan& plan_;
  const RunnerOptions& options_;
  const int p_;
  TrialOutcome out_;
  std::vector<RecordReader> readers_;
  std::vector<int> reportFds_;
  double start_ = 0, readyAt_ = -1, signalAt_ = -1, lastReportAt_ = 0;
};

}  // namespace

bool isSurvivor(const TrialPlan& plan, int rank) {
  return plan.fault == FaultKind::Mismatch || rank != plan.victim;
}

TrialOutcome runTrial(const TrialPlan& plan, const RunnerOptions& options) {
  return Trial(plan, options).run();
}

}  // namespace chorus::campaign
