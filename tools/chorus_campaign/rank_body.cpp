#include "rank_body.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "report_wire.h"
#include "typed_values.h"

namespace chorus::campaign {
namespace {

std::string num(double v) {
  char b[64];
  snprintf(b, sizeof b, "%.6f", v);
  return b;
}

// The trial's environment, set in the rank's own process before it reads any of it.
void setTrialEnvironment(const TrialPlan& plan) {
  setenv("CHORUS_TRANSPORT", plan.transport.transport.c_str(), 1);
  for (const auto& kv : plan.transport.env) setenv(kv.first.c_str(), kv.second.c_str(), 1);
  setenv("CHORUS_TIMEOUT", num(plan.timeoutSec).c_str(), 1);
  if (plan.algo.empty())
    unsetenv("CHORUS_ALGO");
  else
    setenv("CHORUS_ALGO", plan.tuneString().c_str(), 1);
  setenv("CHORUS_SOCKET_IFNAME", "lo", 0);  // every rank is on this host
  setenv("CHORUS_DIAG_SIGNAL", "USR1", 0);  // the parent asks a hung rank for its hang report
}

bool readAll(int fd, void* buf, size_t n, int timeoutMs) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, timeoutMs) != 1) return false;
    ssize_t got = read(fd, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

chorusResult_t issue(Collective c, const CallArgs& a, const void* send, void* recv, chorusComm_t comm) {
  switch (c) {
    case Collective::AllReduce:
      return chorusAllReduce(send, recv, a.count, a.dtype, a.op, comm, nullptr);
    case Collective::Broadcast:
      return chorusBroadcast(send, recv, a.count, a.dtype, a.root, comm, nullptr);
    case Collective::Reduce:
      return chorusReduce(send, recv, a.count, a.dtype, a.op, a.root, comm, nullptr);
    case Collective::AllGather:
      return chorusAllGather(send, recv, a.count, a.dtype, comm, nullptr);
    case Collective::ReduceScatter:
      return chorusReduceScatter(send, recv, a.count, a.dtype, a.op, comm, nullptr);
    case Collective::AlltoAll:
      return chorusAlltoAll(send, recv, a.count, a.dtype, comm, nullptr);
  }
  return chorusInvalidArgument;
}

// What element `i` of rank `rank`'s receive buffer must hold after call `call`, or false where
// the call leaves it undefined (a reduce's non-root ranks).
bool expectedAt(const TrialPlan& plan, const ValueSource& src, int rank, uint64_t call, size_t i, double* want) {
  const size_t n = plan.argsFor(call).count;
  switch (plan.coll) {
    case Collective::AllReduce:
      *want = src.reduced(call, i);
      return true;
    case Collective::Broadcast:
      *want = src.value(plan.argsFor(call).root, call, i);
      return true;
    case Collective::Reduce:
      if (rank != plan.argsFor(call).root) return false;
      *want = src.reduced(call, i);
      return true;
    case Collective::AllGather:
      *want = src.value(static_cast<int>(i / n), call, i % n);
      return true;
    case Collective::ReduceScatter:
      *want = src.reduced(call, static_cast<size_t>(rank) * n + i);
      return true;
    case Collective::AlltoAll:
      *want = src.value(static_cast<int>(i / n), call, static_cast<size_t>(rank) * n + i % n);
      return true;
  }
  return false;
}

// Checks every element bit for bit; reports the first wrong one and how many there are.
void checkResult(const TrialPlan& plan, const ValueSource& src, int rank, uint64_t call, const void* recv, int fd) {
  const chorusDataType_t t = plan.args.dtype;
  const size_t size = typeSize(t);
  const size_t elems = TrialPlan::recvElems(plan.coll, plan.argsFor(call), plan.nranks);
  unsigned char want[8];
  size_t wrong = 0, first = 0;
  double firstWant = 0;
  for (size_t i = 0; i < elems; ++i) {
    double v;
    if (!expectedAt(plan, src, rank, call, i, &v)) return;
    storeValue(t, want, 0, v);
    if (std::memcmp(want, static_cast<const char*>(recv) + i * size, size) != 0) {
      if (wrong++ == 0) {
        first = i;
        firstWant = v;
      }
    }
  }
  if (wrong == 0) return;
  char text[200];
  snprintf(text, sizeof text, "element %zu of %zu is %g where %g was due (%zu wrong)", first, elems, loadValue(t, recv, first),
           firstWant, wrong);
  sendRecord(fd, kWrong, {std::to_string(call), std::to_string(wrong), std::to_string(first)}, text);
}

}  // namespace

void runRank(const TrialPlan& plan, int rank, const RankPipes& pipes) {
  signal(SIGPIPE, SIG_IGN);
  setTrialEnvironment(plan);
  const int fd = pipes.reportFd;
  const int idWaitMs = static_cast<int>((plan.timeoutSec + 30) * 1000);

  chorusUniqueId id;
  if (rank == 0) {
    chorusResult_t r = chorusGetUniqueId(&id);
    if (r != chorusSuccess) {
      sendRecord(fd, kInitFailed, {std::to_string(r)}, std::string("chorusGetUniqueId: ") + chorusGetLastError(nullptr));
      exit(3);
    }
    for (int w : pipes.idWriteFds)
      if (write(w, &id, sizeof id) != static_cast<ssize_t>(sizeof id)) exit(3);
  } else if (!readAll(pipes.idReadFd, &id, sizeof id, idWaitMs)) {
    sendRecord(fd, kInitFailed, {std::to_string(chorusSystemError)}, "the unique id never came from rank 0");
    exit(3);
  }
  chorusComm_t comm = nullptr;
  chorusResult_t r = chorusCommInitRank(&comm, plan.nranks, id, rank);
  if (r != chorusSuccess) {
    sendRecord(fd, kInitFailed, {std::to_string(r)}, chorusGetLastError(nullptr));
    exit(3);
  }
  sendRecord(fd, kReady, {num(monotonicNow())});

  // Buffers for the largest call this rank makes (the culprit's skewed call may be larger),
  // in the widest element type.
  const int p = plan.nranks;
  const size_t sendElems =
      std::max(TrialPlan::sendElems(plan.coll, plan.argsFor(1), p), TrialPlan::sendElems(plan.coll, plan.skewed, p));
  const size_t recvElems =
      std::max(TrialPlan::recvElems(plan.coll, plan.argsFor(1), p), TrialPlan::recvElems(plan.coll, plan.skewed, p));
  std::vector<unsigned char> send(sendElems * 8 + 64), recv(recvElems * 8 + 64);
  const ValueSource src(plan.args.dtype, plan.args.op, reduces(plan.coll), p, plan.seed);
  const bool isVictim = rank == plan.victim;
  const uint64_t k = static_cast<uint64_t>(plan.faultCall);
  double callSeconds = 0;  // the victim's calls so far (their mean times the mid-call delay)

  for (uint64_t call = 0;; ++call) {
    const bool faultHere = isVictim && call == k;
    if (faultHere && plan.fault != FaultKind::Mismatch) {
      if (plan.moment == Moment::AfterCalls) {
        sendRecord(fd, kFault, {num(monotonicNow())});
        raise(plan.fault == FaultKind::Kill ? SIGKILL : SIGSTOP);
      } else {
        sendRecord(fd, kEntering, {std::to_string(call), num(monotonicNow()), num(call ? callSeconds / call : 0)});
      }
    }
    // Where a survivor is when the trial hangs: the calls it enters from the fault on.
    if ((!isVictim || plan.fault == FaultKind::Mismatch) && call >= k && call < k + 3)
      sendRecord(fd, kEntering, {std::to_string(call), num(monotonicNow()), "0"});
    const CallArgs args = plan.argsFor(call);
    const size_t n = TrialPlan::sendElems(plan.coll, args, p);
    for (size_t i = 0; i < n; ++i) storeValue(plan.args.dtype, send.data(), i, src.value(rank, call, i));
    std::memset(recv.data(), 0xff, recv.size());
    const bool skewedCall = plan.fault == FaultKind::Mismatch && faultHere;
    if (skewedCall) sendRecord(fd, kFault, {num(monotonicNow())});
    const double t0 = monotonicNow();
    r = issue(plan.coll, skewedCall ? plan.skewed : args, send.data(), recv.data(), comm);
    const double t1 = monotonicNow();
    if (r != chorusSuccess) {
      sendRecord(fd, kError, {std::to_string(r), std::to_string(call), num(t1)}, chorusGetLastError(comm));
      break;
    }
    callSeconds += t1 - t0;
    if (plan.fault == FaultKind::Mismatch && call == k) sendRecord(fd, kSkewPassed, {std::to_string(call)});
    if (!skewedCall) checkResult(plan, src, rank, call, recv.data(), fd);
  }

  // Stay up as a job would while it logs or shrinks: slower survivors may still ask this rank
  // where the failure started. Then abort, which must return promptly.
  std::this_thread::sleep_for(std::chrono::duration<double>(kLingerSec));
  const double t = monotonicNow();
  chorusCommAbort(comm);
  sendRecord(fd, kAborted, {num(monotonicNow() - t)});
  exit(0);  // exit(), not _exit(): fabric libraries clean their shared memory in exit handlers
}

}  // namespace chorus::campaign
