// chorus-sim: a collective's real schedules, simulated on a modelled fabric (docs/SIMULATOR.md).
//
//   chorus-sim all_reduce -b 1M -e 1G -f 4 -A ring --fabric fat-tree:hosts=128,gpus=8,leaf=16,oversub=2
//
// The collective by name (all_reduce, all_gather, reduce_scatter, broadcast, reduce, alltoall,
// gather, scatter), the perf tools' sizes and types (-b -e -f -i -d -o), -A for the algorithm
// (default ring), -J for JSON; and its own:
//   --fabric SPEC|FILE  a fabric generator (src/sim/fabric.h): flat:..., fat-tree:..., rail:...,
//                   or a fabric file (the cluster file's format with a `fabric` line)
//   --slice BYTES   the pipelining slice the builders use (CHORUS_SLICE_BYTES; default 256K)
//   --fold auto|every|relaxed|off  simulate one period of ranks where the fabric and the
//                   schedules repeat (sim/symmetry.h): auto checks a sample of the other ranks'
//                   schedules, every checks them all, relaxed checks the sample without their
//                   dependencies (an approximation where those differ), off simulates every
//                   rank (default auto)
//   --max-steps N   the most schedule steps the simulator keeps (default 32M, ~3.2 GB; K/M/G
//                   suffixes as for sizes): past it, the run stops and suggests a larger slice
//   --svg FILE      the link load over time of each size, drawn (FILE-<size>.svg when several)
//   --compare       every algorithm that serves the collective, side by side, with the one the
//                   runtime's tuner would pick for this fabric and its model's predictions
//   --reduce-gbps X, --copy-gbps X   local reduction and copy speeds (default 100 and 200 GB/s,
//                   device kernels; a host's are a few GB/s)
// The ranks are the fabric's: hosts x gpus. Columns are nccl-tests': size, count, type, time,
// algbw, busbw; then the simulated messages and the busiest link.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

#include "base/error.h"
#include "collectives/collective.h"
#include "perf_common.h"
#include "sim/fabric.h"
#include "sim/simulator.h"
#include "sim/symmetry.h"
#include "chorus_topo.h"
#include "link_load_svg.h"
#include "topology/weights.h"
#include "tune/tuner.h"

namespace chorus {
namespace {

int usage(const char* why) {
  if (why) fprintf(stderr, "chorus-sim: %s\n\n", why);
  fprintf(stderr,
          "usage: chorus-sim <collective> --fabric SPEC [-b MIN] [-e MAX] [-f FACTOR] [-d TYPE] [-o OP]\n"
          "                  [-A ALGO | --compare] [--slice BYTES] [--fold auto|every|relaxed|off] [--reduce-gbps X] [--copy-gbps X]\n"
          "                  [--max-steps N] [-J FILE] [--svg FILE]\n"
          "  collective: all_reduce all_gather reduce_scatter broadcast reduce alltoall gather scatter\n"
          "  fabric: flat:hosts=H,gpus=G | fat-tree:hosts=H,gpus=G,leaf=K,oversub=R | rail:hosts=H,gpus=G | FILE\n"
          "          with nic=<Gbit/s> nvlink=<GB/s> hop_us= alpha_us= slow=<a>-<b>@<Gbit/s> (docs/SIMULATOR.md)\n");
  return 2;
}

std::vector<double> uplinkGBps(const sim::Fabric& f) {
  std::vector<double> b(f.hosts());
  for (int h = 0; h < f.hosts(); ++h) b[h] = f.nicBytesPerUs(h) * f.gpusPerHost() / 1e3;
  return b;
}

// The weighted all-reduce's split, as the runtime computes it (cluster_topology.cpp): between
// hosts, each by its uplink (here its GPUs' NICs together).
HostWeights hostSplit(const sim::Fabric& f) {
  std::vector<std::vector<int>> single(f.hosts());
  for (int h = 0; h < f.hosts(); ++h) single[h] = {h};
  return hostWeights(single, uplinkGBps(f), f.hosts());
}

// A layout with the fabric's hosts (hierarchical and weighted need them), weights by NIC speed.
std::shared_ptr<RankLayout> layoutOf(const sim::Fabric& f) {
  auto l = std::make_shared<RankLayout>();
  const int p = f.ranks(), g = f.gpusPerHost();
  l->hosts.resize(f.hosts());
  l->hostOf.resize(p);
  l->ringOrder.resize(p);
  l->weight.resize(p);
  for (int r = 0; r < p; ++r) {
    l->hosts[r / g].push_back(r);
    l->hostOf[r] = r / g;
    l->ringOrder[r] = r;
  }
  // A host's share of the weighted all-reduce, evenly over its ranks.
  const HostWeights w = hostSplit(f);
  for (int r = 0; r < p; ++r) l->weight[r] = w.perRank[r / g] / g;
  return l;
}

// What the runtime's tuner would be told on this fabric: the link classes inside a host and
// between hosts (the slowest NIC, the longest path's latency), and the topology.
Tuner tunerFor(const sim::Fabric& f, size_t slice) {
  const int p = f.ranks(), g = f.gpusPerHost();
  auto latencyOf = [&](int a, int b) {
    std::vector<uint32_t> path;
    f.path(a, b, &path);
    double us = f.alphaUs();
    for (uint32_t l : path) us += f.links()[l].latencyUs;
    return us;
  };
  LinkModel intra{latencyOf(0, std::min(1, p - 1)), f.links().empty() ? 1.0 : f.links()[0].bytesPerUs / 1e3};
  TopoModel topo;
  topo.hosts = f.hosts();
  topo.maxRanksPerHost = g;
  topo.intra = intra;
  LinkModel inter = intra;
  if (f.hosts() > 1) {
    // The model shares one uplink per host among its ranks; here every GPU has a NIC, so the
    // host's uplink is its NICs together.
    const std::vector<double> up = uplinkGBps(f);
    inter = LinkModel{latencyOf(0, p - 1), *std::min_element(up.begin(), up.end())};
    topo.weightedUsPerByte = hostSplit(f).usPerByte;
  }
  topo.inter = inter;
  return Tuner("", f.hosts() > 1 ? inter : intra, slice, topo);
}

// What the simulation of one call is asked to do beyond the collective.
struct RunOptions {
  sim::SimOptions sim;
  bool fold = true;                          // --fold (off: false)
  sim::FoldCheck check = sim::FoldCheck::Sampled;
  size_t maxSteps = size_t{32} << 20;        // ~3.2 GB of simulator state
};

// "load.svg" for the size 1048576: "load-1048576.svg".
std::string withSize(const std::string& path, size_t size) {
  const size_t slash = path.rfind('/'), dot = path.rfind('.');
  const size_t at = dot != std::string::npos && (slash == std::string::npos || dot > slash) ? dot : path.size();
  return path.substr(0, at) + "-" + std::to_string(size) + path.substr(at);
}

struct LinkLoad {
  size_t link;
  double load;  // its bytes over its bandwidth, as a share of the simulated time
};

// The n busiest links, one per class where the run was folded (the others carry the same).
std::vector<LinkLoad> busiestLinks(const sim::Fabric& f, const sim::SimResult& res, size_t n) {
  const std::vector<uint32_t> cls = f.linkClasses(res.simulatedRanks ? res.simulatedRanks : f.ranks());
  std::vector<LinkLoad> all;
  for (size_t l = 0; l < res.linkBytes.size(); ++l)
    if (cls.empty() || cls[l] == l)
      all.push_back({l, res.timeUs > 0 ? res.linkBytes[l] / f.links()[l].bytesPerUs / res.timeUs : 0});
  const size_t keep = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<long>(keep), all.end(),
                    [](const LinkLoad& a, const LinkLoad& b) { return a.load > b.load || (a.load == b.load && a.link < b.link); });
  all.resize(keep);
  return all;
}

// Every rank's schedule of one call (folded where the fabric and the schedules repeat),
// simulated; *folded says how it was folded.
sim::SimResult simulateCall(const sim::Fabric& f, Coll coll, Algo algo, size_t count, size_t ts, size_t slice,
                            const std::shared_ptr<RankLayout>& layout, const RunOptions& ro, std::string* folded = nullptr) {
  const int p = f.ranks();
  CollArgs a;
  a.coll = coll;
  a.nranks = p;
  a.count = count;
  a.elemSize = ts;
  a.sliceBytes = slice;
  a.layout = layout;
  sim::FoldedSchedules fs = sim::buildForSimulation(
      f,
      [&](int r) {
        CollArgs mine = a;
        mine.rank = r;
        return buildSchedule(algo, mine);
      },
      ro.fold, ro.check, ro.maxSteps);
  if (folded) {
    if (fs.period == p) *folded = "not folded: " + fs.why;
    else *folded = perf::format("folded: %d of %d ranks simulated (the fabric and the schedules repeat every %d ranks; %zu more "
                               "ranks' schedules checked%s)", fs.period, p, fs.period, fs.checked,
                               ro.check == sim::FoldCheck::Relaxed ? ", dependencies not compared: --fold relaxed" : "");
  }
  return sim::simulate(f, fs.schedules, ts, ro.sim, fs.period);
}

// --compare: per size, every algorithm that serves the collective (each with the slice the
// tuner would give it), the fastest in simulation, and the tuner's own pick.
int compareAlgorithms(const sim::Fabric& f, perf::PerfColl pc, Coll coll, const perf::Options& o, size_t slice,
                      const RunOptions& options) {
  const int p = f.ranks();
  const size_t ts = perf::typeSize(o.types.at(0));
  const Tuner tuner = tunerFor(f, slice);
  auto layout = layoutOf(f);
  std::vector<Algo> algos;
  for (int i = 0; i < static_cast<int>(Algo::kCount); ++i)
    if (algoServes(static_cast<Algo>(i), coll)) algos.push_back(static_cast<Algo>(i));
  printf("# chorus-sim --compare %s, %d ranks, simulated time (us) per algorithm\n# fabric %s\n", perf::collInfo(pc).name, p,
         f.describe().c_str());
  printf("# %12s", "size (B)");
  for (Algo a : algos) printf(" %12s", algoName(a));
  printf("  %-12s %-12s %s\n", "fastest", "tuner", "tuner's pick / fastest");
  std::vector<std::string> notes;
  for (size_t bytes : perf::sizeLadder(o)) {
    const perf::CollSizes cs = perf::collSizes(pc, bytes / ts, p);
    if (cs.count == 0) continue;
    const size_t size = cs.bytes(ts);
    // An algorithm whose schedules are too big to simulate (the step budget) is "n/a", with the
    // reason after the table; the others are compared among themselves.
    std::vector<double> t, wall;
    std::vector<size_t> slices;
    for (Algo a : algos) {
      slices.push_back(tuner.sliceFor(a, coll, size, p));
      const auto t0 = std::chrono::steady_clock::now();
      try {
        t.push_back(simulateCall(f, coll, a, cs.count, ts, slices.back(), layout, options).timeUs);
      } catch (const Error& e) {
        if (e.code() != chorusInvalidArgument) throw;
        t.push_back(-1);
        notes.push_back(perf::format("%s at %zu bytes: %s", algoName(a), size, e.what()));
      }
      wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    size_t best = 0;
    for (size_t k = 1; k < t.size(); ++k)
      if (t[k] >= 0 && (t[best] < 0 || t[k] < t[best])) best = k;
    const TuneChoice pick = tuner.choose(coll, size, p);
    const size_t chosen = static_cast<size_t>(std::find(algos.begin(), algos.end(), pick.algo) - algos.begin());
    printf("  %12zu", size);
    for (double x : t) {
      if (x < 0) printf(" %12s", "n/a");
      else printf(" %12.1f", x);
    }
    if (chosen < t.size() && t[chosen] >= 0) {
      printf("  %-12s %-12s %.2fx\n", algoName(algos[best]), algoName(pick.algo), t[chosen] / t[best]);
    } else {
      printf("  %-12s %-12s %s\n", algoName(algos[best]), algoName(pick.algo), "n/a");
    }
    // What the tuner's model predicted for each, to see where it errs.
    printf("# %12s", "model");
    for (Algo a : algos) printf(" %12.1f", tuner.predictUs(a, coll, size, p));
    printf("\n# %12s", "slice");
    for (size_t s : slices) printf(" %12zu", s);
    printf("\n# %12s", "sim (s)");
    for (double w : wall) printf(" %12.2f", w);
    printf("\n");
    fflush(stdout);
  }
  for (const std::string& n : notes) printf("# n/a: %s\n", n.c_str());
  return 0;
}

int run(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return usage("name the collective first");
  std::string name = argv[1];
  std::string collName;
  for (char c : name)
    if (c != '_') collName += c;
  perf::PerfColl pc;
  Coll coll;
  if (!perf::findColl(collName, &pc) || pc == perf::PerfColl::SendRecv || !parseColl(perf::collInfo(pc).name, &coll))
    return usage(("unknown collective " + name).c_str());
  std::string fabricSpec, jsonPath, svgPath;
  size_t slice = 256 * 1024;
  bool compare = false;
  RunOptions runOptions;
  sim::SimOptions& simOptions = runOptions.sim;
  std::vector<const char*> rest{argv[0]};
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--svg" && i + 1 < argc) {
      svgPath = argv[++i];
      runOptions.sim.linkLoad = true;
    } else if ((a == "--fabric" || a == "--slice") && i + 1 < argc) {
      if (a == "--fabric") fabricSpec = argv[++i];
      else if (!perf::parseSize(argv[++i], &slice) || slice < 64) return usage("--slice wants a size of 64 bytes or more");
    } else if (a == "--max-steps" && i + 1 < argc) {
      if (!perf::parseSize(argv[++i], &runOptions.maxSteps) || runOptions.maxSteps == 0) return usage("--max-steps wants a count > 0");
    } else if (a == "--fold" && i + 1 < argc) {
      const std::string how = argv[++i];
      if (how != "auto" && how != "every" && how != "relaxed" && how != "off") return usage("--fold wants auto, every, relaxed or off");
      runOptions.fold = how != "off";
      runOptions.check = how == "every" ? sim::FoldCheck::Every : how == "relaxed" ? sim::FoldCheck::Relaxed : sim::FoldCheck::Sampled;
    } else if (a == "--compare") {
      compare = true;
    } else if ((a == "--reduce-gbps" || a == "--copy-gbps") && i + 1 < argc) {
      char* end = nullptr;
      double gbps = strtod(argv[++i], &end);
      if (!end || *end || !(gbps > 0)) return usage((a + " wants a bandwidth in GB/s > 0").c_str());
      (a == "--reduce-gbps" ? simOptions.reduceBytesPerUs : simOptions.copyBytesPerUs) = gbps * 1e3;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (fabricSpec.empty()) return usage("--fabric is required");
  perf::ParseOutcome parsed = perf::parseArgs(static_cast<int>(rest.size()), rest.data());
  if (!parsed.ok) return usage(parsed.error.empty() ? nullptr : parsed.error.c_str());
  const perf::Options& o = parsed.opts;
  Algo algo = Algo::Ring;
  if (!o.algo.empty() && !parseAlgo(o.algo, &algo)) return usage(("unknown algorithm " + o.algo).c_str());
  // A file by that name is a fabric file; anything else a generator spec.
  const sim::Fabric fabric = access(fabricSpec.c_str(), F_OK) == 0 ? sim::Fabric::load(fabricSpec) : sim::Fabric::generate(fabricSpec);
  if (compare) return compareAlgorithms(fabric, pc, coll, o, slice, runOptions);
  const int p = fabric.ranks();
  const chorusDataType_t type = o.types.at(0);
  const size_t ts = perf::typeSize(type);
  auto layout = layoutOf(fabric);

  printf("# chorus-sim %s, algorithm %s, %d ranks\n# fabric %s\n", name.c_str(), algoName(algo), p, fabric.describe().c_str());
  printf("# %12s %12s %8s %12s %9s %9s %10s %8s  %s\n", "size (B)", "count", "type", "time (us)", "algbw", "busbw",
         "messages", "sim (s)", "busiest link (share of its bandwidth x time)");
  std::string json = "{\"tool\": \"chorus-sim\", \"collective\": \"" + std::string(perf::collInfo(pc).name) + "\", \"algorithm\": \"" +
                     algoName(algo) + "\", \"nranks\": " + std::to_string(p) + ", \"fabric\": \"" + fabricSpec + "\", \"rows\": [";
  bool first = true;
  std::string lastFolded;
  for (size_t bytes : perf::sizeLadder(o)) {
    const perf::CollSizes cs = perf::collSizes(pc, bytes / ts, p);
    if (cs.count == 0) continue;
    auto t0 = std::chrono::steady_clock::now();
    std::string folded;
    sim::SimResult res = simulateCall(fabric, coll, algo, cs.count, ts, slice, layout, runOptions, &folded);
    if (folded != lastFolded) printf("# %s\n", folded.c_str());
    lastFolded = folded;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t size = cs.bytes(ts);
    const double algbw = res.timeUs > 0 ? static_cast<double>(size) / res.timeUs / 1e3 : 0;  // GB/s
    const double busbw = algbw * perf::busFactor(pc, p);
    const std::vector<LinkLoad> busy = busiestLinks(fabric, res, 3);
    const size_t busiest = busy.empty() ? 0 : busy[0].link;
    const double load = busy.empty() ? 0 : busy[0].load;
    printf("  %12zu %12zu %8s %12.1f %9.2f %9.2f %10llu %8.2f  %s (%.0f%%)\n", size, cs.count, perf::typeName(type), res.timeUs,
           algbw, busbw, static_cast<unsigned long long>(res.messages), wall, fabric.links()[busiest].name.c_str(), 100 * load);
    const sim::CriticalPath& cp = res.critical;
    std::string busyText, pathLinks;
    for (const LinkLoad& b : busy) busyText += perf::format("%s%s (%.0f%%)", busyText.empty() ? "" : ", ", fabric.links()[b.link].name.c_str(), 100 * b.load);
    for (const auto& [l, us] : cp.links) pathLinks += perf::format("%s%s %.1f us", pathLinks.empty() ? "" : ", ", fabric.links()[l].name.c_str(), us);
    printf("#   busiest links: %s\n", busyText.c_str());
    if (!svgPath.empty()) {
      const std::vector<size_t> ladder = perf::sizeLadder(o);
      const std::string file = ladder.size() == 1 ? svgPath : withSize(svgPath, size);
      const std::string title = perf::format("chorus-sim %s, %s, %zu bytes, %d ranks", name.c_str(), algoName(algo), size, p);
      if (!topo_tool::writeFile(file, linkLoadSvg(fabric, res, title, 24))) return 1;
      printf("#   link load over time: %s\n", file.c_str());
    }
    printf("#   critical path: %zu messages, %zu local steps; %.1f us = %.1f on the wire + %.1f latency and waiting + %.1f local work%s%s\n",
           cp.messages, cp.localSteps, res.timeUs, cp.wireUs, cp.waitUs, cp.localUs, pathLinks.empty() ? "" : "; most on ", pathLinks.c_str());
    fflush(stdout);
    json += std::string(first ? "" : ",") + "\n  {\"size\": " + std::to_string(size) + ", \"count\": " + std::to_string(cs.count) +
            ", \"time_us\": " + perf::format("%.3f", res.timeUs) + ", \"algbw\": " + perf::format("%.4f", algbw) +
            ", \"busbw\": " + perf::format("%.4f", busbw) + ", \"messages\": " + std::to_string(res.messages) + ", \"simulated_ranks\": " + std::to_string(res.simulatedRanks) +
            ", \"busiest_link\": \"" + fabric.links()[busiest].name + "\", \"busiest_load\": " + perf::format("%.4f", load) +
            ", \"critical_path\": {\"messages\": " + std::to_string(cp.messages) + ", \"local_steps\": " + std::to_string(cp.localSteps) +
            ", \"wire_us\": " + perf::format("%.3f", cp.wireUs) + ", \"wait_us\": " + perf::format("%.3f", cp.waitUs) +
            ", \"local_us\": " + perf::format("%.3f", cp.localUs) + "}}";
    first = false;
  }
  json += "\n]}\n";
  if (!o.jsonPath.empty() && !topo_tool::writeFile(o.jsonPath, json)) return 1;
  return 0;
}

}  // namespace
}  // namespace chorus

int main(int argc, char** argv) {
  try {
    return chorus::run(argc, argv);
  } catch (const chorus::Error& e) {
    fprintf(stderr, "chorus-sim: %s\n", e.what());
    return 2;
  }
}
