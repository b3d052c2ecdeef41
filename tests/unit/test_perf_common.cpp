// Unit tests of perf/perf_common: the parts of all_reduce_perf that need no communicator.
#include "../../perf/perf_common.h"

#include <gtest/gtest.h>
#include <unistd.h>

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
                           "-N", "-np", "-J", "-h"})
    EXPECT_NE(u.find(std::string("    ") + flag), std::string::npos) << flag;
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
  EXPECT_DOUBLE_EQ(allReduceBusBandwidth(2.0, 2), 2.0);
  EXPECT_DOUBLE_EQ(allReduceBusBandwidth(2.0, 4), 3.0);
  EXPECT_DOUBLE_EQ(allReduceBusBandwidth(2.0, 1), 0.0);
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
}

// ---------------------------------------------------------------------------------------------
// fp16 / bf16
// ---------------------------------------------------------------------------------------------

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

// The test's own reference: element i of a typed buffer as a double / as an integer.
double readDouble(const void* buf, chorusDataType_t t, size_t i) {
  switch (t) {
    case chorusInt8: return static_cast<const int8_t*>(buf)[i];
    case chorusUint8: return static_cast<const uint8_t*>(buf)[i];
    case chorusInt32: return static_cast<const int32_t*>(buf)[i];
    case chorusUint32: return static_cast<const uint32_t*>(buf)[i];
    case chorusInt64: return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
    case chorusUint64: return static_cast<double>(static_cast<const uint64_t*>(buf)[i]);
    case chorusFloat16: return halfToFloat(static_cast<const uint16_t*>(buf)[i]);
    case chorusFloat32: return static_cast<const float*>(buf)[i];
    case chorusFloat64: return static_cast<const double*>(buf)[i];
    default: return bfloat16ToFloat(static_cast<const uint16_t*>(buf)[i]);
  }
}

void writeDouble(void* buf, chorusDataType_t t, size_t i, double v) {
  switch (t) {
    case chorusInt8: static_cast<int8_t*>(buf)[i] = static_cast<int8_t>(static_cast<long long>(v)); break;
    case chorusUint8: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(static_cast<long long>(v)); break;
    case chorusInt32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(static_cast<long long>(v)); break;
    case chorusUint32: static_cast<uint32_t*>(buf)[i] = static_cast<uint32_t>(static_cast<long long>(v)); break;
    case chorusInt64: static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); break;
    case chorusUint64: static_cast<uint64_t*>(buf)[i] = static_cast<uint64_t>(static_cast<long long>(v)); break;
    case chorusFloat16: static_cast<uint16_t*>(buf)[i] = floatToHalf(static_cast<float>(v)); break;
    case chorusFloat32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case chorusFloat64: static_cast<double*>(buf)[i] = v; break;
    default: static_cast<uint16_t*>(buf)[i] = floatToBfloat16(static_cast<float>(v)); break;
  }
}

bool isFloat(chorusDataType_t t) {
  return t == chorusFloat16 || t == chorusFloat32 || t == chorusFloat64 || t == chorusBfloat16;
}

// Reduces n ranks' filled buffers the way a library would: element by element, in the type,
// rank order given by `order`, rounding (floats) or wrapping (integers) after every step.
std::vector<char> simulateAllReduce(chorusDataType_t t, chorusRedOp_t op, int n, size_t count,
                                    uint32_t seed, bool reverse) {
  const size_t ts = typeSize(t);
  std::vector<std::vector<char>> in(n, std::vector<char>(count * ts));
  for (int r = 0; r < n; ++r) fillInput(in[r].data(), count, t, op, r, n, seed);
  std::vector<char> out(count * ts);
  for (size_t i = 0; i < count; ++i) {
    int first = reverse ? n - 1 : 0;
    double acc = readDouble(in[first].data(), t, i);
    for (int k = 1; k < n; ++k) {
      const int r = reverse ? n - 1 - k : k;
      const double v = readDouble(in[r].data(), t, i);
      switch (op) {
        case chorusSum: case chorusAvg: acc += v; break;
        case chorusProd: acc *= v; break;
        case chorusMax: acc = std::max(acc, v); break;
        default: acc = std::min(acc, v); break;
      }
      writeDouble(out.data(), t, i, acc);  // round / wrap to the type after every step
      acc = readDouble(out.data(), t, i);
    }
    if (op == chorusAvg) acc = isFloat(t) ? acc / n : std::trunc(acc / n);
    writeDouble(out.data(), t, i, acc);
  }
  return out;
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
  for (auto type : {chorusFloat16, chorusBfloat16})
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
      // Corrupt 3 elements: one off by a little, one by a lot, one NaN / bit-flipped.
      writeDouble(out.data(), type, 10, readDouble(out.data(), type, 10) + 1);
      writeDouble(out.data(), type, 500, readDouble(out.data(), type, 500) + 100);
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
    }
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
