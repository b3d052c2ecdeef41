// Strangers on every listener: a process that is not part of the job connects to the root
// rendezvous, to each rank's out-of-band listener and to each rank's TCP data listener, and
// sends garbage, check-ins / Auths / hellos with a wrong secret, truncated records, huge length
// fields, or nothing at all (hundreds of idle connections), before and while a 3-rank job inits
// and runs all-reduces under a 128-descriptor limit (RLIMIT_NOFILE). The job must succeed with
// exact results and hold only a bounded number of descriptors for the strangers
// (CHORUS_AUTH_MAX_PENDING per listener; src/bootstrap/auth_gate.h). Before the fix the root
// gave up ("cannot accept more connections ... Too many open files") and no rank got through
// init.
//
// The health service's listener (src/health/health_service.cpp) is held to the same limits:
// idle connections, garbage, wrong secrets and oversized requests on every rank's health port
// while the job runs all-reduces and asks for hang reports (chorusCommDiagnose), and a rank
// that has run out of descriptors, whose health listener must rest rather than spin.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chorus/chorus.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/unique_id.h"
#include "bootstrap/wire.h"
#include "base/log.h"
#include "fixtures/ranks.h"
#include "health/health_wire.h"
#include "transports/tcp/tcp_wire.h"

namespace chorus::test {
namespace {

constexpr int kRanks = 3;              // the job; process kRanks is the stranger
constexpr int kFileLimit = 128;        // RLIMIT_NOFILE of every rank
constexpr int kIdlePerListener = 150;  // idle strangers per listener (more than the limit)
constexpr int kMaxPending = 16;        // CHORUS_AUTH_MAX_PENDING for the job

// What a rank tells the stranger once it is initialized: its listeners' ports.
struct Ports {
  int32_t rank = -1;
  int32_t count = 0;
  uint16_t port[8] = {};
};

int countFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n - 1;  // the directory's own descriptor
}

// The ports of this rank's out-of-band listener and TCP data listener, from its own INFO log
// ("listening at <addr>", "data listener on <addr>"): the listeners this test is about. (A port
// scan would also find listeners of other subsystems, whose stranger limits are their own.)
std::vector<uint16_t> chorusListenerPorts(const std::string& logFile,
                                          std::vector<const char*> keys = {"listening at 127.0.0.1:",
                                                                           "data listener on 127.0.0.1:"}) {
  std::ifstream in(logFile);
  std::vector<uint16_t> ports;
  std::string line;
  while (std::getline(in, line)) {
    for (const char* key : keys) {
      size_t at = line.find(key);
      if (at != std::string::npos) ports.push_back(static_cast<uint16_t>(std::stoul(line.substr(at + strlen(key)))));
    }
  }
  return ports;
}

// A non-blocking connection to 127.0.0.1:port, or -1.
int dial(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof(err);
  if (poll(&p, 1, 2000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void sendBytes(int fd, const void* data, size_t n) {
  ssize_t r = send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)r;  // best effort: the other side may have closed already
}

// A connection to port that sends the n bytes at data (if any) and stays open in *keep.
void openWith(uint16_t port, const void* data, size_t n, std::vector<int>* keep) {
  int fd = dial(port);
  if (fd < 0) return;
  if (n) sendBytes(fd, data, n);
  keep->push_back(fd);
}

// A connection that sends 200 bytes of garbage.
void openGarbage(uint16_t port, std::vector<int>* keep) {
  char garbage[200];
  for (size_t i = 0; i < sizeof(garbage); ++i) garbage[i] = static_cast<char>(i * 37 + 11);
  openWith(port, garbage, sizeof(garbage), keep);
}

// Every kind of bad first record, each on a connection of its own; the connections stay open
// (a truncated record then waits forever, as an idle stranger does).
void badRecords(uint16_t port, std::vector<int>* keep) {
  UniqueIdData wrong;
  wrong.secret[0] = 0xbad;
  wrong.secret[1] = 0xbad;
  wrong.commId = 0xbad;
  auto open = [&](const void* data, size_t n) { openWith(port, data, n, keep); };
  openGarbage(port, keep);
  wire::Hello hello;  // a check-in with a wrong secret and absurd ranks
  hello.secret[0] = wrong.secret[0];
  hello.rank = 0x7fffffff;
  hello.nranks = -1;
  open(&hello, sizeof(hello));
  open(&hello, 30);  // truncated check-in
  // An Auth with a wrong secret followed by a frame announcing 2^62 bytes.
  struct {
    wire::Auth auth;
    wire::FrameHeader header;
  } framed;
  framed.auth.secret[0] = wrong.secret[0];
  framed.auth.fromRank = 0;
  framed.auth.toRank = 1;
  framed.header.tag = 1;
  framed.header.bytes = 1ull << 62;
  open(&framed, sizeof(framed));
  open(&framed, 17);  // truncated Auth
  wire::FrameHeader huge;  // a huge length where the Auth should be
  huge.bytes = ~0ull;
  open(&huge, sizeof(huge));
  tcp::Hello th;  // a TCP hello with a wrong secret, and one cut short
  th.secret[0] = wrong.secret[0];
  th.fromRank = 0;
  th.toRank = 1;
  th.numSockets = 2;
  th.socketIndex = 0;
  open(&th, sizeof(th));
  open(&th, 23);
}

void idle(uint16_t port, int count, std::vector<int>* keep) {
  for (int i = 0; i < count; ++i) {
    int fd = dial(port);
    if (fd >= 0) keep->push_back(fd);
  }
}

void raiseOwnFileLimit() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
}

void writeAll(int fd, const void* data, size_t n) {
  if (write(fd, data, n) != static_cast<ssize_t>(n)) abort();
}
bool readAll(int fd, void* data, size_t n) { return read(fd, data, n) == static_cast<ssize_t>(n); }

// The stranger: knows the root's address (it is in the unique id, which is no secret from a
// process on the same host that can read it) but not the secret.
int stranger(const chorusUniqueId& publicId, int goInit, int portsIn, int goRun, int doneIn) {
  raiseOwnFileLimit();
  uint16_t rootPort = decodeUniqueId(publicId).root.port;
  std::vector<int> keep;
  badRecords(rootPort, &keep);
  idle(rootPort, kIdlePerListener, &keep);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  char go[kRanks] = {};
  writeAll(goInit, go, sizeof(go));  // the ranks may init now, strangers in the root's way
  std::vector<uint16_t> ports;
  for (int r = 0; r < kRanks; ++r) {
    Ports p;
    if (!readAll(portsIn, &p, sizeof(p))) return 10;
    for (int i = 0; i < p.count; ++i) ports.push_back(p.port[i]);
  }
  if (ports.size() != 2 * kRanks) {
    fprintf(stderr, "stranger: found %zu listener ports of the ranks in their logs, expected %d\n", ports.size(),
            2 * kRanks);
    return 11;
  }
  for (int fd : keep) close(fd);  // the root is done: its strangers may go
  keep.clear();
  for (uint16_t port : ports) {
    badRecords(port, &keep);
    idle(port, kIdlePerListener, &keep);
  }
  fprintf(stderr, "stranger: %zu connections open to %zu listeners of the ranks\n", keep.size(), ports.size());
  writeAll(goRun, go, sizeof(go));  // the ranks run their all-reduces now
  // Keep coming while they run: a fresh garbage connection per listener every 20 ms.
  int done = 0;
  char garbage[64];
  memset(garbage, 0x5a, sizeof(garbage));
  while (done < kRanks) {
    for (uint16_t port : ports) {
      int fd = dial(port);
      if (fd < 0) continue;
      sendBytes(fd, garbage, sizeof(garbage));
      close(fd);
    }
    pollfd p{doneIn, POLLIN, 0};
    if (poll(&p, 1, 20) == 1) {
      char c;
      if (read(doneIn, &c, 1) != 1) break;
      ++done;
    }
  }
  for (int fd : keep) close(fd);
  return 0;
}

int jobRank(int rank, const chorusUniqueId& id, const std::string& logDir, int goInit, int portsOut, int goRun,
            int doneOut) {
  logReloadConfig();  // this process's log file (CHORUS_DEBUG_FILE has %p)
  rlimit rl{static_cast<rlim_t>(kFileLimit), static_cast<rlim_t>(kFileLimit)};
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 20;
  char c;
  if (!readAll(goInit, &c, 1)) return 21;
  chorusComm_t comm = nullptr;
  if (chorusCommInitRank(&comm, kRanks, id, rank) != chorusSuccess) {
    fprintf(stderr, "rank %d: init failed: %s\n", rank, chorusGetLastError(nullptr));
    return 22;
  }
  const int fdsAfterInit = countFds();
  Ports ports;
  ports.rank = rank;
  for (uint16_t port : chorusListenerPorts(logDir + "/rank." + std::to_string(getpid()) + ".log"))
    if (ports.count < 8) ports.port[ports.count++] = port;
  writeAll(portsOut, &ports, sizeof(ports));
  if (!readAll(goRun, &c, 1)) return 23;
  int maxFds = fdsAfterInit;
  for (int call = 0; call < 20; ++call) {
    size_t count = size_t{1000} << (call % 8);
    std::vector<float> buf(count, static_cast<float>(rank + 1));
    if (chorusAllReduce(buf.data(), buf.data(), count, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) {
      fprintf(stderr, "rank %d: all-reduce #%d failed: %s\n", rank, call, chorusGetLastError(comm));
      return 24;
    }
    for (size_t i = 0; i < count; ++i)
      if (buf[i] != 6.0f) {
        fprintf(stderr, "rank %d: all-reduce #%d: element %zu is %g, expected 6\n", rank, call, i, buf[i]);
        return 25;
      }
    maxFds = std::max(maxFds, countFds());
    if (call == 9) {
      // Out-of-band traffic (a split's all-gather; no rank takes a color, so nothing else is
      // created): each rank's out-of-band listener accepts what waits in its queue now.
      chorusComm_t none = nullptr;
      if (chorusCommSplit(comm, CHORUS_SPLIT_NOCOLOR, rank, &none) != chorusSuccess || none != nullptr) {
        fprintf(stderr, "rank %d: split failed: %s\n", rank, chorusGetLastError(comm));
        return 28;
      }
      maxFds = std::max(maxFds, countFds());
    }
  }
  // The connections of this job (2 TCP sockets and up to 2 out-of-band ones per peer) and at
  // most kMaxPending strangers on each of the two listeners.
  const int budget = fdsAfterInit + 4 * (kRanks - 1) + 2 * kMaxPending + 4;
  fprintf(stderr, "rank %d: %d descriptors after init, at most %d while the strangers came (budget %d)\n", rank,
          fdsAfterInit, maxFds, budget);
  writeAll(doneOut, &c, 1);
  if (maxFds > budget) return 26;
  if (chorusCommDestroy(comm) != chorusSuccess) return 27;
  return 0;
}

// A fresh directory under gtest's temporary directory (TEST_TMPDIR or /tmp); "" (and a test
// failure) if it cannot be made.
std::string makeLogDir() {
  std::string dir = ::testing::TempDir() + "chorus-strangers-XXXXXX";
  if (mkdtemp(dir.data())) return dir;
  ADD_FAILURE() << "mkdtemp " << dir << ": " << strerror(errno);
  return "";
}

// For the rest of a test, every rank logs at INFO (the given subsystems) to a file of its own,
// <path>/rank.<pid>.log, where it finds its listeners' ports. The destructor prints the WARN
// lines (what the listeners said about the strangers) and removes the files.
struct RankLogs {
  std::string path = makeLogDir();
  ScopedEnv debug{"CHORUS_DEBUG", "INFO"};
  ScopedEnv subsys;
  ScopedEnv file;
  explicit RankLogs(const char* subsystems)
      : subsys("CHORUS_DEBUG_SUBSYS", subsystems), file("CHORUS_DEBUG_FILE", (path + "/rank.%p.log").c_str()) {}
  ~RankLogs() {
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::string name = path + "/" + e->d_name;
        std::ifstream in(name);
        for (std::string line; std::getline(in, line);)
          if (line.find("WARN") != std::string::npos || line.find("accepting again") != std::string::npos)
            printf("%s\n", line.c_str());
        unlink(name.c_str());
      }
      closedir(d);
    }
    rmdir(path.c_str());
  }
};


// A pipe between the processes of a test (the parent closes both ends when the test ends).
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (pipe(fd) != 0) fd[0] = fd[1] = -1;
  }
  ~Pipe() {
    for (int f : fd)
      if (f >= 0) close(f);
  }
  int in() const { return fd[0]; }
  int out() const { return fd[1]; }
};

// Runs the job's kRanks ranks and the stranger (process kRanks, which goes once the ranks have
// ended, however they ended); checks the stranger's exit and returns the ranks'.
std::vector<RankExit> runJobAndStranger(const std::function<int(int, const chorusUniqueId&)>& rankBody,
                                        const std::function<int(const chorusUniqueId&)>& strangerBody) {
  auto exits = runRanksWithId(
      kRanks + 1,
      [&](int rank, const chorusUniqueId& id) { return rank == kRanks ? strangerBody(id) : rankBody(rank, id); }, 150,
      [](RankHandles& h) { h.expendable[kRanks] = true; });
  const RankExit& s = exits[kRanks];
  EXPECT_TRUE((s.exited && s.code == 0) || s.signal == SIGKILL) << "stranger: " << s.describe();
  exits.pop_back();
  return exits;
}

TEST(Strangers, GarbageWrongSecretsAndIdleConnectionsAtEveryListenerCannotStopAJob) {
  ScopedEnv transport("CHORUS_TRANSPORT", "tcp");
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  ScopedEnv pending("CHORUS_AUTH_MAX_PENDING", std::to_string(kMaxPending).c_str());
  RankLogs logs("BOOTSTRAP,TRANSPORT");
  ASSERT_FALSE(logs.path.empty());
  Pipe goInit, ports, goRun, done;
  auto exits = runJobAndStranger(
      [&](int rank, const chorusUniqueId& id) {
        return jobRank(rank, id, logs.path, goInit.in(), ports.out(), goRun.in(), done.out());
      },
      [&](const chorusUniqueId& id) { return stranger(id, goInit.out(), ports.in(), goRun.out(), done.in()); });
  EXPECT_TRUE(allRanksSucceeded(exits));
  for (int r = 0; r < kRanks; ++r) EXPECT_LT(exits[static_cast<size_t>(r)].seconds, 60.0) << "rank " << r;
}

// ---------------------------------------------------------------------------------------------
// The health listener
// ---------------------------------------------------------------------------------------------

constexpr const char* kHealthKey = "health service listening on 127.0.0.1:";
constexpr double kHealthAuthTimeout = 1.0;  // CHORUS_AUTH_TIMEOUT for the health tests
constexpr int kHealthIdle = 100;             // idle strangers per health listener at first
constexpr double kHealthFloodSeconds = 2.0;  // then a steady flood, for this long

std::string ownLog(const std::string& logDir) { return logDir + "/rank." + std::to_string(getpid()) + ".log"; }

// Lines of a log file that contain every one of `needles`.
int countLines(const std::string& file, std::vector<const char*> needles) {
  std::ifstream in(file);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    bool all = true;
    for (const char* k : needles) all = all && line.find(k) != std::string::npos;
    n += all;
  }
  return n;
}

// Every kind of bad health request, each on a connection of its own, kept open. The stranger
// knows the unique id here (it is on the same host), so besides garbage and wrong secrets it
// also sends well-formed headers with an absurd rank or payload, and one whose payload stops
// half-way.
void badHealthRequests(uint16_t port, const UniqueIdData& id, std::vector<int>* keep) {
  auto open = [&](const void* data, size_t n) { openWith(port, data, n, keep); };
  openGarbage(port, keep);
  HealthRequest wrong;
  wrong.secret[0] = 0xbad;
  wrong.commId = id.commId;
  wrong.from = 0;
  wrong.op = static_cast<uint32_t>(HealthOp::Report);
  open(&wrong, sizeof(wrong));
  HealthRequest right = wrong;
  right.secret[0] = id.secret[0];
  right.secret[1] = id.secret[1];
  HealthRequest huge = right;  // 4 GiB of payload announced
  huge.payloadBytes = ~0u;
  open(&huge, sizeof(huge));
  HealthRequest alien = right;  // from a rank that does not exist
  alien.from = 1 << 30;
  open(&alien, sizeof(alien));
  open(&right, 20);  // truncated header
  struct {
    HealthRequest req;
    int32_t excluded[1];
  } half;  // a ShrinkJoin announcing 16 payload bytes that sends 4
  half.req = right;
  half.req.op = static_cast<uint32_t>(HealthOp::ShrinkJoin);
  half.req.payloadBytes = 16;
  half.excluded[0] = 1;
  open(&half, sizeof(half));
}

// Whether the other end has closed fd (end of file or reset), waiting up to `seconds`.
bool closedByPeer(int fd, double seconds) {
  pollfd p{fd, POLLIN, 0};
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    int left = static_cast<int>(std::chrono::duration<double, std::milli>(until - std::chrono::steady_clock::now()).count());
    if (poll(&p, 1, std::max(0, left)) == 1) {
      char buf[256];
      ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) continue;  // an answer (none is expected): read on to the end
    }
    if (left <= 0) return false;
  }
}

// The stranger of the health test: knows the ranks' health ports (they tell it) and the unique
// id. Tells the ranks to stop once it has seen its first connections closed and flooded the
// listeners for kHealthFloodSeconds.
int healthStranger(const chorusUniqueId& publicId, int portsIn, int goRun, int stopOut) {
  raiseOwnFileLimit();
  const UniqueIdData id = decodeUniqueId(publicId);
  std::vector<uint16_t> ports;
  for (int r = 0; r < kRanks; ++r) {
    Ports p;
    if (!readAll(portsIn, &p, sizeof(p)) || p.count != 1) return 10;
    ports.push_back(p.port[0]);
  }
  std::vector<int> first;
  for (uint16_t port : ports) {
    badHealthRequests(port, id, &first);
    idle(port, kHealthIdle, &first);
  }
  auto opened = std::chrono::steady_clock::now();
  fprintf(stderr, "stranger: %zu connections open to %zu health listeners\n", first.size(), ports.size());
  char go[kRanks] = {};
  writeAll(goRun, go, sizeof(go));  // the ranks run all-reduces and hang reports now
  // None of them holds a descriptor of a rank past CHORUS_AUTH_TIMEOUT (plus scheduling slack).
  int open = 0;
  for (int fd : first) {
    double left = kHealthAuthTimeout + 2.0 - std::chrono::duration<double>(std::chrono::steady_clock::now() - opened).count();
    open += !closedByPeer(fd, std::max(0.0, left));
    close(fd);
  }
  if (open > 0) {
    fprintf(stderr, "stranger: %d of %zu connections still open %.1f s after they were made\n", open, first.size(),
            kHealthAuthTimeout + 2.0);
    return 12;
  }
  // Then keep coming while the ranks run: every 20 ms, on every port, a few more idle
  // connections (the latest 200 per port stay open) and a round of bad requests.
  std::vector<std::vector<int>> held(ports.size());
  auto floodUntil = std::chrono::steady_clock::now() + std::chrono::duration<double>(kHealthFloodSeconds);
  while (std::chrono::steady_clock::now() < floodUntil) {
    for (size_t i = 0; i < ports.size(); ++i) {
      std::vector<int> bad;
      badHealthRequests(ports[i], id, &bad);
      for (int fd : bad) close(fd);
      idle(ports[i], 4, &held[i]);
      while (held[i].size() > 200) {
        close(held[i].front());
        held[i].erase(held[i].begin());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  writeAll(stopOut, go, sizeof(go));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the connections stay while the ranks end
  for (auto& h : held)
    for (int fd : h) close(fd);
  return 0;
}

// Runs all-reduces, and every fifth call a hang report, until the stranger says stop.
int healthJobRank(int rank, const chorusUniqueId& id, const std::string& logDir, int portsOut, int goRun, int stopIn) {
  logReloadConfig();
  chorusComm_t comm = nullptr;
  if (chorusCommInitRank(&comm, kRanks, id, rank) != chorusSuccess) {
    fprintf(stderr, "rank %d: init failed: %s\n", rank, chorusGetLastError(nullptr));
    return 22;
  }
  auto start = std::chrono::steady_clock::now();
  const int fdsAfterInit = countFds();
  Ports ports;
  ports.rank = rank;
  for (uint16_t port : chorusListenerPorts(ownLog(logDir), {kHealthKey}))
    if (ports.count < 8) ports.port[ports.count++] = port;
  writeAll(portsOut, &ports, sizeof(ports));
  char c;
  if (!readAll(goRun, &c, 1)) return 23;
  int maxFds = fdsAfterInit;
  int status = 0;
  int calls = 0;
  for (int call = 0; status == 0; ++call) {
    // Every rank stops after the same call: whether any has been told to, agreed on.
    pollfd stop{stopIn, POLLIN, 0};
    int32_t stopping = poll(&stop, 1, 0) == 1 ? 1 : 0;
    if (chorusAllReduce(&stopping, &stopping, 1, chorusInt32, chorusMax, comm, nullptr) != chorusSuccess) {
      fprintf(stderr, "rank %d: agreeing to stop failed: %s\n", rank, chorusGetLastError(comm));
      status = 28;
      break;
    }
    if (stopping) break;
    calls = call + 1;
    size_t count = size_t{1000} << (call % 6);
    std::vector<float> buf(count, static_cast<float>(rank + 1));
    if (chorusAllReduce(buf.data(), buf.data(), count, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) {
      fprintf(stderr, "rank %d: all-reduce #%d failed: %s\n", rank, call, chorusGetLastError(comm));
      status = 24;
      break;
    }
    for (size_t i = 0; i < count && status == 0; ++i)
      if (buf[i] != 6.0f) {
        fprintf(stderr, "rank %d: all-reduce #%d: element %zu is %g, expected 6\n", rank, call, i, buf[i]);
        status = 25;
      }
    maxFds = std::max(maxFds, countFds());
    if (call % 5 == rank) {
      // The hang report asks every rank's health service (rank 0 gathers for everybody).
      char report[4096] = {};
      auto t0 = std::chrono::steady_clock::now();
      chorusResult_t r = chorusCommDiagnose(comm, report, sizeof(report));
      double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r != chorusSuccess || strstr(report, "did not answer") || strstr(report, "did not finish")) {
        fprintf(stderr, "rank %d: hang report after call #%d (%.2f s): %s %s\n", rank, call, took, report,
                r == chorusSuccess ? "" : chorusGetLastError(comm));
        status = 29;
      }
      maxFds = std::max(maxFds, countFds());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The job's connections (2 TCP sockets and up to 2 out-of-band ones per peer), a few health
  // connections of the hang reports, and at most kMaxPending strangers.
  const int budget = fdsAfterInit + 4 * (kRanks - 1) + kMaxPending + 8;
  // WARN lines about strangers: at most one a second (the rest counted in the next line).
  const int warnLines = countLines(ownLog(logDir), {"WARN", "health listener"});
  fprintf(stderr,
          "rank %d: %d calls; %d descriptors after init, at most %d with strangers (budget %d); %d WARN lines in %.1f s\n",
          rank, calls, fdsAfterInit, maxFds, budget, warnLines, seconds);
  if (status) return status;
  if (maxFds > budget) return 26;
  if (warnLines < 1 || warnLines > static_cast<int>(seconds) + 2) return 30;
  if (chorusCommDestroy(comm) != chorusSuccess) return 27;
  return 0;
}

TEST(Strangers, HealthListenersHoldStrangersToTheGateWhileTheJobRunsAndReports) {
  ScopedEnv transport("CHORUS_TRANSPORT", "tcp");
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  ScopedEnv pending("CHORUS_AUTH_MAX_PENDING", std::to_string(kMaxPending).c_str());
  ScopedEnv authTimeout("CHORUS_AUTH_TIMEOUT", std::to_string(kHealthAuthTimeout).c_str());
  RankLogs logs("INIT");
  ASSERT_FALSE(logs.path.empty());
  Pipe ports, goRun, stop;
  auto exits = runJobAndStranger(
      [&](int rank, const chorusUniqueId& id) {
        return healthJobRank(rank, id, logs.path, ports.out(), goRun.in(), stop.in());
      },
      [&](const chorusUniqueId& id) { return healthStranger(id, ports.in(), goRun.out(), stop.out()); });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

double cpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Takes every descriptor this process has left (the soft limit lowered to a little above the
// highest in use, then dup() until EMFILE).
std::vector<int> exhaustDescriptors() {
  int highest = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') highest = std::max(highest, atoi(e->d_name));
    closedir(d);
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(highest) + 32);
  setrlimit(RLIMIT_NOFILE, &rl);
  std::vector<int> taken;
  int base = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (base < 0) return taken;
  taken.push_back(base);
  for (int fd; (fd = fcntl(base, F_DUPFD_CLOEXEC, 0)) >= 0;) taken.push_back(fd);
  return taken;
}

// Rank 0 runs out of descriptors while a stranger's connections wait in its health listener's
// queue: the listener rests (no 100% CPU, one WARN line), takes the connections as descriptors
// come free (an older stranger closed to make room for a newer), and rank 1's hang report is
// answered once rank 0 has descriptors again.
int emfileVictim(const chorusUniqueId& id, const std::string& logDir, int toStranger, int fromStranger, int toAsker,
                 int fromAsker) {
  logReloadConfig();
  chorusComm_t comm = nullptr;
  if (chorusCommInitRank(&comm, 2, id, 0) != chorusSuccess) return 22;
  std::vector<uint16_t> ports = chorusListenerPorts(ownLog(logDir), {kHealthKey});
  if (ports.size() != 1) return 23;
  writeAll(toStranger, &ports[0], sizeof(ports[0]));
  std::vector<int> taken = exhaustDescriptors();
  if (taken.size() < 2) return 24;
  char c = 'F';
  writeAll(toStranger, &c, 1);
  if (!readAll(fromStranger, &c, 1)) return 25;  // its 3 connections are queued
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  double cpu0 = cpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  double cpu = cpuSeconds() - cpu0;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Two descriptors back: the listener takes the first two strangers, and for the third
  // closes the first (the auth timeout is far away).
  for (int i = 0; i < 2; ++i) {
    close(taken.back());
    taken.pop_back();
  }
  writeAll(toStranger, &c, 1);
  char verdict = 0;
  if (!readAll(fromStranger, &verdict, 1)) return 26;
  for (int fd : taken) close(fd);
  writeAll(toAsker, &c, 1);
  char asked = 0;
  if (!readAll(fromAsker, &asked, 1)) return 27;
  const int restLines = countLines(ownLog(logDir), {"WARN", "health listener", "cannot accept connections"});
  const int againLines = countLines(ownLog(logDir), {"health listener", "accepting again"});
  fprintf(stderr, "rank 0: %.3f s of CPU in %.2f s without descriptors; %d WARN line(s) about it; stranger: %c; asker: %c\n",
          cpu, wall, restLines, verdict, asked);
  if (cpu > 0.25 * wall) return 30;  // the service thread spun on a readable listener
  if (restLines != 1 || againLines != 1) return 31;
  if (verdict != 'Y') return 32;
  if (asked != 'Y') return 33;
  return chorusCommDestroy(comm) == chorusSuccess ? 0 : 34;
}

int emfileAsker(const chorusUniqueId& id, int fromVictim, int toVictim) {
  logReloadConfig();
  chorusComm_t comm = nullptr;
  if (chorusCommInitRank(&comm, 2, id, 1) != chorusSuccess) return 22;
  char c;
  if (!readAll(fromVictim, &c, 1)) return 23;
  char report[4096] = {};
  chorusResult_t r = chorusCommDiagnose(comm, report, sizeof(report));
  bool ok = r == chorusSuccess && !strstr(report, "did not answer") && !strstr(report, "did not finish");
  if (!ok) fprintf(stderr, "rank 1: hang report: %s\n", report);
  char verdict = ok ? 'Y' : 'N';
  writeAll(toVictim, &verdict, 1);
  return chorusCommDestroy(comm) == chorusSuccess ? 0 : 24;
}

int emfileStranger(int fromVictim, int toVictim) {
  uint16_t port = 0;
  char c;
  if (!readAll(fromVictim, &port, sizeof(port)) || !readAll(fromVictim, &c, 1)) return 10;
  std::vector<int> conns;
  idle(port, 3, &conns);  // the kernel completes them; the listener cannot accept them yet
  if (conns.size() != 3) return 11;
  writeAll(toVictim, &c, 1);
  if (!readAll(fromVictim, &c, 1)) return 12;  // two descriptors are free now
  bool firstClosed = closedByPeer(conns[0], 3.0);
  bool othersOpen = !closedByPeer(conns[1], 0.3) && !closedByPeer(conns[2], 0.0);
  fprintf(stderr, "stranger: first connection %s, the others %s\n", firstClosed ? "closed" : "still open",
          othersOpen ? "still open" : "closed");
  char verdict = firstClosed && othersOpen ? 'Y' : 'N';
  writeAll(toVictim, &verdict, 1);
  for (int fd : conns) close(fd);
  return 0;
}

TEST(Strangers, HealthListenerOutOfDescriptorsRestsInsteadOfSpinning) {
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  ScopedEnv authTimeout("CHORUS_AUTH_TIMEOUT", "30");  // strangers leave only to make room
  RankLogs logs("INIT");
  ASSERT_FALSE(logs.path.empty());
  Pipe toStranger, fromStranger, toAsker, fromAsker;
  auto exits = runRanksWithId(
      3,
      [&](int rank, const chorusUniqueId& id) {
        if (rank == 0) return emfileVictim(id, logs.path, toStranger.out(), fromStranger.in(), toAsker.out(), fromAsker.in());
        if (rank == 1) return emfileAsker(id, toAsker.in(), fromAsker.out());
        return emfileStranger(toStranger.in(), fromStranger.out());
      },
      90);
  EXPECT_TRUE(allRanksSucceeded(exits));
}

}  // namespace
}  // namespace chorus::test
