// Strangers on every listener: a process that is not part of the job connects to the root
// rendezvous, to each rank's out-of-band listener and to each rank's TCP data listener, and
// sends garbage, check-ins / Auths / hellos with a wrong secret, truncated records, huge length
// fields, or nothing at all (hundreds of idle connections), before and while a 3-rank job inits
// and runs all-reduces under a 128-descriptor limit (RLIMIT_NOFILE). The job must succeed with
// exact results and hold only a bounded number of descriptors for the strangers
// (CHORUS_AUTH_MAX_PENDING per listener; src/bootstrap/auth_gate.h). Before the fix the root
// gave up ("cannot accept more connections ... Too many open files") and no rank got through
// init.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chorus/chorus.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/unique_id.h"
#include "bootstrap/wire.h"
#include "core/log.h"
#include "fixtures/ranks.h"
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
std::vector<uint16_t> chorusListenerPorts(const std::string& logFile) {
  std::ifstream in(logFile);
  std::vector<uint16_t> ports;
  std::string line;
  while (std::getline(in, line)) {
    for (const char* key : {"listening at 127.0.0.1:", "data listener on 127.0.0.1:"}) {
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

// Every kind of bad first record, each on a connection of its own; the connections stay open
// (a truncated record then waits forever, as an idle stranger does).
void badRecords(uint16_t port, std::vector<int>* keep) {
  UniqueIdData wrong;
  wrong.secret[0] = 0xbad;
  wrong.secret[1] = 0xbad;
  wrong.commId = 0xbad;
  auto open = [&](const void* data, size_t n) {
    int fd = dial(port);
    if (fd < 0) return;
    if (n) sendBytes(fd, data, n);
    keep->push_back(fd);
  };
  char garbage[200];
  for (size_t i = 0; i < sizeof(garbage); ++i) garbage[i] = static_cast<char>(i * 37 + 11);
  open(garbage, sizeof(garbage));
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

TEST(Strangers, GarbageWrongSecretsAndIdleConnectionsAtEveryListenerCannotStopAJob) {
  ScopedEnv transport("CHORUS_TRANSPORT", "tcp");
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  ScopedEnv pending("CHORUS_AUTH_MAX_PENDING", std::to_string(kMaxPending).c_str());
  // Each rank logs to a file of its own, where it finds its listeners' ports.
  char dirTemplate[] = "/tmp/chorus-strangers-XXXXXX";
  ASSERT_NE(mkdtemp(dirTemplate), nullptr);
  const std::string logDir = dirTemplate;
  ScopedEnv debug("CHORUS_DEBUG", "INFO");
  ScopedEnv subsys("CHORUS_DEBUG_SUBSYS", "BOOTSTRAP,TRANSPORT");
  ScopedEnv file("CHORUS_DEBUG_FILE", (logDir + "/rank.%p.log").c_str());
  int goInit[2], ports[2], goRun[2], done[2];
  ASSERT_EQ(pipe(goInit), 0);
  ASSERT_EQ(pipe(ports), 0);
  ASSERT_EQ(pipe(goRun), 0);
  ASSERT_EQ(pipe(done), 0);
  auto exits = runRanksWithId(
      kRanks + 1,
      [&](int rank, const chorusUniqueId& id) {
        if (rank == kRanks) return stranger(id, goInit[1], ports[0], goRun[1], done[0]);
        return jobRank(rank, id, logDir, goInit[0], ports[1], goRun[0], done[1]);
      },
      150,
      // Once the job's ranks have ended, however they ended, the stranger goes too.
      [](RankHandles& h) { h.expendable[kRanks] = true; });
  for (int fd : {goInit[0], goInit[1], ports[0], ports[1], goRun[0], goRun[1], done[0], done[1]}) close(fd);
  // What the listeners said about the strangers (rate-limited WARN lines), then tidy up.
  if (DIR* d = opendir(logDir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string path = logDir + "/" + e->d_name;
      std::ifstream in(path);
      for (std::string line; std::getline(in, line);)
        if (line.find("WARN") != std::string::npos) printf("%s\n", line.c_str());
      unlink(path.c_str());
    }
    closedir(d);
  }
  rmdir(logDir.c_str());
  const RankExit& s = exits[kRanks];
  EXPECT_TRUE((s.exited && s.code == 0) || s.signal == SIGKILL) << "stranger: " << s.describe();
  exits.pop_back();
  EXPECT_TRUE(allRanksSucceeded(exits));
  for (int r = 0; r < kRanks; ++r) EXPECT_LT(exits[static_cast<size_t>(r)].seconds, 60.0) << "rank " << r;
}

}  // namespace
}  // namespace chorus::test
