// Pieces of the perf sweep binaries that do not need a communicator, kept apart so that unit
// tests can exercise them: argument parsing (nccl-tests' flags), the size ladder, bandwidth
// arithmetic, the table / JSON output, the deterministic data pattern and its checker, and the
// local launcher that forks N ranks for `-np N`.
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

/** printf into a std::string (at most 511 characters). */
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/** Everything the sweep is told on its command line. Defaults are nccl-tests' defaults. */
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
  int np = 0;                   // -np: fork this many local ranks (0 = not standalone)
  std::string jsonPath;         // -J
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

/** The usage text printed by -h and after a bad argument. */
std::string usage(const char* prog);

/** "8", "4K", "1M", "2G", "64KiB", "1MB" -> bytes (suffixes are powers of 1024). */
bool parseSize(const char* text, size_t* bytes);

/** The byte sizes of the sweep: min, then *factor (or +step), while <= max. */
std::vector<size_t> sizeLadder(const Options& opts);

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
/** busbw of an all-reduce: algbw * 2 (n - 1) / n. */
double allReduceBusBandwidth(double algbw, int nranks);

// ---------------------------------------------------------------------------------------------
// Output: the nccl-tests table and JSON
// ---------------------------------------------------------------------------------------------

/** Time, bandwidths and wrong-element count of one mode (out-of-place or in-place). */
struct ModeResult {
  double timeUs = 0;
  double algBw = 0;
  double busBw = 0;
  long long wrong = -1;  // -1: not checked (printed as N/A)
};

/** One line of the table. */
struct Row {
  size_t bytes = 0;
  size_t count = 0;
  chorusDataType_t type = chorusFloat32;
  chorusRedOp_t op = chorusSum;
  int root = -1;
  ModeResult outOfPlace;
  ModeResult inPlace;
};

/** Where one rank runs, for the "# Rank r Pid p on host" header table. */
struct RankPlace {
  int rank = 0;
  long pid = 0;
  std::string host;
};

/** nccl-tests style time: 2 decimals below 100 us, 1 below 10 ms, none above. */
std::string formatTime(double us);
/** The header: command line, parameters, rank table, and the two column-title lines. */
std::string formatHeader(const std::string& commandLine, const Options& opts, int nranks,
                         const std::vector<RankPlace>& places);
/** One table row (no trailing newline). */
std::string formatRow(const Row& row);
/** Mean of busbw over every measured mode of every row (nccl-tests' "Avg bus bandwidth"). */
double averageBusBandwidth(const std::vector<Row>& rows);
/** Total wrong elements over all rows (unchecked modes count 0). */
long long totalWrong(const std::vector<Row>& rows);
/** "# Out of bounds values : N OK|FAILED" and "# Avg bus bandwidth    : X". */
std::string formatFooter(const std::vector<Row>& rows);
/** The whole run as one JSON document. error is "" when every call succeeded. */
std::string formatJson(const std::string& commandLine, const Options& opts, int nranks,
                       const std::vector<RankPlace>& places, const std::vector<Row>& rows,
                       const std::string& error);

// ---------------------------------------------------------------------------------------------
// Data pattern and checker
// ---------------------------------------------------------------------------------------------
// Rank r's input element i is a small integer chosen from (r, i, seed) such that the reduction
// over n ranks is exact in the type: sums stay below the type's exact-integer range (2048 for
// half, 256 for bfloat16, 2^24 for float, ...), products are products of +-1 and +-2 with at most
// 14 factors of 2, max/min draw from [-32, 32). Integer sums and products that leave the type's
// range wrap, and the expected value wraps the same way. Avg of a float type is compared within
// two units in the last place of the type (the division may round); everything else is exact.

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

/** IEEE binary16 and bfloat16 conversions (round to nearest even). */
uint16_t floatToHalf(float f);
float halfToFloat(uint16_t h);
uint16_t floatToBfloat16(float f);
float bfloat16ToFloat(uint16_t b);

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
