// all_reduce_perf: the operators' all-reduce sweep, with nccl-tests' flags and columns.
//
// Written only against the public C API (include/chorus/chorus.h). Three ways to run:
//   all_reduce_perf -np 4 -b 8 -e 64M -f 4      standalone: forks 4 local ranks
//   mpirun -np 4 all_reduce_perf -b 8 -e 64M    one rank per process (also srun / torchrun)
//   all_reduce_perf                             a single rank
//
// Per size, type and op, each mode (out-of-place, then in-place) runs: -w warm-up calls, a
// barrier (an all-reduce of one int32), -n timed iterations of -m calls each, then -c checked
// calls on a fresh deterministic pattern. The time of one call is the loop's time divided by
// n * m on each rank, combined over ranks by -a (one float64 all-reduce). algbw = bytes / time
// (GB/s, 1 GB = 1e9 B); busbw = algbw * 2 (n - 1) / n. #wrong is the number of result elements
// (plus, out of place, changed input elements) that differ from the expected value, summed over
// ranks. Only rank 0 prints; every row is printed and flushed as soon as it is measured.
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

namespace {

using namespace chorus::perf;

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
  Sweep(const Options& opts, std::string cmd, Progress* progress, bool underMpi)
      : opts_(opts), cmd_(std::move(cmd)), progress_(progress), underMpi_(underMpi) {}
  ~Sweep() {
    free(sendbuf_);
    free(recvbuf_);
  }

  // Returns the process exit code: 0, or 1 on wrong results / a failed call.
  int run(const InitSpec& init) {
    if (!initComm(init)) return fail();
    if (!opts_.blocking && !ok(chorusStreamCreate(&stream_), "chorusStreamCreate")) return fail();
    if (!gatherPlaces()) return fail();
    if (rank_ == 0) printHeader();
    if (!allocate()) return fail();

    const std::vector<size_t> sizes = sizeLadder(opts_);
    for (int cycle = 0; opts_.runCycles == 0 || cycle < opts_.runCycles; ++cycle) {
      for (chorusDataType_t type : opts_.types)
        for (chorusRedOp_t op : opts_.ops)
          for (size_t bytes : sizes) {
            Row row;
            row.type = type;
            row.op = op;
            row.count = bytes / typeSize(type);
            row.bytes = row.count * typeSize(type);
            if (row.count == 0) continue;  // smaller than one element of this type
            if (!measure(row, false, &row.outOfPlace) || !measure(row, true, &row.inPlace))
              return fail();
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
    if (rank_ >= 0) fprintf(stderr, "[rank %d] all_reduce_perf: %s\n", rank_, error_.c_str());
    else fprintf(stderr, "[rank ?] all_reduce_perf: %s\n", error_.c_str());
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

  // Every rank's pid and host, gathered with one uint8 sum all-reduce (zeros elsewhere).
  bool gatherPlaces() {
    constexpr size_t kHost = 64, kSlot = 8 + kHost;
    std::vector<uint8_t> in(kSlot * nranks_, 0), out(kSlot * nranks_, 0);
    uint8_t* mine = &in[kSlot * rank_];
    const uint64_t pid = static_cast<uint64_t>(getpid());
    for (int b = 0; b < 8; ++b) mine[b] = static_cast<uint8_t>(pid >> (8 * b));
    char host[kHost] = {};
    gethostname(host, kHost - 1);
    memcpy(mine + 8, host, kHost - 1);
    if (!call(in.data(), out.data(), in.size(), chorusUint8, chorusSum, "all-reduce of rank places"))
      return false;
    places_.resize(nranks_);
    for (int r = 0; r < nranks_; ++r) {
      const uint8_t* slot = &out[kSlot * r];
      uint64_t p = 0;
      for (int b = 0; b < 8; ++b) p |= static_cast<uint64_t>(slot[b]) << (8 * b);
      places_[r].rank = r;
      places_[r].pid = static_cast<long>(p);
      places_[r].host.assign(reinterpret_cast<const char*>(slot + 8), strnlen(reinterpret_cast<const char*>(slot + 8), kHost));
    }
    return true;
  }

  void printHeader() {
    int version = 0;
    chorusGetVersion(&version);
    printf("# Chorus all_reduce_perf, libchorus %d.%d.%d\n", version / 10000, version / 100 % 100,
           version % 100);
    printf("%s", formatHeader(cmd_, opts_, nranks_, places_).c_str());
    fflush(stdout);
  }

  bool allocate() {
    size_t largest = 64;
    for (size_t s : sizeLadder(opts_)) largest = std::max(largest, s);
    bufBytes_ = (largest + 4095) / 4096 * 4096;
    sendbuf_ = aligned_alloc(4096, bufBytes_);
    recvbuf_ = aligned_alloc(4096, bufBytes_);
    if (!sendbuf_ || !recvbuf_) {
      error_ = "cannot allocate two buffers of " + std::to_string(bufBytes_) + " bytes";
      return false;
    }
    memset(sendbuf_, 0, bufBytes_);  // touch every page before anything is timed
    memset(recvbuf_, 0, bufBytes_);
    return true;
  }

  // --- calls --------------------------------------------------------------------------------
  std::string describe(size_t count, chorusDataType_t type, chorusRedOp_t op, const char* what) {
    return std::string("chorusAllReduce(") + what + ", count=" + std::to_string(count) + ", " +
           typeName(type) + ", " + opName(op) + (opts_.blocking ? ", NULL stream)" : ", stream)");
  }

  // Issues one all-reduce; with a stream it is only enqueued.
  bool issue(const void* send, void* recv, size_t count, chorusDataType_t type, chorusRedOp_t op,
             const char* what) {
    chorusResult_t r = chorusAllReduce(send, recv, count, type, op, comm_, stream_);
    if (r != chorusSuccess) return ok(r, describe(count, type, op, what));
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

  // One all-reduce that has finished when this returns.
  bool call(const void* send, void* recv, size_t count, chorusDataType_t type, chorusRedOp_t op,
            const char* what) {
    if (!issue(send, recv, count, type, op, what) || !sync(what)) return false;
    progress_->tick();
    return true;
  }

  bool barrier() {
    int32_t in = 1, out = 0;
    if (!call(&in, &out, 1, chorusInt32, chorusSum, "barrier")) return false;
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
    if (!call(&in, &out, 1, chorusFloat64, kOps[opts_.average], "time reduction")) return false;
    *combined = opts_.average == 1 ? out / nranks_ : out;
    return true;
  }

  // --- one measurement ----------------------------------------------------------------------
  bool measure(const Row& row, bool inPlace, ModeResult* res) {
    const size_t count = row.count;
    const chorusDataType_t type = row.type;
    const chorusRedOp_t op = row.op;
    void* recv = recvbuf_;
    void* send = inPlace ? recvbuf_ : sendbuf_;
    const char* mode = inPlace ? "in-place" : "out-of-place";

    // Timed data: the pattern out of place; zeros in place, so that repeated in-place
    // reductions cannot overflow.
    if (inPlace) memset(recv, 0, row.bytes);
    else fillInput(send, count, type, op, rank_, nranks_, 0);
    for (int w = 0; w < opts_.warmup; ++w)
      if (!issue(send, recv, count, type, op, mode)) return false;
    if (!sync(mode) || !barrier()) return false;

    const double t0 = nowSeconds();
    for (int it = 0; it < opts_.iters; ++it) {
      for (int m = 0; m < opts_.aggIters; ++m)
        if (!issue(send, recv, count, type, op, mode)) return false;
      progress_->tick();
    }
    if (!sync(mode)) return false;
    const double perCall = (nowSeconds() - t0) / (static_cast<double>(opts_.iters) * opts_.aggIters);

    double seconds = 0;
    if (!combineTime(perCall, &seconds)) return false;
    res->timeUs = seconds * 1e6;
    res->algBw = algBandwidth(row.bytes, seconds);
    res->busBw = allReduceBusBandwidth(res->algBw, nranks_);

    if (opts_.check <= 0) return true;  // #wrong stays -1: N/A
    long long wrong = 0;
    for (int c = 0; c < opts_.check; ++c) {
      const uint32_t seed = static_cast<uint32_t>(c + 1);
      fillInput(send, count, type, op, rank_, nranks_, seed);
      if (!inPlace) memset(recv, 0xA5, row.bytes);  // a call that writes nothing must not pass
      if (!call(send, recv, count, type, op, mode)) return false;
      wrong += static_cast<long long>(countWrongResult(recv, count, type, op, nranks_, seed));
      if (!inPlace)
        wrong += static_cast<long long>(countChangedInput(send, count, type, op, rank_, nranks_, seed));
    }
    int64_t in = wrong, total = 0;
    if (!call(&in, &total, 1, chorusInt64, chorusSum, "#wrong reduction")) return false;
    res->wrong = total;
    return true;
  }

  bool writeJson(const std::string& error) {
    if (opts_.jsonPath.empty()) return true;
    FILE* f = fopen(opts_.jsonPath.c_str(), "w");
    if (!f) {
      fprintf(stderr, "[rank 0] all_reduce_perf: cannot write %s: %s\n", opts_.jsonPath.c_str(),
              strerror(errno));
      return false;
    }
    const std::string j = formatJson(cmd_, opts_, nranks_, places_, rows_, error);
    const bool good = fwrite(j.data(), 1, j.size(), f) == j.size();
    return (fclose(f) == 0) && good;
  }

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
  size_t bufBytes_ = 0;
  std::vector<RankPlace> places_;
  std::vector<Row> rows_;
  std::string error_;
};

int runStandalone(const Options& opts, const std::string& cmd) {
  // Every rank is on this host: keep the bootstrap and any TCP traffic on loopback unless the
  // operator chose an interface.
  setenv("CHORUS_SOCKET_IFNAME", "lo", 0);
  LocalLaunch launch;
  launch.nranks = opts.np;
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
    return Sweep(opts, cmd, progress, false).run(init);
  };
  LaunchResult res = launchLocal(launch);
  if (res.exitCode != 0 && !res.message.empty())
    fprintf(stderr, "all_reduce_perf: %s\n", res.message.c_str());
  return res.exitCode;
}

#ifdef CHORUS_PERF_HAVE_MPI
int runUnderMpi(int argc, char** argv, const Options& opts, const std::string& cmd) {
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
      fprintf(stderr, "[rank 0] all_reduce_perf: chorusGetUniqueId failed: %s: %s\n",
              chorusGetErrorString(r), chorusGetLastError(nullptr));
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
  const int rc = Sweep(opts, cmd, &progress, true).run(init);
  MPI_Finalize();
  return rc;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  ParseOutcome parsed = parseArgs(argc, argv);
  if (parsed.help) {
    printf("%s", usage(argv[0]).c_str());
    return 0;
  }
  if (!parsed.ok) {
    fprintf(stderr, "all_reduce_perf: %s\n\n%s", parsed.error.c_str(), usage(argv[0]).c_str());
    return 2;
  }
  const Options& opts = parsed.opts;
  const std::string cmd = commandLine(argc, argv);
  const LaunchEnv env = detectLaunchEnv();

  if (opts.np > 0) {
    if (env != LaunchEnv::None)
      fprintf(stderr, "all_reduce_perf: -np %d given under %s: every process forks its own %d "
              "ranks\n", opts.np, launchEnvName(env), opts.np);
    return runStandalone(opts, cmd);
  }
#ifdef CHORUS_PERF_HAVE_MPI
  if (env == LaunchEnv::OpenMpi) return runUnderMpi(argc, argv, opts, cmd);
#endif
  Progress progress;
  InitSpec init;
  if (env != LaunchEnv::None) {
    init.kind = InitSpec::FromEnv;
    return Sweep(opts, cmd, &progress, false).run(init);
  }
  // No launcher and no -np: one rank.
  chorusResult_t r = chorusGetUniqueId(&init.id);
  if (r != chorusSuccess) {
    fprintf(stderr, "all_reduce_perf: chorusGetUniqueId failed: %s: %s\n",
            chorusGetErrorString(r), chorusGetLastError(nullptr));
    return 1;
  }
  return Sweep(opts, cmd, &progress, false).run(init);
}
