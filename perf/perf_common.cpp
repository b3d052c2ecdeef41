// See perf_common.h. The collectives' sizes, command line and output (the data patterns are in
// data_pattern.cpp, the local launcher in launcher.cpp).
#include "perf_common.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdarg>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>

#include "topology/json_text.h"  // jsonString, jsonNumber (header-only)

namespace chorus::perf {

std::string format(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

namespace {

// Strict integer parse: the whole text, within [lo, hi].
bool parseInt(const std::string& text, long lo, long hi, int* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long v = strtol(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

struct TypeInfo {
  chorusDataType_t type;
  const char* name;
  size_t size;
};
constexpr TypeInfo kTypes[] = {
    {chorusInt8, "int8", 1},     {chorusUint8, "uint8", 1},   {chorusInt32, "int32", 4},
    {chorusUint32, "uint32", 4}, {chorusInt64, "int64", 8},   {chorusUint64, "uint64", 8},
    {chorusFloat16, "half", 2},  {chorusFloat32, "float", 4}, {chorusFloat64, "double", 8},
    {chorusBfloat16, "bfloat16", 2}, {chorusFloat8e4m3, "f8e4m3", 1}, {chorusFloat8e5m2, "f8e5m2", 1}};
constexpr const char* kOpNames[] = {"sum", "prod", "max", "min", "avg"};

// Long option -> the short name used below. Every option but -h takes a value.
struct LongName {
  const char* longName;
  const char* shortName;
};
constexpr LongName kLongNames[] = {
    {"minbytes", "b"},   {"maxbytes", "e"},     {"stepbytes", "i"},    {"stepfactor", "f"},
    {"iters", "n"},      {"warmup_iters", "w"}, {"agg_iters", "m"},    {"check", "c"},
    {"average", "a"},    {"blocking", "z"},     {"run_cycles", "N"},   {"datatype", "d"},
    {"op", "o"},         {"nthreads", "t"},     {"ngpus", "g"},        {"help", "h"},
    {"json", "J"},       {"np", "np"},          {"root", "r"},         {"algo", "A"},
    {"bind", "bind"},    {"buffers", "G"}};
constexpr const char* kShortNames = "beifnwmcazNdotghJrAG";

constexpr CollInfo kColls[] = {
    {PerfColl::AllReduce, "all_reduce_perf", "allreduce", true, false, true},
    {PerfColl::AllGather, "all_gather_perf", "allgather", false, false, true},
    {PerfColl::Broadcast, "broadcast_perf", "broadcast", false, true, true},
    {PerfColl::Reduce, "reduce_perf", "reduce", true, true, true},
    {PerfColl::ReduceScatter, "reduce_scatter_perf", "reducescatter", true, false, true},
    {PerfColl::AlltoAll, "alltoall_perf", "alltoall", false, false, false},
    {PerfColl::Gather, "gather_perf", "gather", false, true, true},
    {PerfColl::Scatter, "scatter_perf", "scatter", false, true, true},
    {PerfColl::SendRecv, "sendrecv_perf", "sendrecv", false, false, false},
};
static_assert(sizeof kColls / sizeof kColls[0] == static_cast<size_t>(PerfColl::kCount));

// Whether the receive buffer is n blocks (gathers, all-to-all) / the send buffer is (scatters,
// reduce-scatter, all-to-all).
bool recvIsBlocks(PerfColl c) { return c == PerfColl::AllGather || c == PerfColl::Gather || c == PerfColl::AlltoAll; }
bool sendIsBlocks(PerfColl c) { return c == PerfColl::ReduceScatter || c == PerfColl::Scatter || c == PerfColl::AlltoAll; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Collectives
// ---------------------------------------------------------------------------------------------

const CollInfo& collInfo(PerfColl coll) { return kColls[static_cast<size_t>(coll) % static_cast<size_t>(PerfColl::kCount)]; }

bool findColl(const std::string& name, PerfColl* coll) {
  std::string base = name.substr(name.find_last_of('/') == std::string::npos ? 0 : name.find_last_of('/') + 1);
  for (const CollInfo& c : kColls) {
    // The tool name, also with a suffix after it ("all_gather_perf_mpi", "all_gather_perf.exe").
    const size_t len = strlen(c.tool);
    const bool toolMatch =
        base.compare(0, len, c.tool) == 0 && (base.size() == len || !isalnum(static_cast<unsigned char>(base[len])));
    if (toolMatch || base == c.name) return *coll = c.coll, true;
  }
  return false;
}

double busFactor(PerfColl coll, int nranks) {
  if (nranks < 1) return 0.0;
  const double n = nranks;
  switch (coll) {
    case PerfColl::AllReduce: return 2.0 * (n - 1) / n;
    case PerfColl::Broadcast:
    case PerfColl::Reduce:
    case PerfColl::SendRecv: return 1.0;
    default: return (n - 1) / n;  // all-gather, reduce-scatter, all-to-all, gather, scatter
  }
}

size_t sendElems(PerfColl coll, size_t count, int nranks) {
  return sendIsBlocks(coll) ? count * static_cast<size_t>(nranks) : count;
}

size_t recvElems(PerfColl coll, size_t count, int nranks) {
  return recvIsBlocks(coll) ? count * static_cast<size_t>(nranks) : count;
}

bool readsSend(PerfColl coll, int rank, int root) {
  return (coll != PerfColl::Broadcast && coll != PerfColl::Scatter) || rank == root;
}

bool writesRecv(PerfColl coll, int rank, int root) {
  return (coll != PerfColl::Reduce && coll != PerfColl::Gather) || rank == root;
}

CollSizes collSizes(PerfColl coll, size_t totalCount, int nranks) {
  CollSizes s;
  const bool perRank = sendIsBlocks(coll) || recvIsBlocks(coll);
  s.count = perRank && nranks > 0 ? totalCount / static_cast<size_t>(nranks) : totalCount;
  s.sendCount = sendElems(coll, s.count, nranks);
  s.recvCount = recvElems(coll, s.count, nranks);
  if (coll == PerfColl::AllGather || coll == PerfColl::Gather) s.sendInPlace = s.count;  // own block of the output
  if (coll == PerfColl::ReduceScatter || coll == PerfColl::Scatter) s.recvInPlace = s.count;  // own block of the input
  return s;
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

namespace {

// The size after s in the sweep of o, or 0 when s is its last (the next one would pass -e, or
// not fit in a size_t). Sizes after the first are > 0, so 0 is free to mean "none".
size_t sizeAfter(const Options& o, size_t s) {
  size_t next;
  if (o.stepFactor > 1) {
    if (s > SIZE_MAX / static_cast<size_t>(o.stepFactor)) return 0;
    next = s * static_cast<size_t>(o.stepFactor);
  } else {
    if (s > SIZE_MAX - o.stepBytes) return 0;
    next = s + o.stepBytes;
  }
  return (next <= s || next > o.maxBytes) ? 0 : next;
}

}  // namespace

bool parseSize(const char* text, size_t* bytes) {
  if (!text || !*text || *text == '-' || *text == '+') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text) return false;
  unsigned long long mult = 1;
  std::string suffix(end);
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'k': case 'K': mult = 1ull << 10; break;
      case 'm': case 'M': mult = 1ull << 20; break;
      case 'g': case 'G': mult = 1ull << 30; break;
      default: return false;
    }
    std::string rest = suffix.substr(1);
    if (!rest.empty() && rest != "B" && rest != "b" && rest != "iB") return false;
  }
  if (v > ULLONG_MAX / mult) return false;
  *bytes = static_cast<size_t>(v * mult);
  return true;
}

std::string usage(const char* prog, PerfColl coll) {
  const CollInfo& info = collInfo(coll);
  std::string p = prog ? prog : info.tool;
  const std::string opLine = info.reduction ? "    -o, --op <op|all>           sum prod max min avg (default sum)\n"
                                            : "    -o, --op <op|all>           accepted and ignored (no reduction)\n";
  const std::string rootLine =
      info.rooted ? "    -r, --root <rank|-1>        the root (default 0); -1: every rank in turn\n" : "";
  const std::string algoName = info.name;
  return "Usage: " + p + " [options]   (" + algoName + ")\n"
      "  Sizes (K/M/G suffixes are powers of 1024):\n"
      "    -b, --minbytes <bytes>      first size (default 32M)\n"
      "    -e, --maxbytes <bytes>      last size (default 32M)\n"
      "    -i, --stepbytes <bytes>     add this between sizes (default 1M)\n"
      "    -f, --stepfactor <factor>   multiply by this between sizes (not with -i)\n"
      "  Operation:\n"
      "    -d, --datatype <type|all>   int8 uint8 int32 uint32 int64 uint64 half (float16)\n"
      "                                bfloat16 float (float32) double (float64) f8e4m3\n"
      "                                (float8e4m3) f8e5m2 (float8e5m2); default float\n" +
      opLine + rootLine +
      "  Performance:\n"
      "    -n, --iters <n>             timed iterations (default 20)\n"
      "    -w, --warmup_iters <n>      untimed iterations first (default 5)\n"
      "    -m, --agg_iters <n>         collectives per timed iteration (default 1)\n"
      "    -a, --average <0|1|2|3>     time reported: 0 rank 0, 1 mean, 2 min, 3 max over\n"
      "                                ranks (default 1)\n"
      "    -N, --run_cycles <n>        repeat the sweep n times, 0 = forever (default 1)\n"
      "  Test:\n"
      "    -c, --check <n>             checked iterations per size and mode, 0 = none\n"
      "                                (default 1)\n"
      "    -z, --blocking <0|1>        1: NULL stream, every call blocks; 0: calls go on a\n"
      "                                chorusStream_t, synchronized after the loop (default 0)\n"
      "  Chorus:\n"
      "    -np <n>                     fork n local ranks (standalone, no launcher needed)\n"
      "    --bind <auto|core|none>     pin -np's ranks to CPUs: auto (default) one CPU each\n"
      "                                when they fit the allowed CPUs, else none; core one\n"
      "                                each, round robin; none leaves them to the scheduler\n"
      "    -G, --buffers <host|emu|cuda>  where the buffers live: host memory (default), or\n"
      "                                device memory of that device plugin (sets\n"
      "                                CHORUS_DEVICE_PLUGIN; docs/DEVICES.md)\n"
      "    -A, --algo <algo>           force the algorithm: sets CHORUS_ALGO=" + algoName + ":<algo>\n"
      "                                before the communicator is created (ring tree hd rd\n"
      "                                bruck pairwise direct, or size ranges as in CHORUS_ALGO)\n" +
      (coll == PerfColl::SendRecv ? "                                (send/recv has no algorithm: the library refuses it)\n"
                                  : "") +
      "    -J, --json <file>           also write the results as JSON (rank 0)\n"
      "    -g, --ngpus 1 / -t, --nthreads 1   accepted for nccl-tests scripts; only 1\n"
      "    -h, --help                  this text\n"
      "  Launch: -np n; or under mpirun / srun / torchrun (one rank per process);\n"
      "  otherwise a single rank. With -np, ranks that make no progress for\n"
      "  2 * CHORUS_TIMEOUT + 30 s are killed.\n"
      "  Exit status: 0 ok, 1 wrong results or a failed call, 2 bad arguments.\n";
}

ParseOutcome parseArgs(int argc, const char* const* argv) {
  ParseOutcome out;
  Options& o = out.opts;
  bool sawStepBytes = false, sawStepFactor = false;
  auto fail = [&](const std::string& msg) {
    out.ok = false;
    out.error = msg;
    return out;
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string name, value;
    bool hasValue = false;
    if (arg == "-np" || arg == "--np") {
      name = "np";
    } else if (arg.rfind("--", 0) == 0 && arg.size() > 2) {
      std::string longName = arg.substr(2);
      size_t eq = longName.find('=');
      if (eq != std::string::npos) {
        value = longName.substr(eq + 1);
        longName.resize(eq);
        hasValue = true;
      }
      for (const auto& ln : kLongNames)
        if (longName == ln.longName) name = ln.shortName;
      if (name.empty()) return fail("unknown option '" + arg + "'");
    } else if (arg.size() >= 2 && arg[0] == '-' && strchr(kShortNames, arg[1])) {
      name = arg.substr(1, 1);
      if (arg.size() > 2) {
        value = arg.substr(2);
        hasValue = true;
      }
    } else {
      return fail("unknown option '" + arg + "'");
    }
    const std::string shown = (name.size() > 1 && name != "np" ? "--" : "-") + name;
    if (name == "h") {
      if (hasValue) return fail("unknown option '" + arg + "'");
      out.help = true;
      out.ok = true;
      return out;
    }
    if (!hasValue) {
      if (i + 1 >= argc) return fail("option " + shown + " needs a value");
      value = argv[++i];
    }
    auto badValue = [&](const char* expected) {
      return fail("bad value '" + value + "' for " + shown + ": expected " + expected);
    };
    if (name == "b" || name == "e" || name == "i") {
      size_t bytes = 0;
      if (!parseSize(value.c_str(), &bytes)) return badValue("a size like 8, 64K, 1M, 2G");
      if (name == "b") o.minBytes = bytes;
      if (name == "e") o.maxBytes = bytes;
      if (name == "i") {
        if (bytes == 0) return badValue("a size > 0");
        o.stepBytes = bytes;
        sawStepBytes = true;
      }
    } else if (name == "f") {
      if (!parseInt(value, 2, 1 << 20, &o.stepFactor)) return badValue("an integer >= 2");
      sawStepFactor = true;
    } else if (name == "n") {
      if (!parseInt(value, 1, INT_MAX, &o.iters)) return badValue("an integer >= 1");
    } else if (name == "w") {
      if (!parseInt(value, 0, INT_MAX, &o.warmup)) return badValue("an integer >= 0");
    } else if (name == "m") {
      if (!parseInt(value, 1, INT_MAX, &o.aggIters)) return badValue("an integer >= 1");
    } else if (name == "c") {
      if (!parseInt(value, 0, INT_MAX, &o.check)) return badValue("an integer >= 0");
    } else if (name == "a") {
      if (!parseInt(value, 0, 3, &o.average)) return badValue("0, 1, 2 or 3");
    } else if (name == "z") {
      if (!parseInt(value, 0, 1, &o.blocking)) return badValue("0 or 1");
    } else if (name == "N") {
      if (!parseInt(value, 0, INT_MAX, &o.runCycles)) return badValue("an integer >= 0");
    } else if (name == "r") {
      if (!parseInt(value, -1, INT_MAX, &o.root)) return badValue("a rank >= 0, or -1 for every rank");
    } else if (name == "A") {
      if (value.empty() || value.find_first_of(" \t;") != std::string::npos)
        return badValue("an algorithm name like ring, tree or direct");
      o.algo = value;
    } else if (name == "G") {
      if (value != "host" && value != "emu" && value != "cuda") return badValue("host, emu or cuda");
      o.buffers = value;
    } else if (name == "bind") {
      if (value == "auto") o.bind = BindPolicy::Auto;
      else if (value == "core") o.bind = BindPolicy::Core;
      else if (value == "none") o.bind = BindPolicy::None;
      else return badValue("auto, core or none");
    } else if (name == "np") {
      if (!parseInt(value, 1, 1 << 16, &o.np)) return badValue("an integer >= 1");
    } else if (name == "g" || name == "t") {
      int n = 0;
      if (!parseInt(value, 1, INT_MAX, &n)) return badValue("1");
      if (n != 1)
        return fail(shown + " " + value + " is not supported: Chorus runs one rank per process "
                    "(use -np or a launcher for more ranks)");
    } else if (name == "d") {
      o.types.clear();
      if (value == "all") {
        for (const auto& t : kTypes) o.types.push_back(t.type);
      } else {
        chorusDataType_t t;
        if (!parseType(value, &t))
          return badValue("int8 uint8 int32 uint32 int64 uint64 half bfloat16 float double f8e4m3 f8e5m2 all");
        o.types.push_back(t);
      }
    } else if (name == "o") {
      o.ops.clear();
      if (value == "all") {
        for (int op = 0; op < chorusNumOps; ++op) o.ops.push_back(static_cast<chorusRedOp_t>(op));
      } else {
        chorusRedOp_t op;
        if (!parseOp(value, &op)) return badValue("sum prod max min avg all");
        o.ops.push_back(op);
      }
    } else if (name == "J") {
      if (value.empty()) return badValue("a file name");
      o.jsonPath = value;
    }
  }
  if (sawStepBytes && sawStepFactor)
    return fail("-i (stepbytes) and -f (stepfactor) are mutually exclusive");
  if (o.minBytes > o.maxBytes)
    return fail(format("minbytes (%zu) is larger than maxbytes (%zu)", o.minBytes, o.maxBytes));
  if (o.stepFactor > 0 && o.minBytes == 0)
    return fail("-b must be > 0 with -f (0 times a factor never grows)");
  // A sweep must end: "-b 8 -e 9999999999G" with the default -i 1M would list 10^13 sizes
  // (found by tests/fuzz/fuzz_perf_args: the list alone exhausted memory).
  size_t sizes = 1;
  for (size_t s = o.minBytes; sizes <= kMaxSweepSizes && (s = sizeAfter(o, s)) != 0;) ++sizes;
  if (sizes > kMaxSweepSizes)
    return fail(format("-b %zu -e %zu %s %s make a sweep of more than %zu sizes", o.minBytes, o.maxBytes,
                       o.stepFactor > 1 ? "-f" : "-i",
                       o.stepFactor > 1 ? std::to_string(o.stepFactor).c_str() : std::to_string(o.stepBytes).c_str(),
                       kMaxSweepSizes));
  out.ok = true;
  return out;
}

std::vector<size_t> sizeLadder(const Options& o) {
  std::vector<size_t> sizes;
  if (o.minBytes > o.maxBytes) return sizes;
  size_t s = o.minBytes;
  do {
    sizes.push_back(s);
    s = sizeAfter(o, s);
  } while (s != 0 && sizes.size() < kMaxSweepSizes);
  return sizes;
}

// ---------------------------------------------------------------------------------------------
// Types, ops, bandwidth
// ---------------------------------------------------------------------------------------------

size_t typeSize(chorusDataType_t type) {
  for (const auto& t : kTypes)
    if (t.type == type) return t.size;
  return 0;
}

const char* typeName(chorusDataType_t type) {
  for (const auto& t : kTypes)
    if (t.type == type) return t.name;
  return "?";
}

const char* opName(chorusRedOp_t op) {
  return (op >= 0 && op < chorusNumOps) ? kOpNames[op] : "?";
}

bool parseType(const std::string& name, chorusDataType_t* type) {
  static const struct {
    const char* alias;
    chorusDataType_t type;
  } kAliases[] = {{"float16", chorusFloat16},       {"float32", chorusFloat32},       {"float64", chorusFloat64},
                  {"bf16", chorusBfloat16},         {"float8e4m3", chorusFloat8e4m3}, {"fp8e4m3", chorusFloat8e4m3},
                  {"float8e5m2", chorusFloat8e5m2}, {"fp8e5m2", chorusFloat8e5m2}};
  for (const auto& t : kTypes)
    if (name == t.name) return *type = t.type, true;
  for (const auto& a : kAliases)
    if (name == a.alias) return *type = a.type, true;
  return false;
}

bool parseOp(const std::string& name, chorusRedOp_t* op) {
  for (int i = 0; i < chorusNumOps; ++i)
    if (name == kOpNames[i]) return *op = static_cast<chorusRedOp_t>(i), true;
  return false;
}

double algBandwidth(size_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0.0;
}


// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------
// Column layout of a row: "%12s  %12s  %8s  %6s  %6s" then, per mode, "  %7s  %6s  %6s  %6s".

namespace {
constexpr int kModeWidth = 2 + 7 + 2 + 6 + 2 + 6 + 2 + 6;

std::string prefixColumns(const char* a, const char* b, const char* c, const char* d,
                          const char* e) {
  return format("%12s  %12s  %8s  %6s  %6s", a, b, c, d, e);
}
std::string modeColumns(const char* a, const char* b, const char* c, const char* d) {
  return format("  %7s  %6s  %6s  %6s", a, b, c, d);
}
std::string centered(const char* text, int width) {
  int len = static_cast<int>(strlen(text));
  int left = std::max(0, (width - len) / 2);
  std::string s(left, ' ');
  s += text;
  s.resize(std::max<size_t>(s.size(), width), ' ');
  return s;
}
std::string titleLine(std::string line) {
  // Every title line starts with '#', like nccl-tests (the first column is right-aligned).
  if (!line.empty()) line[0] = '#';
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}
const char* averageName(int a) {
  static const char* kNames[] = {"rank0", "mean", "min", "max"};
  return (a >= 0 && a <= 3) ? kNames[a] : "?";
}
std::string jsonMode(const ModeResult& m) {
  if (m.skipped) return "null";
  return format("{\"time_us\": %s, \"algbw_GBps\": %s, \"busbw_GBps\": %s, \"wrong\": %s}",
                jsonNumber(m.timeUs).c_str(), jsonNumber(m.algBw).c_str(),
                jsonNumber(m.busBw).c_str(), m.wrong < 0 ? "null" : format("%lld", m.wrong).c_str());
}
}  // namespace

std::vector<int> allowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

std::string cpuListText(const std::vector<int>& cpus) {
  std::string s;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    s += (s.empty() ? "" : ",") + (j == i ? std::to_string(cpus[i]) : format("%d-%d", cpus[i], cpus[j]));
    i = j + 1;
  }
  return s;
}

std::vector<int> rankCpus(BindPolicy policy, int nranks, const std::vector<int>& allowed, std::string* note) {
  const int ncpus = static_cast<int>(allowed.size());
  if (policy == BindPolicy::None || ncpus == 0) {
    *note = ncpus == 0 ? "not bound (the allowed CPUs are unknown)" : "not bound (--bind none)";
    return {};
  }
  if (policy == BindPolicy::Auto && nranks > ncpus) {
    *note = format("not bound: %d ranks on %d CPUs (--bind core pins them round robin)", nranks, ncpus);
    return {};
  }
  std::vector<int> cpus(nranks);
  for (int r = 0; r < nranks; ++r) cpus[r] = allowed[r % ncpus];
  *note = format("%d ranks pinned round robin to the allowed CPUs %s (--bind %s)", nranks, cpuListText(allowed).c_str(),
                 policy == BindPolicy::Auto ? "auto" : "core");
  return cpus;
}

std::string formatTime(double us) {
  if (us >= 10000.0) return format("%7.0f", us);
  if (us >= 100.0) return format("%7.1f", us);
  return format("%7.2f", us);
}

std::string formatHeader(const std::string& commandLine, const Options& o, int nranks,
                         const std::vector<RankPlace>& places) {
  std::string h = "# Command: " + commandLine + "\n";
  std::string step = o.stepFactor > 1 ? format("%d(factor)", o.stepFactor)
                                      : format("%zu(bytes)", o.stepBytes);
  h += format("# nranks %d minBytes %zu maxBytes %zu step: %s warmup iters: %d iters: %d "
              "agg iters: %d validation: %d blocking: %d average: %d(%s) cycles: %d\n",
              nranks, o.minBytes, o.maxBytes, step.c_str(), o.warmup, o.iters, o.aggIters,
              o.check, o.blocking, o.average, averageName(o.average), o.runCycles);
  if (o.buffers != "host") h += "# Buffers: " + o.buffers + " device memory (staged through pinned host memory)\n";
  h += "#\n# Using ranks\n";
  for (const auto& p : places)
    h += format("#  Rank %2d Pid %6ld on %10s device cpu%s%s\n", p.rank, p.pid, p.host.c_str(),
                p.cpus.empty() ? "" : ", cpus ", p.cpus.c_str());
  h += "#\n";
  std::string blank(prefixColumns("", "", "", "", "").size(), ' ');
  h += titleLine(blank + "  " + centered("out-of-place", kModeWidth - 2) + "  " +
                 centered("in-place", kModeWidth - 2));
  h += titleLine(prefixColumns("size", "count", "type", "redop", "root") +
                 modeColumns("time", "algbw", "busbw", "#wrong") +
                 modeColumns("time", "algbw", "busbw", "#wrong"));
  h += titleLine(prefixColumns("(B)", "(elements)", "", "", "") +
                 modeColumns("(us)", "(GB/s)", "(GB/s)", "") + modeColumns("(us)", "(GB/s)", "(GB/s)", ""));
  return h;
}

std::string formatRow(const Row& r) {
  std::string s = format("%12zu  %12zu  %8s  %6s  %6d", r.bytes, r.count, typeName(r.type),
                         r.hasOp ? opName(r.op) : "none", r.root);
  for (const ModeResult* m : {&r.outOfPlace, &r.inPlace}) {
    if (m->skipped) {
      s += modeColumns("N/A", "N/A", "N/A", "N/A");
      continue;
    }
    std::string wrong = m->wrong < 0 ? "N/A" : format("%lld", m->wrong);
    s += format("  %7s  %6.2f  %6.2f  %6s", formatTime(m->timeUs).c_str(), m->algBw, m->busBw,
                wrong.c_str());
  }
  return s;
}

double averageBusBandwidth(const std::vector<Row>& rows) {
  double sum = 0;
  size_t modes = 0;
  for (const auto& r : rows)
    for (const ModeResult* m : {&r.outOfPlace, &r.inPlace})
      if (!m->skipped) sum += m->busBw, ++modes;
  return modes ? sum / static_cast<double>(modes) : 0.0;
}

long long totalWrong(const std::vector<Row>& rows) {
  long long n = 0;
  for (const auto& r : rows) n += std::max(0LL, r.outOfPlace.wrong) + std::max(0LL, r.inPlace.wrong);
  return n;
}

std::string formatFooter(const std::vector<Row>& rows) {
  long long wrong = totalWrong(rows);
  return format("# Out of bounds values : %lld %s\n# Avg bus bandwidth    : %g\n#\n", wrong,
                wrong ? "FAILED" : "OK", averageBusBandwidth(rows));
}

std::string formatJson(const std::string& commandLine, const Options& o, int nranks,
                       const std::vector<RankPlace>& places, const std::vector<Row>& rows,
                       const std::string& error, PerfColl coll) {
  const CollInfo& info = collInfo(coll);
  std::string j = format("{\n  \"tool\": \"%s\",\n  \"collective\": \"%s\",\n", info.tool, info.name);
  j += "  \"command\": " + jsonString(commandLine) + ",\n";
  j += format("  \"nranks\": %d,\n", nranks);
  j += format("  \"options\": {\"minbytes\": %zu, \"maxbytes\": %zu, \"stepbytes\": %zu, "
              "\"stepfactor\": %d, \"iters\": %d, \"warmup_iters\": %d, \"agg_iters\": %d, "
              "\"check\": %d, \"average\": \"%s\", \"blocking\": %d, \"run_cycles\": %d, \"root\": %d, "
              "\"algo\": ",
              o.minBytes, o.maxBytes, o.stepBytes, o.stepFactor, o.iters, o.warmup, o.aggIters,
              o.check, averageName(o.average), o.blocking, o.runCycles, o.root);
  j += (o.algo.empty() ? "null" : jsonString(o.algo)) + ", \"buffers\": " + jsonString(o.buffers) + "},\n";
  j += "  \"ranks\": [";
  for (size_t i = 0; i < places.size(); ++i)
    j += format("%s{\"rank\": %d, \"pid\": %ld, \"host\": ", i ? ", " : "", places[i].rank,
                places[i].pid) + jsonString(places[i].host) + ", \"cpus\": " + jsonString(places[i].cpus) + "}";
  j += "],\n  \"results\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    j += format("%s\n    {\"size\": %zu, \"count\": %zu, \"type\": \"%s\", \"redop\": \"%s\", "
                "\"root\": %d,\n     \"out_of_place\": ",
                i ? "," : "", r.bytes, r.count, typeName(r.type), r.hasOp ? opName(r.op) : "none", r.root);
    j += jsonMode(r.outOfPlace) + ",\n     \"in_place\": " + jsonMode(r.inPlace) + "}";
  }
  j += rows.empty() ? "],\n" : "\n  ],\n";
  j += format("  \"out_of_bounds\": %lld,\n  \"avg_busbw_GBps\": %s,\n", totalWrong(rows),
              jsonNumber(averageBusBandwidth(rows)).c_str());
  j += "  \"error\": " + jsonString(error) + ",\n";
  j += format("  \"ok\": %s\n}\n", (error.empty() && totalWrong(rows) == 0) ? "true" : "false");
  return j;
}

}  // namespace chorus::perf
