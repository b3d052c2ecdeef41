// Pieces of the perf sweep binaries that do not need a communicator, kept apart so that unit
// tests can exercise them: argument parsing (nccl-tests' flags), the collectives' sizes and
// bus-bandwidth factors, the table / JSON output, the deterministic data patterns and their
// checkers, and the local launcher that forks N ranks for `-np N`. The driver that calls
// Chorus is coll_perf.{h,cpp}.
//
// Written only against the public C API (include/chorus/chorus.h): this file uses its enums and
// types, never the library's internals. perf_common.cpp itself calls no Chorus function.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "chorus/chorus.h"

namespace chorus::perf {

// ---------------------------------------------------------------------------------------------
// Collectives
// ---------------------------------------------------------------------------------------------

/** The collective a perf tool measures (one tool each). */
enum class PerfColl : uint8_t {
  AllReduce,
  AllGather,
  Broadcast,
  Reduce,
  ReduceScatter,
  AlltoAll,
  Gather,
  Scatter,
  SendRecv,
  kCount
};

struct CollInfo {
  PerfColl coll;
  const char* tool;  // the executable: "all_gather_perf"
  const char* name;  // the collective's name in CHORUS_ALGO: "allgather" (the library knows no "sendrecv")
  bool reduction;    // takes an op (-o); the redop column says "none" otherwise
  bool rooted;       // takes a root (-r); the root column says -1 otherwise
  bool inPlace;      // has an in-place form (AlltoAll and SendRecv do not: their in-place columns are N/A)
};
const CollInfo& collInfo(PerfColl coll);
/** By tool name ("all_gather_perf"; a directory before it and a suffix after it are ignored) or
 *  by collective name ("allgather"). */
bool findColl(const std::string& name, PerfColl* coll);

/** busbw = algbw * busFactor (nccl-tests' PERFORMANCE.md): 2(n-1)/n for all-reduce; (n-1)/n for
 *  all-gather, reduce-scatter, all-to-all, gather and scatter; 1 for broadcast, reduce, send/recv. */
double busFactor(PerfColl coll, int nranks);

/** Elements of the send / receive buffer of one call whose count argument is `count`, on a rank
 *  that uses that buffer (see readsSend / writesRecv). */
size_t sendElems(PerfColl coll, size_t count, int nranks);
size_t recvElems(PerfColl coll, size_t count, int nranks);
/** Whether `rank` reads its send buffer / writes its receive buffer: Broadcast and Scatter read
 *  on the root only, Reduce and Gather write on the root only; every other collective, always. */
bool readsSend(PerfColl coll, int rank, int root);
bool writesRecv(PerfColl coll, int rank, int root);

/**
 * nccl-tests' size semantics: a sweep size S (bytes) is the whole buffer. From totalCount = S /
 * type size elements: AllReduce, Broadcast, Reduce, SendRecv move totalCount; the others move
 * totalCount / n per rank (the count argument), and their larger buffer holds n times that.
 */
struct CollSizes {
  size_t count = 0;        // the call's count argument; the "count" column
  size_t sendCount = 0;    // elements of the send buffer
  size_t recvCount = 0;    // elements of the receive buffer
  size_t sendInPlace = 0;  // in place: send = buf + rank * sendInPlace (elements)...
  size_t recvInPlace = 0;  // ...and recv = buf + rank * recvInPlace, one buffer of max(send, recv)
  /** The "size" column: the larger buffer in bytes. */
  size_t bytes(size_t typeSize) const { return (sendCount > recvCount ? sendCount : recvCount) * typeSize; }
};
CollSizes collSizes(PerfColl coll, size_t totalCount, int nranks);

/** printf into a std::string (at most 511 characters). */
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/** Everything the sweep is told on its command line. Defaults are nccl-tests' defaults. */
// Where -np pins its ranks (--bind). Auto: one CPU each when the ranks fit the CPUs this
// process may use, as mpirun binds to cores by default; none when they do not (oversubscribed).
enum class BindPolicy { Auto, Core, None };

struct Options {
  size_t minBytes = 32u << 20;  // -b
  size_t maxBytes = 32u << 20;  // -e
  size_t stepBytes = 1u << 20;  // -i (used when no -f is given)
  int stepFactor = 0;           // -f (0 = disabled: sizes grow by stepBytes)
  int iters = 20;               // -n
  int warmup = 5;               // -w
  int aggIters = 1;             // -m: collectives issued back to back per timed iteration
  int check = 1;                // -c: checked iterations per size and mode (0 = no check)
  int average = 1;              // -a: 0 = rank 0's time, 1 = mean, 2 = min, 3 = max over ranks
  int blocking = 0;             // -z: 1 = NULL stream (each call blocks), 0 = stream + sync
  int runCycles = 1;            // -N: repeat the whole sweep (0 = until interrupted)
  std::vector<chorusDataType_t> types{chorusFloat32};  // -d
  std::vector<chorusRedOp_t> ops{chorusSum};           // -o
  int root = 0;                 // -r: root of rooted collectives; -1 = every rank in turn
  int np = 0;                   // -np: fork this many local ranks (0 = not standalone)
  std::string jsonPath;         // -J
  std::string algo;             // -A: CHORUS_ALGO=<collective>:<algo> ("" = the tuner's choice)
  BindPolicy bind = BindPolicy::Auto;  // --bind: -np ranks to CPUs
  std::string buffers = "host";  // -G: where the buffers live: host, or a device plugin (emu, cuda)
};

/** Result of parseArgs: ok, a request for help, or an error message (exit code 2). */
struct ParseOutcome {
  bool ok = false;
  bool help = false;
  std::string error;
  Options opts;
};

/** Parses argv[1..argc). Never exits and never prints. */
ParseOutcome parseArgs(int argc, const char* const* argv);

/** The usage text printed by -h and after a bad argument; coll adds its own notes (-r, -o). */
std::string usage(const char* prog, PerfColl coll = PerfColl::AllReduce);

/** "8", "4K", "1M", "2G", "64KiB", "1MB" -> bytes (suffixes are powers of 1024). */
bool parseSize(const char* text, size_t* bytes);

/** The byte sizes of the sweep: min, then *factor (or +step), while <= max; at most
 *  kMaxSweepSizes of them (parseArgs refuses options that would make more). */
std::vector<size_t> sizeLadder(const Options& opts);
constexpr size_t kMaxSweepSizes = size_t{1} << 16;

// ---------------------------------------------------------------------------------------------
// Types, ops, bandwidth
// ---------------------------------------------------------------------------------------------

size_t typeSize(chorusDataType_t type);
const char* typeName(chorusDataType_t type);  // nccl-tests spelling: "float", "half", ...
const char* opName(chorusRedOp_t op);
bool parseType(const std::string& name, chorusDataType_t* type);
bool parseOp(const std::string& name, chorusRedOp_t* op);

/** algbw in GB/s (1 GB = 1e9 B): bytes / seconds. */
double algBandwidth(size_t bytes, double seconds);

// ---------------------------------------------------------------------------------------------
// Output: the nccl-tests table and JSON
// ---------------------------------------------------------------------------------------------

/** Time, bandwidths and wrong-element count of one mode (out-of-place or in-place). */
struct ModeResult {
  double timeUs = 0;
  double algBw = 0;
  double busBw = 0;
  long long wrong = -1;  // -1: not checked (printed as N/A)
  bool skipped = false;  // not run: no such mode for this collective (every column N/A)
};

/** One line of the table. */
struct Row {
  size_t bytes = 0;
  size_t count = 0;
  chorusDataType_t type = chorusFloat32;
  chorusRedOp_t op = chorusSum;
  bool hasOp = true;  // false: the redop column says "none"
  int root = -1;
  ModeResult outOfPlace;
  ModeResult inPlace;
};

/** Where one rank runs, for the "# Rank r Pid p on host" header table. */
struct RankPlace {
  int rank = 0;
  long pid = 0;
  std::string host;
  std::string cpus;  // the CPUs the rank may run on, "0" or "0-3,8" ("" unknown)
};

/** The CPUs the calling process may run on (sched_getaffinity), in order. */
std::vector<int> allowedCpus();
/** "0-3,8" for {0,1,2,3,8}. */
std::string cpuListText(const std::vector<int>& cpus);
/** -np's binding: the CPU of each rank, or an empty list (unbound), and a line saying so. */
std::vector<int> rankCpus(BindPolicy policy, int nranks, const std::vector<int>& allowed, std::string* note);

/** nccl-tests style time: 2 decimals below 100 us, 1 below 10 ms, none above. */
std::string formatTime(double us);
/** The header: command line, parameters, rank table, and the two column-title lines. */
std::string formatHeader(const std::string& commandLine, const Options& opts, int nranks,
                         const std::vector<RankPlace>& places);
/** One table row (no trailing newline). */
std::string formatRow(const Row& row);
/** Mean of busbw over every measured (not skipped) mode of every row (nccl-tests' "Avg bus bandwidth"). */
double averageBusBandwidth(const std::vector<Row>& rows);
/** Total wrong elements over all rows (unchecked modes count 0). */
long long totalWrong(const std::vector<Row>& rows);
/** "# Out of bounds values : N OK|FAILED" and "# Avg bus bandwidth    : X". */
std::string formatFooter(const std::vector<Row>& rows);
/** The whole run as one JSON document. error is "" when every call succeeded. */
std::string formatJson(const std::string& commandLine, const Options& opts, int nranks,
                       const std::vector<RankPlace>& places, const std::vector<Row>& rows,
                       const std::string& error, PerfColl coll = PerfColl::AllReduce);

// ---------------------------------------------------------------------------------------------
// Data patterns and checkers
// ---------------------------------------------------------------------------------------------
// Reductions: rank r's input element i is a small integer chosen from (r, i, seed) such that the
// reduction over n ranks is exact in the type: sums stay below the type's exact-integer range
// (8 for fp8 E5M2, 16 for E4M3, 2048 for half, 256 for bfloat16, 2^24 for float, ...), products
// are products of +-1 and +-2 with at most 14 factors of 2 (8 for E4M3, whose largest value is
// 448), max/min draw from [-32, 32) (fp8: [-limit, limit)). Integer sums and products that leave
// the type's range wrap, and the expected value wraps the same way. Every check is exact: float
// inputs and partial results are integers, so no result depends on the order of the steps, and
// Avg (which chorus.h defines as the sum divided once by the rank count) must be the correctly
// rounded quotient of the exact sum; integer Avg truncates.
//
// Copies (broadcast, gathers, scatter, all-to-all, send/recv): element i of source rank s is
// hash bytes of (s, i, seed), compared bit for bit, and never kPoisonByte in every byte.

/** Rank `rank`'s input value of element `index` (before conversion to the type). */
long long patternValue(chorusDataType_t type, chorusRedOp_t op, int rank, int nranks,
                       size_t index, uint32_t seed);
/** The exact reduced value of element `index` (Avg: the sum, before dividing by nranks). */
long long patternReduced(chorusDataType_t type, chorusRedOp_t op, int nranks, size_t index,
                         uint32_t seed);
/** Writes rank `rank`'s input into buf[0..count). */
void fillInput(void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op, int rank,
               int nranks, uint32_t seed);
/** Elements of an all-reduce result buf[0..count) that differ from the expected value. */
size_t countWrongResult(const void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op,
                        int nranks, uint32_t seed);
/** Elements of an out-of-place send buffer that no longer hold rank's input. */
size_t countChangedInput(const void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op,
                         int rank, int nranks, uint32_t seed);

/** Receive buffers are filled with this byte before a checked call. */
constexpr uint8_t kPoisonByte = 0xA5;

/** One rank's view of one checked call; count is the call's count argument. */
struct CollCase {
  PerfColl coll = PerfColl::AllReduce;
  chorusDataType_t type = chorusFloat32;
  chorusRedOp_t op = chorusSum;
  int rank = 0;
  int nranks = 1;
  int root = 0;
  size_t count = 0;
  uint32_t seed = 0;
};
/** Writes this rank's input into send (sendElems elements; nothing where the rank reads none). */
void fillCollInput(const CollCase& c, void* send);
/** Wrong elements of this rank's output (recvElems elements; 0 where the rank writes none). */
size_t countWrongCollOutput(const CollCase& c, const void* recv);
/** Elements of an out-of-place send buffer that no longer hold this rank's input. */
size_t countChangedCollInput(const CollCase& c, const void* send);

/** IEEE binary16, bfloat16 and OCP fp8 conversions (round to nearest even; see src/exec/half.h). */
uint16_t floatToHalf(float f);
float halfToFloat(uint16_t h);
uint16_t floatToBfloat16(float f);
float bfloat16ToFloat(uint16_t b);
uint8_t floatToFp8e4m3(float f);
float fp8e4m3ToFloat(uint8_t b);
uint8_t floatToFp8e5m2(float f);
float fp8e5m2ToFloat(uint8_t b);

// ---------------------------------------------------------------------------------------------
// Launching
// ---------------------------------------------------------------------------------------------

/** Which launcher started this process, if any. */
enum class LaunchEnv { None, OpenMpi, Slurm, Torchrun };
/** OMPI_COMM_WORLD_SIZE, SLURM_NTASKS + SLURM_PROCID, or WORLD_SIZE + RANK, in that order. */
LaunchEnv detectLaunchEnv();
const char* launchEnvName(LaunchEnv env);

/** CHORUS_TIMEOUT in seconds (300 when unset or malformed). */
double chorusTimeoutSeconds();

/** One rank's progress counter, in memory shared with the parent; bump it when a call ends. */
struct alignas(64) Progress {
  std::atomic<uint64_t> ticks{0};
  void tick() { ticks.fetch_add(1, std::memory_order_relaxed); }
};

/** What the local launcher saw. exitCode is 0 only when every rank exited with 0. */
struct LaunchResult {
  int exitCode = 0;
  int firstFailedRank = -1;  // -1 when none failed
  std::string message;       // why it failed, naming the rank(s); "" on success
};

/** Parameters of launchLocal. */
struct LocalLaunch {
  int nranks = 1;
  // Kill every rank when none of them has bumped its progress counter for this long.
  double stallSeconds = 630;
  // After one rank failed, how long the others may take to notice and exit by themselves.
  double graceSeconds = 15;
  // Runs in the parent after the ranks were forked: the token every rank receives (for Chorus,
  // the bytes of a chorusUniqueId). Return false with *error set to abort the launch.
  std::function<bool(std::vector<char>* token, std::string* error)> makeToken;
  // The CPU each rank is pinned to before anything else runs in it (empty: not pinned).
  std::vector<int> cpus;
  // Runs in child `rank` with the token; its return value is the child's exit code.
  std::function<int(int rank, const std::vector<char>& token, Progress* progress)> body;
};

/**
 * Forks nranks children first (so that no library thread is duplicated by fork), then makes the
 * token in the parent and hands it to each child through a pipe, then waits. A child that dies
 * from a signal gets the others killed at once; a child that exits non-zero gives the others
 * graceSeconds to finish; no progress for stallSeconds gets every rank killed. Children die with
 * the parent (PR_SET_DEATHSIG). SIGINT/SIGTERM to the parent are passed on to the children.
 * Never returns before every child has been reaped.
 */
LaunchResult launchLocal(const LocalLaunch& launch);

}  // namespace chorus::perf
