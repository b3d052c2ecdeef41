// Unit tests of perf/perf_common: the parts of the perf tools that need no communicator
// (arguments, sizes and bus factors, output, data patterns and every collective's checker).
#include "../../perf/perf_common.h"
#include "fixtures/coll_check.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace chorus::perf {
namespace {

ParseOutcome parse(std::vector<std::string> args) {
  args.insert(args.begin(), "all_reduce_perf");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parseArgs(static_cast<int>(argv.size()), argv.data());
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Sets (or unsets, with nullptr) an environment variable until the end of the scope.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old, had_ = true;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~EnvVar() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

TEST(PerfArgs, DefaultsAreNcclTests) {
  ParseOutcome p = parse({});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.opts.minBytes, 32u << 20);
  EXPECT_EQ(p.opts.maxBytes, 32u << 20);
  EXPECT_EQ(p.opts.iters, 20);
  EXPECT_EQ(p.opts.warmup, 5);
  EXPECT_EQ(p.opts.check, 1);
  EXPECT_EQ(p.opts.average, 1);
  EXPECT_EQ(p.opts.blocking, 0);
  EXPECT_EQ(p.opts.np, 0);
  ASSERT_EQ(p.opts.types.size(), 1u);
  EXPECT_EQ(p.opts.types[0], chorusFloat32);
  ASSERT_EQ(p.opts.ops.size(), 1u);
  EXPECT_EQ(p.opts.ops[0], chorusSum);
}

TEST(PerfArgs, EveryFlag) {
  ParseOutcome p = parse({"-b", "8", "-e", "64M", "-f", "4", "-n", "7", "-w", "2", "-c", "0",
                          "-d", "bfloat16", "-o", "max", "-a", "3", "-z", "1", "-m", "2", "-N",
                          "3", "-np", "4", "-J", "/tmp/x.json", "-g", "1", "-t", "1"});
  ASSERT_TRUE(p.ok) << p.error;
  const Options& o = p.opts;
  EXPECT_EQ(o.minBytes, 8u);
  EXPECT_EQ(o.maxBytes, 64u << 20);
  EXPECT_EQ(o.stepFactor, 4);
  EXPECT_EQ(o.iters, 7);
  EXPECT_EQ(o.warmup, 2);
  EXPECT_EQ(o.check, 0);
  EXPECT_EQ(o.types, std::vector<chorusDataType_t>{chorusBfloat16});
  EXPECT_EQ(o.ops, std::vector<chorusRedOp_t>{chorusMax});
  EXPECT_EQ(o.average, 3);
  EXPECT_EQ(o.blocking, 1);
  EXPECT_EQ(o.aggIters, 2);
  EXPECT_EQ(o.runCycles, 3);
  EXPECT_EQ(o.np, 4);
  EXPECT_EQ(o.jsonPath, "/tmp/x.json");
  EXPECT_EQ(o.root, 0);
  EXPECT_TRUE(o.algo.empty());
}

TEST(PerfArgs, RootAndAlgo) {
  ParseOutcome p = parse({"-r", "3", "-A", "bruck"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.opts.root, 3);
  EXPECT_EQ(p.opts.algo, "bruck");
  p = parse({"--root=-1", "--algo", "0-64K:tree,64K-inf:ring"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.opts.root, -1);
  EXPECT_EQ(p.opts.algo, "0-64K:tree,64K-inf:ring");
  for (const char* bad : {"-2", "x", ""}) {
    p = parse({"-r", bad});
    EXPECT_FALSE(p.ok) << bad;
    EXPECT_NE(p.error.find("-r"), std::string::npos) << p.error;
  }
  for (const char* bad : {"", "ring;tree", "a b"}) {
    p = parse({"-A", bad});
    EXPECT_FALSE(p.ok) << bad;
    EXPECT_NE(p.error.find("-A"), std::string::npos) << p.error;
  }
}

TEST(PerfArgs, LongAndAttachedForms) {
  ParseOutcome p = parse({"--minbytes=1K", "--maxbytes", "4K", "-i1K", "--datatype=float16",
                          "--op", "avg", "--np", "2"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.opts.minBytes, 1024u);
  EXPECT_EQ(p.opts.maxBytes, 4096u);
  EXPECT_EQ(p.opts.stepBytes, 1024u);
  EXPECT_EQ(p.opts.types, std::vector<chorusDataType_t>{chorusFloat16});
  EXPECT_EQ(p.opts.ops, std::vector<chorusRedOp_t>{chorusAvg});
  EXPECT_EQ(p.opts.np, 2);
}

TEST(PerfArgs, AllTypesAndOps) {
  ParseOutcome p = parse({"-d", "all", "-o", "all"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.opts.types.size(), static_cast<size_t>(chorusNumTypes));
  EXPECT_EQ(p.opts.ops.size(), static_cast<size_t>(chorusNumOps));
  for (const char* alias : {"float32", "float64", "float16", "half", "double", "uint64"})
    EXPECT_TRUE(parse({"-d", alias}).ok) << alias;
  // fp8: nccl-tests' names and the library's.
  const std::pair<const char*, chorusDataType_t> fp8[] = {{"f8e4m3", chorusFloat8e4m3}, {"float8e4m3", chorusFloat8e4m3},
                                                          {"f8e5m2", chorusFloat8e5m2}, {"fp8e5m2", chorusFloat8e5m2}};
  for (auto [name, type] : fp8) {
    ParseOutcome f = parse({"-d", name});
    ASSERT_TRUE(f.ok) << name;
    EXPECT_EQ(f.opts.types, std::vector<chorusDataType_t>{type}) << name;
  }
  EXPECT_STREQ(typeName(chorusFloat8e4m3), "f8e4m3");
  EXPECT_STREQ(typeName(chorusFloat8e5m2), "f8e5m2");
  EXPECT_EQ(typeSize(chorusFloat8e4m3), 1u);
  EXPECT_EQ(typeSize(chorusFloat8e5m2), 1u);
}

TEST(PerfArgs, BadInputIsAnErrorNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    const char* mentions;
  } cases[] = {
      {{"-x"}, "-x"},
      {{"--bogus"}, "--bogus"},
      {{"-b"}, "-b"},
      {{"-b", "12x"}, "-b"},
      {{"-e", "-5"}, "-e"},
      {{"-b", "1T"}, "-b"},
      {{"-n", "0"}, "-n"},
      {{"-n", "ten"}, "-n"},
      {{"-w", "-1"}, "-w"},
      {{"-a", "4"}, "-a"},
      {{"-z", "2"}, "-z"},
      {{"-f", "1"}, "-f"},
      {{"-f", "4", "-i", "1M"}, "mutually exclusive"},
      {{"-b", "2M", "-e", "1M"}, "larger"},
      {{"-d", "float8"}, "-d"},
      {{"-o", "xor"}, "-o"},
      {{"-g", "2"}, "not supported"},
      {{"-t", "4"}, "not supported"},
      {{"-np", "0"}, "-np"},
      {{"-i", "0"}, "-i"},
      {{"stray"}, "stray"},
  };
  for (const auto& c : cases) {
    ParseOutcome p = parse(c.args);
    EXPECT_FALSE(p.ok) << c.args[0];
    EXPECT_FALSE(p.help);
    EXPECT_NE(p.error.find(c.mentions), std::string::npos) << p.error;
  }
}

TEST(PerfArgs, Help) {
  EXPECT_TRUE(parse({"-h"}).help);
  EXPECT_TRUE(parse({"--help"}).help);
  const std::string u = usage("all_reduce_perf");
  for (const char* flag : {"-b", "-e", "-i", "-f", "-n", "-w", "-c", "-d", "-o", "-a", "-z", "-m",
                           "-N", "-np", "-J", "-A", "-h"})
    EXPECT_NE(u.find(std::string("    ") + flag), std::string::npos) << flag;
  EXPECT_EQ(u.find("    -r"), std::string::npos);  // all-reduce has no root
  const std::string b = usage("broadcast_perf", PerfColl::Broadcast);
  EXPECT_NE(b.find("    -r"), std::string::npos) << b;
  EXPECT_NE(b.find("CHORUS_ALGO=broadcast:"), std::string::npos) << b;
  EXPECT_NE(usage("x", PerfColl::AllGather).find("ignored"), std::string::npos);  // -o
}

TEST(PerfArgs, Sizes) {
  size_t b = 0;
  EXPECT_TRUE(parseSize("8", &b) && b == 8);
  EXPECT_TRUE(parseSize("4K", &b) && b == 4096);
  EXPECT_TRUE(parseSize("4k", &b) && b == 4096);
  EXPECT_TRUE(parseSize("64KiB", &b) && b == 65536);
  EXPECT_TRUE(parseSize("1MB", &b) && b == (1u << 20));
  EXPECT_TRUE(parseSize("2G", &b) && b == (2ull << 30));
  EXPECT_TRUE(parseSize("0", &b) && b == 0);
  for (const char* bad : {"", "K", "1.5M", "-1", "1T", "1Mx", "99999999999999999999G"})
    EXPECT_FALSE(parseSize(bad, &b)) << bad;
}

TEST(PerfArgs, LadderByFactorAndByStep) {
  ParseOutcome p = parse({"-b", "8", "-e", "64M", "-f", "4"});
  ASSERT_TRUE(p.ok);
  std::vector<size_t> s = sizeLadder(p.opts);
  ASSERT_EQ(s.size(), 12u);  // 8, 32, 128, ..., 32M (x4 up to <= 64M)
  EXPECT_EQ(s.front(), 8u);
  EXPECT_EQ(s.back(), 32u << 20);
  for (size_t i = 1; i < s.size(); ++i) EXPECT_EQ(s[i], s[i - 1] * 4);

  p = parse({"-b", "1K", "-e", "4K", "-i", "1K"});
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(sizeLadder(p.opts), (std::vector<size_t>{1024, 2048, 3072, 4096}));

  EXPECT_EQ(sizeLadder(parse({}).opts), std::vector<size_t>{32u << 20});

  // Growth that would pass SIZE_MAX ends the ladder instead of wrapping around.
  Options o;
  o.minBytes = 1;
  o.maxBytes = SIZE_MAX;
  o.stepFactor = 2;
  EXPECT_EQ(sizeLadder(o).size(), 64u);
}

// ---------------------------------------------------------------------------------------------
// Bandwidth and output
// ---------------------------------------------------------------------------------------------

TEST(PerfOutput, Bandwidth) {
  EXPECT_DOUBLE_EQ(algBandwidth(1000000000, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(algBandwidth(64 << 20, 0.01), 6.7108864);
}

// ---------------------------------------------------------------------------------------------
// Collectives: names, bus factors, sizes
// ---------------------------------------------------------------------------------------------

constexpr PerfColl kAllColls[] = {PerfColl::AllReduce, PerfColl::AllGather, PerfColl::Broadcast,
                                  PerfColl::Reduce,    PerfColl::ReduceScatter, PerfColl::AlltoAll,
                                  PerfColl::Gather,    PerfColl::Scatter,   PerfColl::SendRecv};

TEST(PerfColls, NamesFindTheirCollective) {
  const std::pair<const char*, PerfColl> names[] = {
      {"all_reduce_perf", PerfColl::AllReduce},     {"/usr/bin/all_gather_perf", PerfColl::AllGather},
      {"./broadcast_perf", PerfColl::Broadcast},    {"reduce_perf", PerfColl::Reduce},
      {"reduce_scatter_perf", PerfColl::ReduceScatter}, {"alltoall_perf_mpi", PerfColl::AlltoAll},
      {"gather_perf", PerfColl::Gather},            {"scatter_perf", PerfColl::Scatter},
      {"sendrecv_perf", PerfColl::SendRecv},        {"allgather", PerfColl::AllGather},
      {"reducescatter", PerfColl::ReduceScatter}};
  for (auto [name, want] : names) {
    PerfColl got = PerfColl::kCount;
    ASSERT_TRUE(findColl(name, &got)) << name;
    EXPECT_EQ(got, want) << name;
  }
  PerfColl got;
  for (const char* bad : {"", "perf", "all_reduce", "reduce_perfx", "bogus_perf"}) EXPECT_FALSE(findColl(bad, &got)) << bad;
  for (PerfColl c : kAllColls) {
    EXPECT_EQ(collInfo(c).coll, c);
    EXPECT_TRUE(findColl(collInfo(c).tool, &got) && got == c) << collInfo(c).tool;
  }
  EXPECT_TRUE(collInfo(PerfColl::Reduce).reduction && collInfo(PerfColl::Reduce).rooted);
  EXPECT_FALSE(collInfo(PerfColl::AlltoAll).inPlace);
  EXPECT_FALSE(collInfo(PerfColl::SendRecv).inPlace);
  EXPECT_TRUE(collInfo(PerfColl::Scatter).rooted && !collInfo(PerfColl::Scatter).reduction);
}

// nccl-tests' PERFORMANCE.md: busbw = algbw * factor.
TEST(PerfColls, BusFactors) {
  for (int n : {1, 2, 3, 4, 8}) {
    const double ring = double(n - 1) / n;
    EXPECT_DOUBLE_EQ(busFactor(PerfColl::AllReduce, n), 2 * ring) << n;
    for (PerfColl c : {PerfColl::AllGather, PerfColl::ReduceScatter, PerfColl::AlltoAll, PerfColl::Gather, PerfColl::Scatter})
      EXPECT_DOUBLE_EQ(busFactor(c, n), ring) << collInfo(c).tool << " " << n;
    for (PerfColl c : {PerfColl::Broadcast, PerfColl::Reduce, PerfColl::SendRecv})
      EXPECT_DOUBLE_EQ(busFactor(c, n), 1.0) << collInfo(c).tool << " " << n;
  }
  EXPECT_DOUBLE_EQ(busFactor(PerfColl::AllReduce, 4) * algBandwidth(2000000000, 1.0), 3.0);
  EXPECT_EQ(busFactor(PerfColl::AllGather, 0), 0.0);
}

// A size S is the whole buffer (nccl-tests): 1000 floats over 3 ranks.
TEST(PerfColls, SizesFollowNcclTests) {
  struct Case {
    PerfColl coll;
    size_t count, send, recv, sendInPlace, recvInPlace;
  } cases[] = {
      {PerfColl::AllReduce, 1000, 1000, 1000, 0, 0},  {PerfColl::Broadcast, 1000, 1000, 1000, 0, 0},
      {PerfColl::Reduce, 1000, 1000, 1000, 0, 0},     {PerfColl::SendRecv, 1000, 1000, 1000, 0, 0},
      {PerfColl::AllGather, 333, 333, 999, 333, 0},   {PerfColl::Gather, 333, 333, 999, 333, 0},
      {PerfColl::ReduceScatter, 333, 999, 333, 0, 333}, {PerfColl::Scatter, 333, 999, 333, 0, 333},
      {PerfColl::AlltoAll, 333, 999, 999, 0, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(collInfo(c.coll).tool);
    const CollSizes s = collSizes(c.coll, 1000, 3);
    EXPECT_EQ(s.count, c.count);
    EXPECT_EQ(s.sendCount, c.send);
    EXPECT_EQ(s.recvCount, c.recv);
    EXPECT_EQ(s.sendInPlace, c.sendInPlace);
    EXPECT_EQ(s.recvInPlace, c.recvInPlace);
    EXPECT_EQ(s.bytes(4), std::max(c.send, c.recv) * 4);
    EXPECT_EQ(sendElems(c.coll, s.count, 3), s.sendCount);
    EXPECT_EQ(recvElems(c.coll, s.count, 3), s.recvCount);
  }
  EXPECT_EQ(collSizes(PerfColl::AllGather, 2, 3).count, 0u);  // less than one element per rank
  EXPECT_EQ(collSizes(PerfColl::AllGather, 12, 1).count, 12u);
}

TEST(PerfColls, WhichRanksUseWhichBuffer) {
  for (int rank : {0, 1, 2}) {
    const bool root = rank == 1;
    EXPECT_EQ(readsSend(PerfColl::Broadcast, rank, 1), root);
    EXPECT_EQ(readsSend(PerfColl::Scatter, rank, 1), root);
    EXPECT_TRUE(writesRecv(PerfColl::Broadcast, rank, 1));
    EXPECT_EQ(writesRecv(PerfColl::Reduce, rank, 1), root);
    EXPECT_EQ(writesRecv(PerfColl::Gather, rank, 1), root);
    EXPECT_TRUE(readsSend(PerfColl::Gather, rank, 1));
    for (PerfColl c : {PerfColl::AllReduce, PerfColl::AllGather, PerfColl::ReduceScatter, PerfColl::AlltoAll, PerfColl::SendRecv})
      EXPECT_TRUE(readsSend(c, rank, 1) && writesRecv(c, rank, 1));
  }
}

TEST(PerfOutput, TimeFormat) {
  EXPECT_EQ(formatTime(12.345), "  12.35");
  EXPECT_EQ(formatTime(123.45), "  123.5");
  EXPECT_EQ(formatTime(12345.6), "  12346");
}

Row sampleRow() {
  Row r;
  r.bytes = 1048576;
  r.count = 262144;
  r.outOfPlace = {100.0, 10.48576, 10.48576, 0};
  r.inPlace = {50.0, 20.97152, 20.97152, 3};
  return r;
}

TEST(PerfOutput, HeaderColumnsAndRowsLineUp) {
  Options o;
  std::vector<RankPlace> places{{0, 123, "hostA"}, {1, 456, "hostB"}};
  const std::string h = formatHeader("all_reduce_perf -np 2", o, 2, places);
  std::istringstream in(h);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  for (const auto& l : lines) EXPECT_EQ(l[0], '#') << l;
  EXPECT_NE(h.find("all_reduce_perf -np 2"), std::string::npos);
  EXPECT_NE(h.find("Rank  1 Pid    456 on"), std::string::npos);
  const std::vector<std::string> names{"#", "size", "count", "type", "redop", "root", "time",
                                       "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong"};
  const std::string& titles = lines[lines.size() - 2];
  std::vector<std::string> got = words(titles);
  got[0] = got[0] == "#" ? "#" : got[0];
  EXPECT_EQ(got, names) << titles;
  EXPECT_NE(lines[lines.size() - 3].find("out-of-place"), std::string::npos);
  EXPECT_NE(lines[lines.size() - 3].find("in-place"), std::string::npos);

  const std::string row = formatRow(sampleRow());
  EXPECT_EQ(words(row), (std::vector<std::string>{"1048576", "262144", "float", "sum", "-1",
                                                  "100.0", "10.49", "10.49", "0", "50.00",
                                                  "20.97", "20.97", "3"}));
  // Each value ends where its title ends.
  for (const char* t : {"count", "root", "#wrong"}) {
    size_t titleEnd = titles.find(t) + strlen(t);
    EXPECT_EQ(row[titleEnd - 1] != ' ', true) << t;
    EXPECT_TRUE(titleEnd == row.size() || row[titleEnd] == ' ') << t;
  }
}

TEST(PerfOutput, UncheckedIsNA) {
  Row r = sampleRow();
  r.outOfPlace.wrong = r.inPlace.wrong = -1;
  std::vector<std::string> w = words(formatRow(r));
  EXPECT_EQ(w[8], "N/A");
  EXPECT_EQ(w[12], "N/A");
}

// A collective without an op says "none"; a mode that does not exist is N/A in every column and
// counts neither in the average nor as wrong.
TEST(PerfOutput, NoOpAndSkippedMode) {
  Row r = sampleRow();
  r.hasOp = false;
  r.root = 2;
  r.inPlace = ModeResult{};
  r.inPlace.skipped = true;
  const std::string row = formatRow(r);
  EXPECT_EQ(words(row), (std::vector<std::string>{"1048576", "262144", "float", "none", "2", "100.0", "10.49", "10.49", "0",
                                                  "N/A", "N/A", "N/A", "N/A"}));
  const std::string header = formatHeader("x", Options{}, 2, {});
  const size_t titles = header.rfind("#wrong");  // the in-place #wrong title: the last column
  EXPECT_EQ(row.size(), titles + 6 - (header.rfind('\n', titles) + 1)) << row;
  EXPECT_DOUBLE_EQ(averageBusBandwidth({r}), 10.48576);
  EXPECT_EQ(totalWrong({r}), 0);
  EXPECT_DOUBLE_EQ(averageBusBandwidth({}), 0.0);
}

TEST(PerfOutput, FooterAveragesBothModes) {
  std::vector<Row> rows{sampleRow(), sampleRow()};
  rows[1].outOfPlace.busBw = 1.0;
  rows[1].inPlace.busBw = 3.0;
  rows[1].inPlace.wrong = 0;
  EXPECT_EQ(totalWrong(rows), 3);
  EXPECT_NEAR(averageBusBandwidth(rows), (10.48576 + 20.97152 + 1.0 + 3.0) / 4, 1e-12);
  const std::string f = formatFooter(rows);
  EXPECT_NE(f.find("# Out of bounds values : 3 FAILED"), std::string::npos) << f;
  EXPECT_NE(f.find("# Avg bus bandwidth    : "), std::string::npos) << f;
  rows[0].inPlace.wrong = 0;
  EXPECT_NE(formatFooter(rows).find("# Out of bounds values : 0 OK"), std::string::npos);
}

TEST(PerfOutput, Json) {
  Options o;
  std::vector<Row> rows{sampleRow()};
  const std::string j = formatJson("all_reduce_perf -J \"x\"", o, 2, {{0, 1, "h"}}, rows, "");
  for (const char* key : {"\"nranks\": 2", "\"size\": 1048576", "\"out_of_place\"", "\"in_place\"",
                          "\"busbw_GBps\"", "\"wrong\": 3", "\"ok\": false", "\\\"x\\\""})
    EXPECT_NE(j.find(key), std::string::npos) << key << "\n" << j;
  rows[0].inPlace.wrong = 0;
  EXPECT_NE(formatJson("c", o, 2, {}, rows, "").find("\"ok\": true"), std::string::npos);
  EXPECT_NE(formatJson("c", o, 2, {}, rows, "boom").find("\"ok\": false"), std::string::npos);
  EXPECT_NE(j.find("\"tool\": \"all_reduce_perf\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"algo\": null"), std::string::npos) << j;
}

TEST(PerfOutput, JsonNamesTheToolAlgoRootAndSkippedModes) {
  Options o;
  o.algo = "bruck";
  o.root = -1;
  Row r = sampleRow();
  r.hasOp = false;
  r.root = 1;
  r.inPlace = ModeResult{};
  r.inPlace.skipped = true;
  const std::string j = formatJson("alltoall_perf -A bruck", o, 4, {}, {r}, "", PerfColl::AlltoAll);
  for (const char* key : {"\"tool\": \"alltoall_perf\"", "\"collective\": \"alltoall\"", "\"algo\": \"bruck\"",
                          "\"root\": -1", "\"redop\": \"none\"", "\"root\": 1", "\"in_place\": null", "\"ok\": true"})
    EXPECT_NE(j.find(key), std::string::npos) << key << "\n" << j;
}

// ---------------------------------------------------------------------------------------------
// fp16 / bf16
// ---------------------------------------------------------------------------------------------

TEST(PerfHalf, Fp8Conversions) {
  for (int v = -16; v <= 16; ++v)
    ASSERT_EQ(fp8e4m3ToFloat(floatToFp8e4m3(static_cast<float>(v))), static_cast<float>(v)) << v;
  for (int v = -8; v <= 8; ++v)
    ASSERT_EQ(fp8e5m2ToFloat(floatToFp8e5m2(static_cast<float>(v))), static_cast<float>(v)) << v;
  for (int k = 0; k <= 8; ++k) ASSERT_EQ(fp8e4m3ToFloat(floatToFp8e4m3(std::ldexp(-1.0f, k))), std::ldexp(-1.0f, k)) << k;
  for (int k = 0; k <= 15; ++k) ASSERT_EQ(fp8e5m2ToFloat(floatToFp8e5m2(std::ldexp(1.0f, k))), std::ldexp(1.0f, k)) << k;
  EXPECT_EQ(floatToFp8e4m3(17.0f), floatToFp8e4m3(16.0f));  // tie to even
  EXPECT_EQ(fp8e4m3ToFloat(floatToFp8e4m3(1000.0f)), 448.0f);  // E4M3 saturates
  EXPECT_TRUE(std::isinf(fp8e5m2ToFloat(floatToFp8e5m2(1e6f))));  // E5M2 overflows to infinity
  EXPECT_TRUE(std::isnan(fp8e4m3ToFloat(floatToFp8e4m3(NAN))));
}

TEST(PerfHalf, Conversions) {
  for (int v = -2048; v <= 2048; ++v)
    ASSERT_EQ(halfToFloat(floatToHalf(static_cast<float>(v))), static_cast<float>(v)) << v;
  for (int v = -256; v <= 256; ++v)
    ASSERT_EQ(bfloat16ToFloat(floatToBfloat16(static_cast<float>(v))), static_cast<float>(v)) << v;
  EXPECT_EQ(floatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(floatToHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7C00);  // ties to even -> infinity
  EXPECT_EQ(floatToHalf(2049.0f), floatToHalf(2048.0f));  // tie rounds to even
  EXPECT_EQ(floatToHalf(2051.0f), floatToHalf(2052.0f));
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: 0
  EXPECT_EQ(floatToHalf(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(halfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(floatToHalf(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(halfToFloat(floatToHalf(NAN))));
  EXPECT_TRUE(std::isinf(halfToFloat(floatToHalf(INFINITY))));
  EXPECT_EQ(floatToBfloat16(1.0f + std::ldexp(1.0f, -8)), floatToBfloat16(1.0f));  // tie, even
  EXPECT_EQ(bfloat16ToFloat(floatToBfloat16(1.0f + 3 * std::ldexp(1.0f, -8))),
            1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(bfloat16ToFloat(floatToBfloat16(NAN))));
}

// ---------------------------------------------------------------------------------------------
// Data pattern and checker
// ---------------------------------------------------------------------------------------------

// Typed element access: the fixtures' reference conversions (independent of the library's).
using test::loadValue;
using test::storeValue;

bool isFloat(chorusDataType_t t) {
  return t == chorusFloat16 || t == chorusFloat32 || t == chorusFloat64 || t == chorusBfloat16 || t == chorusFloat8e4m3 ||
         t == chorusFloat8e5m2;
}

bool isFp8(chorusDataType_t t) { return t == chorusFloat8e4m3 || t == chorusFloat8e5m2; }

// Reduces n ranks' filled buffers the way a library would: element by element, in the type,
// rank order given by `order`, rounding (floats) or wrapping (integers) after every step.
// Reduces the n ranks' buffers element by element the way a library would: in rank order (or
// reversed), rounding (floats) or wrapping (integers) to the type after every step; Avg divides
// once at the end.
std::vector<char> reduceInputs(const std::vector<std::vector<char>>& in, chorusDataType_t t, chorusRedOp_t op, size_t elems,
                               bool reverse = false) {
  const int n = static_cast<int>(in.size());
  std::vector<char> out(elems * typeSize(t));
  for (size_t i = 0; i < elems; ++i) {
    double acc = loadValue(in[reverse ? n - 1 : 0].data(), t, i);
    for (int k = 1; k < n; ++k) {
      const double v = loadValue(in[reverse ? n - 1 - k : k].data(), t, i);
      switch (op) {
        case chorusSum: case chorusAvg: acc += v; break;
        case chorusProd: acc *= v; break;
        case chorusMax: acc = std::max(acc, v); break;
        default: acc = std::min(acc, v); break;
      }
      storeValue(out.data(), t, i, acc);  // round / wrap to the type after every step
      acc = loadValue(out.data(), t, i);
    }
    if (op == chorusAvg) acc = isFloat(t) ? acc / n : std::trunc(acc / n);
    storeValue(out.data(), t, i, acc);
  }
  return out;
}

// An all-reduce of n ranks' filled buffers.
std::vector<char> simulateAllReduce(chorusDataType_t t, chorusRedOp_t op, int n, size_t count,
                                    uint32_t seed, bool reverse) {
  std::vector<std::vector<char>> in(n, std::vector<char>(count * typeSize(t)));
  for (int r = 0; r < n; ++r) fillInput(in[r].data(), count, t, op, r, n, seed);
  return reduceInputs(in, t, op, count, reverse);
}

TEST(PerfCheck, CorrectResultsCountZeroInAnyOrder) {
  for (int t = 0; t < chorusNumTypes; ++t)
    for (int o = 0; o < chorusNumOps; ++o)
      for (int n : {1, 2, 3, 4, 7, 16, 33}) {
        const auto type = static_cast<chorusDataType_t>(t);
        const auto op = static_cast<chorusRedOp_t>(o);
        for (bool reverse : {false, true}) {
          std::vector<char> out = simulateAllReduce(type, op, n, 997, 5, reverse);
          EXPECT_EQ(countWrongResult(out.data(), 997, type, op, n, 5), 0u)
              << typeName(type) << " " << opName(op) << " n=" << n << " reverse=" << reverse;
        }
      }
}

TEST(PerfCheck, ManyRanksStayExactInSmallFloats) {
  for (auto type : {chorusFloat16, chorusBfloat16, chorusFloat8e4m3, chorusFloat8e5m2})
    for (auto op : {chorusSum, chorusAvg, chorusProd})
      for (int n : {64, 300, 1000}) {
        std::vector<char> out = simulateAllReduce(type, op, n, 257, 1, false);
        EXPECT_EQ(countWrongResult(out.data(), 257, type, op, n, 1), 0u)
            << typeName(type) << " " << opName(op) << " n=" << n;
      }
}

TEST(PerfCheck, CountsCorruptedElements) {
  const size_t count = 1000;
  for (int t = 0; t < chorusNumTypes; ++t)
    for (int o = 0; o < chorusNumOps; ++o) {
      const auto type = static_cast<chorusDataType_t>(t);
      const auto op = static_cast<chorusRedOp_t>(o);
      const int n = 4;
      std::vector<char> out = simulateAllReduce(type, op, n, count, 9, false);
      ASSERT_EQ(countWrongResult(out.data(), count, type, op, n, 9), 0u);
      // Corrupt 3 elements: one off by a little, one by a lot, one NaN / bit-flipped. fp8 has
      // too few bits for +1 or +100 (they may round back to the same value): its value is
      // negated and pushed 2 away from zero, and its top exponent bit flipped.
      if (isFp8(type)) {
        const double v = loadValue(out.data(), type, 10);
        storeValue(out.data(), type, 10, -v - (v >= 0 ? 2 : -2));
        static_cast<uint8_t*>(static_cast<void*>(out.data()))[500] ^= 0x40;
      } else {
        storeValue(out.data(), type, 10, loadValue(out.data(), type, 10) + 1);
        storeValue(out.data(), type, 500, loadValue(out.data(), type, 500) + 100);
      }
      out[999 * typeSize(type) + typeSize(type) - 1] ^= 0x7F;
      EXPECT_EQ(countWrongResult(out.data(), count, type, op, n, 9), 3u)
          << typeName(type) << " " << opName(op);
      // The data of another seed, or of a missing rank, is wrong almost everywhere.
      std::vector<char> other = simulateAllReduce(type, op, n, count, 10, false);
      EXPECT_GT(countWrongResult(other.data(), count, type, op, n, 9), count / 4)
          << typeName(type) << " " << opName(op);
      std::vector<char> fewer = simulateAllReduce(type, op, n - 1, count, 9, false);
      EXPECT_GT(countWrongResult(fewer.data(), count, type, op, n, 9), count / 20)
          << typeName(type) << " " << opName(op);
    }
}

TEST(PerfCheck, AllZerosOrOwnInputIsWrong) {
  const size_t count = 4096;
  std::vector<float> buf(count, 0.0f);
  EXPECT_GT(countWrongResult(buf.data(), count, chorusFloat32, chorusSum, 2, 1), count / 2);
  fillInput(buf.data(), count, chorusFloat32, chorusSum, 0, 2, 1);  // a "reduce" that did nothing
  EXPECT_GT(countWrongResult(buf.data(), count, chorusFloat32, chorusSum, 2, 1), count / 2);
  // Ranks get different data.
  std::vector<float> r0(count), r1(count);
  fillInput(r0.data(), count, chorusFloat32, chorusSum, 0, 2, 1);
  fillInput(r1.data(), count, chorusFloat32, chorusSum, 1, 2, 1);
  size_t differ = 0;
  for (size_t i = 0; i < count; ++i) differ += r0[i] != r1[i];
  EXPECT_GT(differ, count / 2);
}

// Avg is exact too: one unit in the last place off is wrong, in every float type.
TEST(PerfCheck, AvgIsExact) {
  for (auto type : {chorusFloat16, chorusBfloat16, chorusFloat32, chorusFloat64, chorusFloat8e4m3, chorusFloat8e5m2}) {
    const size_t count = 200;
    std::vector<char> out = simulateAllReduce(type, chorusAvg, 3, count, 4, false);
    ASSERT_EQ(countWrongResult(out.data(), count, type, chorusAvg, 3, 4), 0u) << typeName(type);
    size_t nudged = 0;
    for (size_t i = 0; i < count; ++i) {
      const double v = loadValue(out.data(), type, i);
      if (v == 0) continue;
      // The next representable value towards zero: one code down (every float type here stores
      // sign-magnitude bits, little-endian, so the lowest byte holds the last mantissa bit).
      std::vector<char> one(out.begin() + i * typeSize(type), out.begin() + (i + 1) * typeSize(type));
      uint64_t bits = 0;
      memcpy(&bits, one.data(), one.size());
      --bits;
      std::vector<char> copy = out;
      memcpy(copy.data() + i * typeSize(type), &bits, one.size());
      ASSERT_EQ(countWrongResult(copy.data(), count, type, chorusAvg, 3, 4), 1u) << typeName(type) << " element " << i;
      ++nudged;
    }
    EXPECT_GT(nudged, count / 2) << typeName(type);
  }
}

TEST(PerfCheck, ChangedInput) {
  std::vector<int32_t> buf(100);
  fillInput(buf.data(), buf.size(), chorusInt32, chorusMin, 2, 4, 3);
  EXPECT_EQ(countChangedInput(buf.data(), buf.size(), chorusInt32, chorusMin, 2, 4, 3), 0u);
  buf[42] += 1;
  EXPECT_EQ(countChangedInput(buf.data(), buf.size(), chorusInt32, chorusMin, 2, 4, 3), 1u);
}

TEST(PerfCheck, ReducedValuesStayInExactRange) {
  for (int n : {2, 8, 100, 5000})
    for (size_t i = 0; i < 500; ++i) {
      EXPECT_LE(std::llabs(patternReduced(chorusBfloat16, chorusSum, n, i, 0)), 256);
      EXPECT_LE(std::llabs(patternReduced(chorusFloat16, chorusSum, n, i, 0)), 2048);
      EXPECT_LE(std::llabs(patternReduced(chorusFloat16, chorusProd, n, i, 0)), 1 << 14);
      EXPECT_LE(patternReduced(chorusInt8, chorusAvg, n, i, 0), 127);
      EXPECT_LE(std::llabs(patternReduced(chorusFloat8e4m3, chorusSum, n, i, 0)), 16);
      EXPECT_LE(std::llabs(patternReduced(chorusFloat8e5m2, chorusSum, n, i, 0)), 8);
      EXPECT_LE(std::llabs(patternReduced(chorusFloat8e4m3, chorusProd, n, i, 0)), 1 << 8);
      EXPECT_LE(std::llabs(patternReduced(chorusFloat8e5m2, chorusProd, n, i, 0)), 1 << 14);
      for (auto op : {chorusMax, chorusMin}) {
        EXPECT_LE(std::llabs(patternReduced(chorusFloat8e4m3, op, n, i, 0)), 16);
        EXPECT_LE(std::llabs(patternReduced(chorusFloat8e5m2, op, n, i, 0)), 8);
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Every collective's checker, against collectives simulated in memory
// ---------------------------------------------------------------------------------------------

CollCase collCase(PerfColl coll, chorusDataType_t t, chorusRedOp_t op, int rank, int n, int root, size_t count, uint32_t seed) {
  return CollCase{coll, t, op, rank, n, root, count, seed};
}

// Runs coll over n ranks in memory: inputs from fillCollInput, outputs (poisoned first) written
// the obvious way. Returns every rank's receive buffer.
std::vector<std::vector<char>> simulateColl(PerfColl coll, chorusDataType_t t, chorusRedOp_t op, int n, int root, size_t count,
                                            uint32_t seed) {
  const size_t ts = typeSize(t), block = count * ts;
  std::vector<std::vector<char>> in(n), out(n);
  for (int r = 0; r < n; ++r) {
    in[r].assign(sendElems(coll, count, n) * ts, static_cast<char>(kPoisonByte));
    out[r].assign(recvElems(coll, count, n) * ts, static_cast<char>(kPoisonByte));
    fillCollInput(collCase(coll, t, op, r, n, root, count, seed), in[r].data());
  }
  auto copyBlock = [&](int dstRank, size_t dstBlock, int srcRank, size_t srcBlock) {
    memcpy(out[dstRank].data() + dstBlock * block, in[srcRank].data() + srcBlock * block, block);
  };
  const bool reduction = collInfo(coll).reduction;
  const std::vector<char> red = reduction ? reduceInputs(in, t, op, sendElems(coll, count, n)) : std::vector<char>();
  for (int r = 0; r < n; ++r) {
    switch (coll) {
      case PerfColl::AllReduce: out[r] = red; break;
      case PerfColl::Reduce: if (r == root) out[r] = red; break;
      case PerfColl::ReduceScatter: memcpy(out[r].data(), red.data() + r * block, block); break;
      case PerfColl::Broadcast: copyBlock(r, 0, root, 0); break;
      case PerfColl::Scatter: copyBlock(r, 0, root, r); break;
      case PerfColl::SendRecv: copyBlock(r, 0, (r - 1 + n) % n, 0); break;
      case PerfColl::AllGather:
      case PerfColl::Gather:
        if (coll == PerfColl::AllGather || r == root)
          for (int j = 0; j < n; ++j) copyBlock(r, j, j, 0);
        break;
      case PerfColl::AlltoAll: for (int j = 0; j < n; ++j) copyBlock(r, j, j, r); break;
      default: break;
    }
  }
  return out;
}

size_t wrongOn(const std::vector<std::vector<char>>& out, PerfColl coll, chorusDataType_t t, chorusRedOp_t op, int rank, int root,
               size_t count, uint32_t seed) {
  const int n = static_cast<int>(out.size());
  return countWrongCollOutput(collCase(coll, t, op, rank, n, root, count, seed), out[rank].data());
}

const chorusDataType_t kCheckTypes[] = {chorusInt8, chorusUint64, chorusFloat16, chorusFloat32, chorusFloat64, chorusFloat8e5m2};

TEST(PerfCollCheck, CorrectResultsCountZero) {
  for (PerfColl coll : kAllColls)
    for (chorusDataType_t t : kCheckTypes)
      for (int n : {1, 2, 3, 5})
        for (int root : {0, n - 1})
          for (size_t count : {1, 7, 64})
            for (int o = 0; o < (collInfo(coll).reduction ? chorusNumOps : 1); ++o) {
              const auto op = static_cast<chorusRedOp_t>(o);
              const auto out = simulateColl(coll, t, op, n, root, count, 3);
              for (int r = 0; r < n; ++r)
                ASSERT_EQ(wrongOn(out, coll, t, op, r, root, count, 3), 0u)
                    << collInfo(coll).tool << " " << typeName(t) << " " << opName(op) << " n=" << n << " root=" << root
                    << " count=" << count << " rank=" << r;
            }
}

// A call that wrote nothing leaves the poison: every element the rank receives is wrong.
TEST(PerfCollCheck, UntouchedOutputIsWrongEverywhere) {
  for (PerfColl coll : kAllColls)
    for (chorusDataType_t t : kCheckTypes)
      for (int n : {1, 3}) {
        const size_t count = 9;
        std::vector<char> poison(recvElems(coll, count, n) * typeSize(t), static_cast<char>(kPoisonByte));
        for (int r = 0; r < n; ++r) {
          const CollCase k = collCase(coll, t, chorusSum, r, n, 1 % n, count, 1);
          const size_t want = writesRecv(coll, r, k.root) ? recvElems(coll, count, n) : 0;
          EXPECT_EQ(countWrongCollOutput(k, poison.data()), want) << collInfo(coll).tool << " " << typeName(t) << " rank " << r;
        }
      }
}

// Blocks in the wrong place, data of the wrong root or peer, and another seed are all caught.
TEST(PerfCollCheck, MisplacedDataIsWrong) {
  const int n = 4;
  const size_t count = 16;
  const chorusDataType_t t = chorusFloat32;
  const size_t block = count * typeSize(t);
  for (PerfColl coll : {PerfColl::AllGather, PerfColl::Gather, PerfColl::AlltoAll}) {
    auto out = simulateColl(coll, t, chorusSum, n, 0, count, 5);
    std::vector<char> tmp(out[0].begin(), out[0].begin() + block);
    memcpy(out[0].data(), out[0].data() + block, block);  // blocks 0 and 1 swapped
    memcpy(out[0].data() + block, tmp.data(), block);
    EXPECT_EQ(wrongOn(out, coll, t, chorusSum, 0, 0, count, 5), 2 * count) << collInfo(coll).tool;
  }
  {
    auto out = simulateColl(PerfColl::Scatter, t, chorusSum, n, 2, count, 5);
    std::swap(out[0], out[1]);  // ranks 0 and 1 got each other's block
    EXPECT_EQ(wrongOn(out, PerfColl::Scatter, t, chorusSum, 0, 2, count, 5), count);
    EXPECT_EQ(wrongOn(out, PerfColl::Broadcast, t, chorusSum, 3, 2, count, 5), count);  // not a broadcast
  }
  {
    auto out = simulateColl(PerfColl::Broadcast, t, chorusSum, n, 1, count, 5);
    EXPECT_EQ(wrongOn(out, PerfColl::Broadcast, t, chorusSum, 3, 1, count, 5), 0u);
    EXPECT_EQ(wrongOn(out, PerfColl::Broadcast, t, chorusSum, 3, 2, count, 5), count);  // root 2's data expected
    EXPECT_EQ(wrongOn(out, PerfColl::Broadcast, t, chorusSum, 3, 1, count, 6), count);  // another seed
  }
  {
    auto out = simulateColl(PerfColl::SendRecv, t, chorusSum, n, 0, count, 5);
    std::swap(out[1], out[3]);  // rank 1 got rank 2's data (the wrong direction), rank 3 rank 0's
    EXPECT_EQ(wrongOn(out, PerfColl::SendRecv, t, chorusSum, 1, 0, count, 5), count);
    EXPECT_EQ(wrongOn(out, PerfColl::SendRecv, t, chorusSum, 3, 0, count, 5), count);
    EXPECT_EQ(wrongOn(out, PerfColl::SendRecv, t, chorusSum, 2, 0, count, 5), 0u);
  }
  for (chorusRedOp_t op : {chorusSum, chorusMax}) {
    const size_t big = 256;
    auto out = simulateColl(PerfColl::ReduceScatter, t, op, n, 0, big, 5);
    std::swap(out[0], out[1]);  // the other block's sums
    EXPECT_GT(wrongOn(out, PerfColl::ReduceScatter, t, op, 0, 0, big, 5), big / 2) << opName(op);
    auto fewer = simulateColl(PerfColl::Reduce, t, op, n - 1, 0, big, 5);  // a rank left out
    EXPECT_GT(countWrongCollOutput(collCase(PerfColl::Reduce, t, op, 0, n, 0, big, 5), fewer[0].data()), big / 20)
        << opName(op);
  }
}

TEST(PerfCollCheck, InputsAreFilledExactlyAndChangesCounted) {
  const int n = 3;
  const size_t count = 10;
  for (PerfColl coll : kAllColls)
    for (chorusDataType_t t : kCheckTypes)
      for (int rank = 0; rank < n; ++rank) {
        SCOPED_TRACE(std::string(collInfo(coll).tool) + " " + typeName(t) + " rank " + std::to_string(rank));
        const CollCase k = collCase(coll, t, chorusProd, rank, n, 1, count, 2);
        const size_t elems = sendElems(coll, count, n), bytes = elems * typeSize(t);
        std::vector<uint8_t> buf(bytes + 16, kPoisonByte);
        fillCollInput(k, buf.data());
        for (size_t i = bytes; i < buf.size(); ++i) ASSERT_EQ(buf[i], kPoisonByte) << "wrote past the send buffer";
        if (!readsSend(coll, rank, 1)) {
          EXPECT_EQ(std::count(buf.begin(), buf.end(), kPoisonByte), static_cast<long>(buf.size()));
          EXPECT_EQ(countChangedCollInput(k, buf.data()), 0u);
          continue;
        }
        EXPECT_EQ(countChangedCollInput(k, buf.data()), 0u);
        buf[bytes - 1] ^= 0x10;  // the last element's top byte
        EXPECT_EQ(countChangedCollInput(k, buf.data()), 1u);
      }
}

// Copies of different ranks, indices and seeds differ (so a misplaced element is caught), even
// for one-byte types.
TEST(PerfCollCheck, CopyPatternDistinguishesSources) {
  const size_t count = 4096;
  std::vector<uint8_t> a(count), b(count), c(count);
  fillCollInput(collCase(PerfColl::AllGather, chorusInt8, chorusSum, 0, 2, 0, count, 1), a.data());
  fillCollInput(collCase(PerfColl::AllGather, chorusInt8, chorusSum, 1, 2, 0, count, 1), b.data());
  fillCollInput(collCase(PerfColl::AllGather, chorusInt8, chorusSum, 0, 2, 0, count, 2), c.data());
  size_t sameRank = 0, sameSeed = 0, sameNext = 0;
  for (size_t i = 0; i < count; ++i) {
    sameRank += a[i] == b[i];
    sameSeed += a[i] == c[i];
    sameNext += i + 1 < count && a[i] == a[i + 1];
  }
  EXPECT_LT(sameRank, count / 50);
  EXPECT_LT(sameSeed, count / 50);
  EXPECT_LT(sameNext, count / 50);
}

// ---------------------------------------------------------------------------------------------
// Launching
// ---------------------------------------------------------------------------------------------

TEST(PerfLaunch, DetectsLaunchers) {
  EnvVar a("OMPI_COMM_WORLD_SIZE", nullptr), b("SLURM_NTASKS", nullptr),
      c("SLURM_PROCID", nullptr), d("WORLD_SIZE", nullptr), e("RANK", nullptr);
  EXPECT_EQ(detectLaunchEnv(), LaunchEnv::None);
  {
    EnvVar w("WORLD_SIZE", "4"), r("RANK", "1");
    EXPECT_EQ(detectLaunchEnv(), LaunchEnv::Torchrun);
  }
  {
    EnvVar s("SLURM_NTASKS", "4");
    EXPECT_EQ(detectLaunchEnv(), LaunchEnv::None);  // a batch script, not a task
    EnvVar p("SLURM_PROCID", "0");
    EXPECT_EQ(detectLaunchEnv(), LaunchEnv::Slurm);
    EnvVar o("OMPI_COMM_WORLD_SIZE", "4");
    EXPECT_EQ(detectLaunchEnv(), LaunchEnv::OpenMpi);
  }
}

TEST(PerfLaunch, TimeoutFromEnv) {
  {
    EnvVar t("CHORUS_TIMEOUT", nullptr);
    EXPECT_EQ(chorusTimeoutSeconds(), 300.0);
  }
  {
    EnvVar t("CHORUS_TIMEOUT", "12.5");
    EXPECT_EQ(chorusTimeoutSeconds(), 12.5);
  }
  {
    EnvVar t("CHORUS_TIMEOUT", "soon");
    EXPECT_EQ(chorusTimeoutSeconds(), 300.0);
  }
}

LocalLaunch testLaunch(int n) {
  LocalLaunch l;
  l.nranks = n;
  l.stallSeconds = 30;
  l.graceSeconds = 1;
  l.makeToken = [](std::vector<char>* token, std::string*) {
    const char text[] = "secret-token";
    token->assign(text, text + sizeof text);
    return true;
  };
  return l;
}

double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// -np's binding: one CPU per rank while they fit, none when oversubscribed (auto); round robin
// when forced (core); none when asked.
TEST(PerfLaunch, BindingPolicy) {
  EXPECT_EQ(parse({}).opts.bind, BindPolicy::Auto);
  EXPECT_EQ(parse({"--bind", "core"}).opts.bind, BindPolicy::Core);
  EXPECT_EQ(parse({"--bind=none"}).opts.bind, BindPolicy::None);
  ParseOutcome bad = parse({"--bind", "socket"});
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.error.find("--bind"), std::string::npos) << bad.error;
  std::string note;
  const std::vector<int> allowed = {2, 3, 5, 6};
  EXPECT_EQ(rankCpus(BindPolicy::Auto, 3, allowed, &note), (std::vector<int>{2, 3, 5}));
  EXPECT_NE(note.find("2-3,5-6"), std::string::npos) << note;
  EXPECT_TRUE(rankCpus(BindPolicy::Auto, 5, allowed, &note).empty());
  EXPECT_NE(note.find("5 ranks on 4 CPUs"), std::string::npos) << note;
  EXPECT_EQ(rankCpus(BindPolicy::Core, 6, allowed, &note), (std::vector<int>{2, 3, 5, 6, 2, 3}));
  EXPECT_TRUE(rankCpus(BindPolicy::None, 2, allowed, &note).empty());
  EXPECT_TRUE(rankCpus(BindPolicy::Auto, 2, {}, &note).empty());
  EXPECT_EQ(cpuListText({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(cpuListText({}), "");
}

// Each forked rank runs pinned to the CPU it was given.
TEST(PerfLaunch, RanksRunOnTheirCpus) {
  const std::vector<int> allowed = allowedCpus();
  ASSERT_FALSE(allowed.empty());
  const int n = 3;
  LocalLaunch l = testLaunch(n);
  for (int r = 0; r < n; ++r) l.cpus.push_back(allowed[(r + 1) % allowed.size()]);
  l.body = [&](int rank, const std::vector<char>&, Progress*) {
    const std::vector<int> mine = allowedCpus();
    return mine == std::vector<int>{l.cpus[rank]} ? 0 : 5;
  };
  LaunchResult r = launchLocal(l);
  EXPECT_EQ(r.exitCode, 0) << r.message;
}

TEST(PerfLaunch, EveryRankGetsTheTokenAndSucceeds) {
  LocalLaunch l = testLaunch(4);
  l.body = [](int rank, const std::vector<char>& token, Progress* p) {
    p->tick();
    if (std::string(token.data()) != "secret-token") return 3;
    return rank >= 0 && rank < 4 ? 0 : 4;
  };
  LaunchResult r = launchLocal(l);
  EXPECT_EQ(r.exitCode, 0) << r.message;
  EXPECT_EQ(r.firstFailedRank, -1);
  EXPECT_TRUE(r.message.empty());
}

TEST(PerfLaunch, CrashedRankIsNamedAndTheOthersAreKilled) {
  LocalLaunch l = testLaunch(3);
  l.body = [](int rank, const std::vector<char>&, Progress*) {
    if (rank == 1) abort();
    sleep(60);  // would hang without the launcher
    return 0;
  };
  const auto t0 = std::chrono::steady_clock::now();
  LaunchResult r = launchLocal(l);
  EXPECT_LT(secondsSince(t0), 10.0);
  EXPECT_NE(r.exitCode, 0);
  EXPECT_EQ(r.firstFailedRank, 1);
  EXPECT_NE(r.message.find("rank 1"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("signal"), std::string::npos) << r.message;
}

TEST(PerfLaunch, FailedRankGivesTheOthersAGracePeriod) {
  LocalLaunch l = testLaunch(3);
  l.body = [](int rank, const std::vector<char>&, Progress*) {
    if (rank == 2) return 7;
    sleep(60);
    return 0;
  };
  const auto t0 = std::chrono::steady_clock::now();
  LaunchResult r = launchLocal(l);
  const double took = secondsSince(t0);
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 10.0);
  EXPECT_EQ(r.exitCode, 7);
  EXPECT_EQ(r.firstFailedRank, 2);
  EXPECT_NE(r.message.find("rank 2"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("status 7"), std::string::npos) << r.message;
}

TEST(PerfLaunch, NoProgressMeansKilled) {
  LocalLaunch l = testLaunch(2);
  l.stallSeconds = 1;
  l.body = [](int, const std::vector<char>&, Progress* p) {
    for (int i = 0; i < 5; ++i) {  // progress for a while, then stuck
      p->tick();
      usleep(200000);
    }
    sleep(60);
    return 0;
  };
  const auto t0 = std::chrono::steady_clock::now();
  LaunchResult r = launchLocal(l);
  const double took = secondsSince(t0);
  EXPECT_GE(took, 1.5);  // the early ticks counted as progress
  EXPECT_LT(took, 10.0);
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.message.find("no rank made progress"), std::string::npos) << r.message;
}

TEST(PerfLaunch, TokenFailureStopsEveryRank) {
  LocalLaunch l = testLaunch(2);
  l.makeToken = [](std::vector<char>*, std::string* err) {
    *err = "no network";
    return false;
  };
  bool ran = false;
  l.body = [&](int, const std::vector<char>&, Progress*) {
    ran = true;
    return 0;
  };
  const auto t0 = std::chrono::steady_clock::now();
  LaunchResult r = launchLocal(l);
  EXPECT_LT(secondsSince(t0), 10.0);
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.message.find("no network"), std::string::npos) << r.message;
  EXPECT_FALSE(ran);  // (in this process; the children never got a token either)
}

}  // namespace
}  // namespace chorus::perf
