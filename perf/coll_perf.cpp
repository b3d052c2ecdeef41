// The perf tools' driver: one nccl-tests style sweep for every collective.
//
//   all_reduce_perf  all_gather_perf  broadcast_perf  reduce_perf  reduce_scatter_perf
//   alltoall_perf    gather_perf      scatter_perf    sendrecv_perf
//
// Written only against the public C API (include/chorus/chorus.h). Three ways to run any tool:
//   all_gather_perf -np 4 -b 8 -e 64M -f 4      standalone: forks 4 local ranks
//   mpirun -np 4 all_gather_perf -b 8 -e 64M    one rank per process (also srun / torchrun)
//   all_gather_perf                             a single rank
//
// Flags (nccl-tests' own, plus Chorus's; -h prints them all):
//   -b/-e/-f/-i  sizes     -n/-w/-m  iterations     -c  checked calls     -a  time over ranks
//   -d type|all  -o op|all (reductions)  -r root|-1 (broadcast, reduce, gather, scatter)
//   -z 1  NULL stream      -N  cycles   -np n  local ranks   -J file  JSON results
//   -A algo  force the algorithm: CHORUS_ALGO=<collective>:<algo> is set before the
//            communicator is created, so an algorithm that cannot serve the collective is the
//            library's error at init (e.g. all_gather_perf -A bruck, reduce_perf -A tree)
// Examples:
//   all_reduce_perf -np 4 -b 8 -e 128M -f 2 -d all -o all
//   broadcast_perf -np 8 -b 1K -e 1G -f 4 -r -1 -A tree -J bcast.json
//   sendrecv_perf -np 2 -b 8 -e 64M -f 2 -c 0 -n 100
//
// Sizes follow nccl-tests: a size S is the whole buffer. all-reduce, broadcast, reduce and
// send/recv move S bytes; the others pass count = S / type size / n and move n blocks of it. The
// "size" column is the larger buffer, "count" the call's count argument. algbw = size / time
// (GB/s, 1 GB = 1e9 B); busbw = algbw * 2(n-1)/n for all-reduce, (n-1)/n for all-gather,
// reduce-scatter, all-to-all, gather and scatter, 1 for broadcast, reduce and send/recv.
// sendrecv_perf: rank r sends to (r + 1) % n and receives from (r - 1 + n) % n in one group.
//
// Per size, type, op and root, each mode (out-of-place, then in-place; all-to-all and send/recv
// have no in-place form and print N/A) runs: -w warm-up calls, a barrier (an all-reduce of one
// int32), -n timed iterations of -m calls each, then -c checked calls on a fresh deterministic
// pattern. Out of place, ranks that do not use a buffer (the send buffer off the root of
// broadcast and scatter, the receive buffer off the root of reduce and gather) pass NULL, as the
// API allows. The time of one call is the loop's time divided by n * m on each rank, combined
// over ranks by -a (one float64 all-reduce). #wrong counts every output element that differs
// from the expected value (reductions: exact, see perf_common.h; copies: the exact source block,
// bit for bit) plus, out of place, changed input elements, summed over ranks. Only rank 0
// prints; every row is printed and flushed as soon as it is measured.
#include "coll_perf.h"

#include <chorus/device_plugin.h>

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef CHORUS_PERF_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

#include "chorus/chorus.h"
#include "perf_common.h"

namespace chorus::perf {
namespace {

// How this rank joins its communicator.
struct InitSpec {
  enum Kind { ByRank, FromEnv } kind = ByRank;
  int rank = 0;
  int nranks = 1;
  chorusUniqueId id{};
};

std::string commandLine(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i) s += ' ';
    if (a.empty() || a.find_first_of(" \t\"'$") != std::string::npos) s += "'" + a + "'";
    else s += a;
  }
  return s;
}

double nowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One rank's sweep: owns the communicator, the stream and the buffers.
class Sweep {
 public:
  Sweep(PerfColl coll, const Options& opts, std::string cmd, Progress* progress, bool underMpi)
      : coll_(coll), info_(collInfo(coll)), opts_(opts), cmd_(std::move(cmd)), progress_(progress), underMpi_(underMpi) {}
  ~Sweep() {
    if (dev_) {
      dev_->memFree(sendbuf_);
      dev_->memFree(recvbuf_);
      if (devStream_) dev_->streamDestroy(devStream_);
      if (devEvent_) dev_->eventDestroy(devEvent_);
    } else {
      free(sendbuf_);
      free(recvbuf_);
    }
    free(hostSend_);
    free(hostRecv_);
  }

  // Returns the process exit code: 0, or 1 on wrong results / a failed call.
  int run(const InitSpec& init) {
    if (!initComm(init)) return fail();
    if (!initDevice()) return fail();
    if (!opts_.blocking && !devStream_ && !ok(chorusStreamCreate(&stream_), "chorusStreamCreate")) return fail();
    if (!opts_.blocking && devStream_ && !ok(chorusStreamCreateFromDevice(&stream_, devStream_), "chorusStreamCreateFromDevice"))
      return fail();
    if (!gatherPlaces()) return fail();
    if (rank_ == 0) printHeader();
    if (!allocate()) return fail();

    const std::vector<size_t> sizes = sizeLadder(opts_);
    // Ops only for reductions, roots only for rooted collectives (-r -1: every rank in turn).
    const std::vector<chorusRedOp_t> ops = info_.reduction ? opts_.ops : std::vector<chorusRedOp_t>{chorusSum};
    std::vector<int> roots;
    if (!info_.rooted) roots = {-1};  // the root column says -1
    else if (opts_.root >= 0) roots = {opts_.root};
    else for (int r = 0; r < nranks_; ++r) roots.push_back(r);
    for (int cycle = 0; opts_.runCycles == 0 || cycle < opts_.runCycles; ++cycle) {
      for (chorusDataType_t type : opts_.types)
        for (chorusRedOp_t op : ops)
          for (int root : roots)
            for (size_t bytes : sizes) {
              Row row;
              row.type = type;
              row.op = op;
              row.hasOp = info_.reduction;
              row.root = root;
              const CollSizes cs = collSizes(coll_, bytes / typeSize(type), nranks_);
              row.count = cs.count;
              row.bytes = cs.bytes(typeSize(type));
              if (row.count == 0) continue;  // less than one element per rank of this type
              if (!measure(row, cs, false, &row.outOfPlace) || !measure(row, cs, true, &row.inPlace)) return fail();
              rows_.push_back(row);
              if (rank_ == 0) {
                printf("%s\n", formatRow(row).c_str());
                fflush(stdout);
              }
            }
    }
    if (rank_ == 0) {
      printf("%s", formatFooter(rows_).c_str());
      fflush(stdout);
    }
    int rc = totalWrong(rows_) > 0 ? 1 : 0;
    if (rank_ == 0 && !writeJson("")) rc = 1;
    if (stream_ && !ok(chorusStreamDestroy(stream_), "chorusStreamDestroy")) rc = 1;
    stream_ = nullptr;
    if (!ok(chorusCommDestroy(comm_), "chorusCommDestroy")) rc = 1;
    comm_ = nullptr;
    return rc;
  }

 private:
  // --- errors -------------------------------------------------------------------------------
  bool ok(chorusResult_t r, const std::string& what) {
    if (r == chorusSuccess) return true;
    const char* detail = chorusGetLastError(comm_);
    if ((!detail || !*detail) && comm_) detail = chorusGetLastError(nullptr);
    error_ = what + " failed: " + chorusGetErrorString(r) + " (" + std::to_string(r) + ")";
    if (detail && *detail) error_ += ": " + std::string(detail);
    return false;
  }

  int fail() {
    if (rank_ >= 0) fprintf(stderr, "[rank %d] %s: %s\n", rank_, info_.tool, error_.c_str());
    else fprintf(stderr, "[rank ?] %s: %s\n", info_.tool, error_.c_str());
    fflush(stderr);
    if (rank_ == 0) {
      printf("# FAILED: %s\n", error_.c_str());
      fflush(stdout);
      writeJson(error_);
    }
#ifdef CHORUS_PERF_HAVE_MPI
    if (underMpi_) MPI_Abort(MPI_COMM_WORLD, 1);  // the other ranks would only wait to time out
#endif
    if (comm_) chorusCommAbort(comm_);  // first: pending stream work then ends at once
    comm_ = nullptr;
    if (stream_) chorusStreamDestroy(stream_);
    stream_ = nullptr;
    return 1;
  }

  // --- setup --------------------------------------------------------------------------------
  bool initComm(const InitSpec& init) {
    rank_ = init.kind == InitSpec::FromEnv ? -1 : init.rank;  // -1: not known before init
    if (init.kind == InitSpec::FromEnv) {
      if (!ok(chorusCommInitFromEnv(&comm_), "chorusCommInitFromEnv")) return false;
    } else if (!ok(chorusCommInitRank(&comm_, init.nranks, init.id, init.rank),
                   "chorusCommInitRank(nranks=" + std::to_string(init.nranks) +
                       ", rank=" + std::to_string(init.rank) + ")")) {
      return false;
    }
    if (!ok(chorusCommCount(comm_, &nranks_), "chorusCommCount") ||
        !ok(chorusCommUserRank(comm_, &rank_), "chorusCommUserRank"))
      return false;
    if (init.kind == InitSpec::ByRank && (rank_ != init.rank || nranks_ != init.nranks)) {
      error_ = "communicator reports rank " + std::to_string(rank_) + " of " +
               std::to_string(nranks_) + ", expected " + std::to_string(init.rank) + " of " +
               std::to_string(init.nranks);
      return false;
    }
    return true;
  }

  // Every rank's pid, host and CPUs, gathered with one uint8 sum all-reduce (zeros elsewhere).
  bool gatherPlaces() {
    constexpr size_t kHost = 64, kCpus = 64, kSlot = 8 + kHost + kCpus;
    std::vector<uint8_t> in(kSlot * nranks_, 0), out(kSlot * nranks_, 0);
    uint8_t* mine = &in[kSlot * rank_];
    const uint64_t pid = static_cast<uint64_t>(getpid());
    for (int b = 0; b < 8; ++b) mine[b] = static_cast<uint8_t>(pid >> (8 * b));
    char host[kHost] = {};
    gethostname(host, kHost - 1);
    memcpy(mine + 8, host, kHost - 1);
    const std::string cpus = cpuListText(allowedCpus());
    memcpy(mine + 8 + kHost, cpus.data(), std::min(cpus.size(), kCpus - 1));
    if (!allReduce(in.data(), out.data(), in.size(), chorusUint8, chorusSum, "all-reduce of rank places")) return false;
    places_.resize(nranks_);
    for (int r = 0; r < nranks_; ++r) {
      const uint8_t* slot = &out[kSlot * r];
      uint64_t p = 0;
      for (int b = 0; b < 8; ++b) p |= static_cast<uint64_t>(slot[b]) << (8 * b);
      places_[r].rank = r;
      places_[r].pid = static_cast<long>(p);
      places_[r].host.assign(reinterpret_cast<const char*>(slot + 8), strnlen(reinterpret_cast<const char*>(slot + 8), kHost));
      const char* cpuText = reinterpret_cast<const char*>(slot + 8 + kHost);
      places_[r].cpus.assign(cpuText, strnlen(cpuText, kCpus));
    }
    return true;
  }

  void printHeader() {
    int version = 0;
    chorusGetVersion(&version);
    printf("# Chorus %s, libchorus %d.%d.%d\n", info_.tool, version / 10000, version / 100 % 100, version % 100);
    if (const char* algo = getenv("CHORUS_ALGO"); algo && *algo) printf("# CHORUS_ALGO=%s\n", algo);
    printf("%s", formatHeader(cmd_, opts_, nranks_, places_).c_str());
    fflush(stdout);
  }

  // -G emu|cuda: the plugin the library loaded, and a device stream of its own that uploads and
  // downloads use and that stream calls (-z 0) are ordered on.
  bool initDevice() {
    if (opts_.buffers == "host") return true;
    if (!ok(chorusGetDevicePlugin(&dev_), "chorusGetDevicePlugin")) return false;
    if (!dev_) {
      error_ = "-G " + opts_.buffers + ": no device plugin is loaded";
      return false;
    }
    if (dev_->streamCreate(0, &devStream_) != chorusDevSuccess || dev_->eventCreate(&devEvent_) != chorusDevSuccess) {
      error_ = "-G " + opts_.buffers + ": cannot create a device stream and event";
      return false;
    }
    return true;
  }

  bool allocate() {
    size_t largest = 64;
    for (size_t s : sizeLadder(opts_)) largest = std::max(largest, s);
    bufBytes_ = (largest + 4095) / 4096 * 4096;
    if (dev_) {
      hostSend_ = aligned_alloc(4096, bufBytes_);
      hostRecv_ = aligned_alloc(4096, bufBytes_);
      if (dev_->memAlloc(0, bufBytes_, &sendbuf_) != chorusDevSuccess || dev_->memAlloc(0, bufBytes_, &recvbuf_) != chorusDevSuccess) {
        error_ = "cannot allocate two device buffers of " + std::to_string(bufBytes_) + " bytes";
        return false;
      }
    } else {
      sendbuf_ = aligned_alloc(4096, bufBytes_);
      recvbuf_ = aligned_alloc(4096, bufBytes_);
    }
    if (!sendbuf_ || !recvbuf_ || (dev_ && (!hostSend_ || !hostRecv_))) {
      error_ = "cannot allocate two buffers of " + std::to_string(bufBytes_) + " bytes";
      return false;
    }
    // Touch every page before anything is timed.
    memset(host(sendbuf_), 0, bufBytes_);
    memset(host(recvbuf_), 0, bufBytes_);
    return upload(sendbuf_, bufBytes_) && upload(recvbuf_, bufBytes_);
  }

  // Device buffers are written and read through host mirrors (the same offsets); for host
  // buffers these are the buffers themselves and the copies do nothing.
  void* host(const void* p) const {
    if (!dev_ || !p) return const_cast<void*>(p);
    const char* c = static_cast<const char*>(p);
    const char* s = static_cast<const char*>(sendbuf_);
    const char* r = static_cast<const char*>(recvbuf_);
    if (c >= s && c < s + bufBytes_) return static_cast<char*>(hostSend_) + (c - s);
    return static_cast<char*>(hostRecv_) + (c - r);
  }
  bool deviceCopy(void* dst, const void* src, size_t n) {
    if (dev_->copyAsync(dst, src, n, devStream_) != chorusDevSuccess || dev_->eventRecord(devEvent_, devStream_) != chorusDevSuccess ||
        dev_->eventSynchronize(devEvent_) != chorusDevSuccess) {
      error_ = "device copy of " + std::to_string(n) + " bytes failed";
      return false;
    }
    return true;
  }
  bool upload(const void* p, size_t n) { return !dev_ || !p || deviceCopy(const_cast<void*>(p), host(p), n); }
  bool download(const void* p, size_t n) { return !dev_ || !p || deviceCopy(host(p), p, n); }

  // --- calls --------------------------------------------------------------------------------
  // What one measured call is: its buffers for this rank and its arguments.
  struct Call {
    const void* send = nullptr;
    void* recv = nullptr;
    size_t count = 0;
    chorusDataType_t type = chorusFloat32;
    chorusRedOp_t op = chorusSum;
    int root = 0;
    const char* mode = "";
  };

  std::string describe(const Call& c) {
    static const char* kApi[] = {"chorusAllReduce", "chorusAllGather", "chorusBroadcast", "chorusReduce",
                                 "chorusReduceScatter", "chorusAlltoAll", "chorusGather", "chorusScatter",
                                 "chorusSend/chorusRecv"};
    std::string d = std::string(kApi[static_cast<size_t>(coll_)]) + "(" + c.mode + ", count=" + std::to_string(c.count) +
                    ", " + typeName(c.type);
    if (info_.reduction) d += std::string(", ") + opName(c.op);
    if (info_.rooted) d += ", root=" + std::to_string(c.root);
    return d + (opts_.blocking ? ", NULL stream)" : ", stream)");
  }

  // Issues the measured collective once; with a stream it is only enqueued.
  bool issue(const Call& c) {
    chorusResult_t r = chorusSuccess;
    switch (coll_) {
      case PerfColl::AllReduce: r = chorusAllReduce(c.send, c.recv, c.count, c.type, c.op, comm_, stream_); break;
      case PerfColl::AllGather: r = chorusAllGather(c.send, c.recv, c.count, c.type, comm_, stream_); break;
      case PerfColl::Broadcast: r = chorusBroadcast(c.send, c.recv, c.count, c.type, c.root, comm_, stream_); break;
      case PerfColl::Reduce: r = chorusReduce(c.send, c.recv, c.count, c.type, c.op, c.root, comm_, stream_); break;
      case PerfColl::ReduceScatter: r = chorusReduceScatter(c.send, c.recv, c.count, c.type, c.op, comm_, stream_); break;
      case PerfColl::AlltoAll: r = chorusAlltoAll(c.send, c.recv, c.count, c.type, comm_, stream_); break;
      case PerfColl::Gather: r = chorusGather(c.send, c.recv, c.count, c.type, c.root, comm_, stream_); break;
      case PerfColl::Scatter: r = chorusScatter(c.send, c.recv, c.count, c.type, c.root, comm_, stream_); break;
      case PerfColl::SendRecv: {
        // A ring: send to the next rank, receive from the previous one, in one group so that
        // neither blocks the other. GroupEnd runs even when a call inside failed: it ends the
        // group (and reports the error again).
        const int next = (rank_ + 1) % nranks_, prev = (rank_ - 1 + nranks_) % nranks_;
        r = chorusGroupStart();
        if (r != chorusSuccess) break;
        r = chorusSend(c.send, c.count, c.type, next, comm_, stream_);
        if (r == chorusSuccess) r = chorusRecv(c.recv, c.count, c.type, prev, comm_, stream_);
        const chorusResult_t end = chorusGroupEnd();
        if (r == chorusSuccess) r = end;
        break;
      }
      default: error_ = "unknown collective"; return false;
    }
    if (r != chorusSuccess) return ok(r, describe(c));
    return true;
  }

  // Waits for everything enqueued (no-op without a stream).
  bool sync(const char* what) {
    if (!stream_) return true;
    if (!ok(chorusStreamSynchronize(stream_), std::string("chorusStreamSynchronize after ") + what))
      return false;
    progress_->tick();
    return true;
  }

  // One measured collective that has finished when this returns.
  bool call(const Call& c) {
    if (!issue(c) || !sync(c.mode)) return false;
    progress_->tick();
    return true;
  }

  // The driver's own all-reduces (places, barrier, time, #wrong): finished when this returns.
  bool allReduce(const void* send, void* recv, size_t count, chorusDataType_t type, chorusRedOp_t op, const char* what) {
    chorusResult_t r = chorusAllReduce(send, recv, count, type, op, comm_, stream_);
    if (r != chorusSuccess) return ok(r, std::string("chorusAllReduce(") + what + ")");
    if (!sync(what)) return false;
    progress_->tick();
    return true;
  }

  bool barrier() {
    int32_t in = 1, out = 0;
    if (!allReduce(&in, &out, 1, chorusInt32, chorusSum, "barrier")) return false;
    if (out != nranks_) {
      error_ = "barrier all-reduce returned " + std::to_string(out) + ", expected " +
               std::to_string(nranks_);
      return false;
    }
    return true;
  }

  // Seconds per call combined over ranks as -a asks.
  bool combineTime(double seconds, double* combined) {
    static const chorusRedOp_t kOps[] = {chorusSum, chorusSum, chorusMin, chorusMax};
    double in = (opts_.average == 0 && rank_ != 0) ? 0.0 : seconds, out = 0;
    if (!allReduce(&in, &out, 1, chorusFloat64, kOps[opts_.average], "time reduction")) return false;
    *combined = opts_.average == 1 ? out / nranks_ : out;
    return true;
  }

  // --- one measurement ----------------------------------------------------------------------
  bool measure(const Row& row, const CollSizes& cs, bool inPlace, ModeResult* res) {
    if (inPlace && !info_.inPlace) {
      res->skipped = true;  // no in-place form (all-to-all, send/recv)
      return true;
    }
    const size_t ts = typeSize(row.type);
    const int root = row.root < 0 ? 0 : row.root;
    Call c;
    c.count = row.count;
    c.type = row.type;
    c.op = row.op;
    c.root = root;
    c.mode = inPlace ? "in-place" : "out-of-place";
    char* big = static_cast<char*>(recvbuf_);  // in place: one buffer of max(send, recv)
    if (inPlace) {
      c.send = big + static_cast<size_t>(rank_) * cs.sendInPlace * ts;
      c.recv = big + static_cast<size_t>(rank_) * cs.recvInPlace * ts;
    } else {
      c.send = readsSend(coll_, rank_, root) ? sendbuf_ : nullptr;
      c.recv = writesRecv(coll_, rank_, root) ? recvbuf_ : nullptr;
    }
    CollCase k{coll_, row.type, row.op, rank_, nranks_, root, row.count, 0};

    // Timed data: the pattern out of place; zeros in place, so that repeated in-place
    // reductions cannot overflow.
    if (inPlace) memset(host(big), 0, row.bytes);
    else if (c.send) fillCollInput(k, host(c.send));
    if (!upload(inPlace ? big : c.send, inPlace ? row.bytes : cs.sendCount * ts)) return false;
    for (int w = 0; w < opts_.warmup; ++w)
      if (!issue(c)) return false;
    if (!sync(c.mode) || !barrier()) return false;

    const double t0 = nowSeconds();
    for (int it = 0; it < opts_.iters; ++it) {
      for (int m = 0; m < opts_.aggIters; ++m)
        if (!issue(c)) return false;
      progress_->tick();
    }
    if (!sync(c.mode)) return false;
    const double perCall = (nowSeconds() - t0) / (static_cast<double>(opts_.iters) * opts_.aggIters);

    double seconds = 0;
    if (!combineTime(perCall, &seconds)) return false;
    res->timeUs = seconds * 1e6;
    res->algBw = algBandwidth(row.bytes, seconds);
    res->busBw = res->algBw * busFactor(coll_, nranks_);

    if (opts_.check <= 0) return true;  // #wrong stays -1: N/A
    long long wrong = 0;
    for (int check = 0; check < opts_.check; ++check) {
      k.seed = static_cast<uint32_t>(check + 1);
      // Poison what the call must write, so that a call that writes nothing cannot pass.
      if (inPlace) memset(host(big), kPoisonByte, row.bytes);
      else if (c.recv) memset(host(c.recv), kPoisonByte, cs.recvCount * ts);
      if (c.send) fillCollInput(k, host(c.send));
      if (inPlace ? !upload(big, row.bytes) : !upload(c.recv, cs.recvCount * ts) || !upload(c.send, cs.sendCount * ts)) return false;
      if (!call(c)) return false;
      if (!download(inPlace ? big : c.recv, inPlace ? row.bytes : cs.recvCount * ts)) return false;
      if (!inPlace && !download(c.send, cs.sendCount * ts)) return false;
      if (c.recv) wrong += static_cast<long long>(countWrongCollOutput(k, host(c.recv)));
      if (!inPlace && c.send) wrong += static_cast<long long>(countChangedCollInput(k, host(c.send)));
    }
    int64_t in = wrong, total = 0;
    if (!allReduce(&in, &total, 1, chorusInt64, chorusSum, "#wrong reduction")) return false;
    res->wrong = total;
    return true;
  }

  bool writeJson(const std::string& error) {
    if (opts_.jsonPath.empty()) return true;
    FILE* f = fopen(opts_.jsonPath.c_str(), "w");
    if (!f) {
      fprintf(stderr, "[rank 0] %s: cannot write %s: %s\n", info_.tool, opts_.jsonPath.c_str(), strerror(errno));
      return false;
    }
    const std::string j = formatJson(cmd_, opts_, nranks_, places_, rows_, error, coll_);
    const bool good = fwrite(j.data(), 1, j.size(), f) == j.size();
    return (fclose(f) == 0) && good;
  }

  const PerfColl coll_;
  const CollInfo& info_;
  const Options& opts_;
  const std::string cmd_;
  Progress* progress_;
  const bool underMpi_;
  chorusComm_t comm_ = nullptr;
  chorusStream_t stream_ = nullptr;
  int rank_ = 0;
  int nranks_ = 1;
  void* sendbuf_ = nullptr;
  void* recvbuf_ = nullptr;
  const chorusDevice_v1_t* dev_ = nullptr;  // -G emu|cuda
  void* devStream_ = nullptr;
  void* devEvent_ = nullptr;
  void* hostSend_ = nullptr;  // host mirrors of device buffers
  void* hostRecv_ = nullptr;
  size_t bufBytes_ = 0;
  std::vector<RankPlace> places_;
  std::vector<Row> rows_;
  std::string error_;
};

int runStandalone(PerfColl coll, const Options& opts, const std::string& cmd) {
  // Every rank is on this host: keep the bootstrap and any TCP traffic on loopback unless the
  // operator chose an interface.
  setenv("CHORUS_SOCKET_IFNAME", "lo", 0);
  LocalLaunch launch;
  launch.nranks = opts.np;
  // Pinned, as mpirun pins by default: left to the scheduler, two ranks forked together may
  // share a CPU for the first milliseconds, and a short run then measures that (0.45 vs 4.7 us
  // for an 8-byte call at np 2, 1 launch in 5 on this VM).
  std::string bindNote;
  launch.cpus = rankCpus(opts.bind, opts.np, allowedCpus(), &bindNote);
  printf("# Binding: %s\n", bindNote.c_str());
  launch.stallSeconds = 2 * chorusTimeoutSeconds() + 30;
  launch.makeToken = [](std::vector<char>* token, std::string* error) {
    chorusUniqueId id;
    chorusResult_t r = chorusGetUniqueId(&id);
    if (r != chorusSuccess) {
      *error = std::string("chorusGetUniqueId: ") + chorusGetErrorString(r) + ": " +
               chorusGetLastError(nullptr);
      return false;
    }
    token->assign(id.internal, id.internal + sizeof id.internal);
    return true;
  };
  launch.body = [&](int rank, const std::vector<char>& token, Progress* progress) {
    InitSpec init;
    init.rank = rank;
    init.nranks = opts.np;
    memcpy(init.id.internal, token.data(), std::min(token.size(), sizeof init.id.internal));
    return Sweep(coll, opts, cmd, progress, false).run(init);
  };
  LaunchResult res = launchLocal(launch);
  if (res.exitCode != 0 && !res.message.empty()) fprintf(stderr, "%s: %s\n", collInfo(coll).tool, res.message.c_str());
  return res.exitCode;
}

#ifdef CHORUS_PERF_HAVE_MPI
int runUnderMpi(PerfColl coll, int argc, char** argv, const Options& opts, const std::string& cmd) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  InitSpec init;
  init.rank = rank;
  init.nranks = size;
  int good = 1;
  if (rank == 0) {
    chorusResult_t r = chorusGetUniqueId(&init.id);
    if (r != chorusSuccess) {
      fprintf(stderr, "[rank 0] %s: chorusGetUniqueId failed: %s: %s\n", collInfo(coll).tool, chorusGetErrorString(r),
              chorusGetLastError(nullptr));
      good = 0;
    }
  }
  MPI_Bcast(&good, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!good) {
    MPI_Finalize();
    return 1;
  }
  MPI_Bcast(init.id.internal, sizeof init.id.internal, MPI_BYTE, 0, MPI_COMM_WORLD);
  Progress progress;
  const int rc = Sweep(coll, opts, cmd, &progress, true).run(init);
  MPI_Finalize();
  return rc;
}
#endif

}  // namespace

int collPerfMain(PerfColl coll, int argc, char** argv) {
  const char* tool = collInfo(coll).tool;
  ParseOutcome parsed = parseArgs(argc, argv);
  if (parsed.help) {
    printf("%s", usage(argv[0], coll).c_str());
    return 0;
  }
  if (!parsed.ok) {
    fprintf(stderr, "%s: %s\n\n%s", tool, parsed.error.c_str(), usage(argv[0], coll).c_str());
    return 2;
  }
  const Options& opts = parsed.opts;
  const std::string cmd = commandLine(argc, argv);
  const LaunchEnv env = detectLaunchEnv();

  // -A: the library reads CHORUS_ALGO when a communicator is created (in every rank, also the
  // forked ones), and is the judge of whether the algorithm serves this collective.
  if (!opts.algo.empty()) {
    const std::string tune = std::string(collInfo(coll).name) + ":" + opts.algo;
    if (const char* old = getenv("CHORUS_ALGO"); old && *old && tune != old)
      fprintf(stderr, "%s: -A %s replaces CHORUS_ALGO=%s\n", tool, opts.algo.c_str(), old);
    setenv("CHORUS_ALGO", tune.c_str(), 1);
  }
  // -G: the device plugin the library loads is the one whose memory the buffers are in.
  if (opts.buffers != "host") {
    if (const char* old = getenv("CHORUS_DEVICE_PLUGIN"); old && *old && opts.buffers != old)
      fprintf(stderr, "%s: -G %s replaces CHORUS_DEVICE_PLUGIN=%s\n", tool, opts.buffers.c_str(), old);
    setenv("CHORUS_DEVICE_PLUGIN", opts.buffers.c_str(), 1);
  }

  if (opts.np > 0) {
    if (env != LaunchEnv::None)
      fprintf(stderr, "%s: -np %d given under %s: every process forks its own %d ranks\n", tool, opts.np,
              launchEnvName(env), opts.np);
    return runStandalone(coll, opts, cmd);
  }
#ifdef CHORUS_PERF_HAVE_MPI
  if (env == LaunchEnv::OpenMpi) return runUnderMpi(coll, argc, argv, opts, cmd);
#endif
  Progress progress;
  InitSpec init;
  if (env != LaunchEnv::None) {
    init.kind = InitSpec::FromEnv;
    return Sweep(coll, opts, cmd, &progress, false).run(init);
  }
  // No launcher and no -np: one rank.
  chorusResult_t r = chorusGetUniqueId(&init.id);
  if (r != chorusSuccess) {
    fprintf(stderr, "%s: chorusGetUniqueId failed: %s: %s\n", tool, chorusGetErrorString(r), chorusGetLastError(nullptr));
    return 1;
  }
  return Sweep(coll, opts, cmd, &progress, false).run(init);
}

}  // namespace chorus::perf
