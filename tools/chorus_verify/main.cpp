// chorus-verify: the symbolic verifier (collectives/verifier.h) at scale, as a table.
//
//   chorus-verify                      every case of the default list at p = 16384, then the
//                                      alltoall families at p = 256, 512, ... while they pass
//                                      in under --alltoall-seconds
//   chorus-verify -p 1024,4096 -A ring -c allgather -n 1
//
// A case is an algorithm, a collective, p and a count (-n: a number, or "Kp" for K * p: with
// 4-byte elements and chunks aligned to 64 bytes, 16p is the smallest all-reduce that gives
// every rank a non-empty chunk; 1 shows whether a builder skips the empty ones). Hierarchical
// gets hosts of --per-host ranks (default 8); the others the flat layout. Every case runs in a
// child process (fork) so that its peak RSS is its own, under an address-space cap (--mem GiB,
// default 8: a case that needs more fails with "out of memory" instead of starving the
// machine) and a wall-clock cap (--timeout seconds, default 300). Columns: the family,
// collective, p, count, steps of all ranks, the bytes those steps take (sizeof(Step) each, plus
// their dependency lists; for a case out of memory, what was built until then), seconds to
// build every rank's schedule, seconds to verify them, the child's peak RSS, and the verdict
// (or why there is none).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "collectives/collective.h"
#include "collectives/verifier.h"

namespace chorus {
namespace {

struct Case {
  Algo algo;
  Coll coll;
  std::string count;  // a number, or "Kp" for K * p
};

struct Options {
  std::vector<int> ranks;
  std::vector<Case> cases;
  int perHost = 8;
  double memGiB = 8;
  int timeoutS = 300;
  double alltoallSeconds = 60;
  bool alltoallSweep = true;
};

// What the child reports through its pipe.
struct Outcome {
  double buildS = -1, verifyS = -1;
  uint64_t steps = 0, stepBytes = 0;
  char verdict[400] = {};
};

std::shared_ptr<RankLayout> hostsOf(int p, int perHost) {
  auto l = std::make_shared<RankLayout>();
  for (int r = 0; r < p; ++r) {
    if (r % perHost == 0) l->hosts.emplace_back();
    l->hosts.back().push_back(r);
    l->hostOf.push_back(static_cast<int>(l->hosts.size()) - 1);
    l->ringOrder.push_back(r);
    l->weight.push_back(1.0 / p);
  }
  return l;
}

double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// "16p": 16 * p; "5": 5.
size_t countOf(const Case& c, int p) {
  if (c.count.empty() || c.count.back() != 'p') return std::stoul(c.count);
  return (c.count.size() > 1 ? std::stoul(c.count.substr(0, c.count.size() - 1)) : 1) * static_cast<size_t>(p);
}

// In the child: build and verify, filling *o.
void runCase(const Case& c, int p, const Options& opt, Outcome* o) {
  CollArgs proto;
  proto.coll = c.coll;
  proto.nranks = p;
  proto.count = countOf(c, p);
  if (c.algo == Algo::Hierarchical || c.algo == Algo::Weighted) proto.layout = hostsOf(p, opt.perHost);
  std::vector<CollArgs> args(p, proto);
  std::vector<RankSchedule> schedules(p);
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < p; ++r) {
    args[r].rank = r;
    schedules[r] = buildSchedule(c.algo, args[r]);
    o->steps += schedules[r].steps.size();
    o->stepBytes += schedules[r].steps.capacity() * sizeof(Step) + schedules[r].deps.capacity() * sizeof(uint32_t);
  }
  o->buildS = secondsSince(t0);
  t0 = std::chrono::steady_clock::now();
  VerifyResult v = verifyCollective(args, schedules);
  o->verifyS = secondsSince(t0);
  snprintf(o->verdict, sizeof o->verdict, "%s", v.ok ? "verified" : ("FAILED: " + v.error).c_str());
}

// Runs one case in a child; prints its row; returns the verify seconds (-1: no verdict).
double runChild(const Case& c, int p, const Options& opt) {
  int fd[2];
  if (pipe(fd) != 0) return -1;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    rlimit as{static_cast<rlim_t>(opt.memGiB * (1ull << 30)), static_cast<rlim_t>(opt.memGiB * (1ull << 30))};
    setrlimit(RLIMIT_AS, &as);
    alarm(static_cast<unsigned>(opt.timeoutS));
    Outcome o;
    try {
      runCase(c, p, opt, &o);
    } catch (const std::bad_alloc&) {
      snprintf(o.verdict, sizeof o.verdict, "out of memory (cap %.0f GiB)", opt.memGiB);
    } catch (const std::exception& e) {
      snprintf(o.verdict, sizeof o.verdict, "error: %s", e.what());
    }
    ssize_t w = write(fd[1], &o, sizeof o);
    _exit(w == static_cast<ssize_t>(sizeof o) ? 0 : 1);
  }
  close(fd[1]);
  Outcome o;
  ssize_t got = read(fd[0], &o, sizeof o);
  close(fd[0]);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  if (got != static_cast<ssize_t>(sizeof o)) {
    o = Outcome{};
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
      snprintf(o.verdict, sizeof o.verdict, "timeout (%d s)", opt.timeoutS);
    else
      snprintf(o.verdict, sizeof o.verdict, "child died (status %d)", status);
  }
  auto secs = [](double s) {
    char t[32] = "-";
    if (s >= 0) snprintf(t, sizeof t, "%.2f", s);
    return std::string(t);
  };
  printf("%-12s %-14s %6d %6zu %11llu %9.1f %9s %9s %9.0f  %s\n", algoName(c.algo), collName(c.coll), p, countOf(c, p),
         static_cast<unsigned long long>(o.steps), o.stepBytes / 1048576.0, secs(o.buildS).c_str(), secs(o.verifyS).c_str(),
         ru.ru_maxrss / 1024.0, o.verdict);
  fflush(stdout);
  return strncmp(o.verdict, "verified", 8) == 0 ? o.verifyS : -1;
}

std::vector<Case> defaultCases() {
  return {{Algo::Ring, Coll::AllReduce, "16p"},
          {Algo::Ring, Coll::AllReduce, "1"},
          {Algo::Ring, Coll::AllGather, "1"},
          {Algo::Ring, Coll::ReduceScatter, "1"},
          {Algo::Ring, Coll::Broadcast, "1"},
          {Algo::Tree, Coll::AllReduce, "16p"},
          {Algo::Tree, Coll::Broadcast, "1"},
          {Algo::HalvingDoubling, Coll::AllReduce, "16p"},
          {Algo::HalvingDoubling, Coll::AllReduce, "1"},
          {Algo::HalvingDoubling, Coll::ReduceScatter, "1"},
          {Algo::RecursiveDoubling, Coll::AllReduce, "16p"},
          {Algo::RecursiveDoubling, Coll::AllGather, "1"},
          {Algo::Bruck, Coll::AllGather, "1"},
          {Algo::Hierarchical, Coll::AllReduce, "16p"},
          {Algo::Hierarchical, Coll::AllReduce, "1"}};
}

int usage(const char* why) {
  if (why) fprintf(stderr, "chorus-verify: %s\n\n", why);
  fprintf(stderr,
          "usage: chorus-verify [-p P[,P...]] [-A ALGO -c COLL [-n COUNT|Kp]] [--per-host N] [--mem GiB]\n"
          "                     [--timeout S] [--alltoall-seconds S | --no-alltoall]\n"
          "  defaults: every family of the default list at p = 16384, then the alltoall families\n"
          "  (bruck, pairwise, direct) at p = 256, 512, ... while one verifies in under 60 s\n");
  return 2;
}

}  // namespace
}  // namespace chorus

int main(int argc, char** argv) {
  using namespace chorus;
  Options opt;
  Algo algo = Algo::kCount;
  Coll coll = Coll::kCount;
  std::string count = "1";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    auto need = [&]() {
      if (!v) exit(usage(("missing value after " + a).c_str()));
      ++i;
      return std::string(v);
    };
    if (a == "-p") {
      std::string list = need();
      for (size_t s = 0; s < list.size();) {
        size_t e = list.find(',', s);
        opt.ranks.push_back(std::atoi(list.substr(s, e - s).c_str()));
        s = e == std::string::npos ? list.size() : e + 1;
      }
    } else if (a == "-A") {
      if (!parseAlgo(need(), &algo)) return usage("unknown algorithm");
    } else if (a == "-c") {
      if (!parseColl(need(), &coll)) return usage("unknown collective");
    } else if (a == "-n") {
      count = need();
    } else if (a == "--per-host") {
      opt.perHost = std::atoi(need().c_str());
    } else if (a == "--mem") {
      opt.memGiB = std::atof(need().c_str());
    } else if (a == "--timeout") {
      opt.timeoutS = std::atoi(need().c_str());
    } else if (a == "--alltoall-seconds") {
      opt.alltoallSeconds = std::atof(need().c_str());
    } else if (a == "--no-alltoall") {
      opt.alltoallSweep = false;
    } else {
      return usage(("unknown option " + a).c_str());
    }
  }
  if ((algo == Algo::kCount) != (coll == Coll::kCount)) return usage("-A and -c go together");
  if (algo != Algo::kCount) {
    opt.cases = {{algo, coll, count}};
    opt.alltoallSweep = false;
  } else {
    opt.cases = defaultCases();
  }
  if (opt.ranks.empty()) opt.ranks = {16384};
  printf("sizeof(Step) = %zu bytes; caps: %.0f GiB address space, %d s per case\n", sizeof(Step), opt.memGiB, opt.timeoutS);
  printf("%-12s %-14s %6s %6s %11s %9s %9s %9s %9s  %s\n", "family", "collective", "p", "count", "steps", "steps_MiB", "build_s",
         "verify_s", "peak_MiB", "result");
  for (int p : opt.ranks)
    for (const Case& c : opt.cases) runChild(c, p, opt);
  if (opt.alltoallSweep) {
    for (Algo a : {Algo::Bruck, Algo::Pairwise, Algo::Direct}) {
      for (int p = 256; p <= 65536; p *= 2) {
        double s = runChild({a, Coll::AlltoAll, "1"}, p, opt);
        if (s < 0 || s > opt.alltoallSeconds) break;
      }
    }
  }
  return 0;
}
