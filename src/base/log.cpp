#include "base/log.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace chorus {
namespace {

struct LogConfig {
  LogLevel level = LogLevel::Warn;
  uint32_t subsys = kLogAll;
  FILE* out = stderr;
  char host[64] = "?";
};

std::mutex gMutex;
std::atomic<bool> gLoaded{false};
LogConfig gConfig;
thread_local int tRank = -1;

// Problems with the logging variables themselves go straight to stderr (the log may be unusable).
void warnEnv(const char* fmt, const char* value) {
  fprintf(stderr, "CHORUS WARN ");
  fprintf(stderr, fmt, value);
  fprintf(stderr, "\n");
}

uint32_t parseSubsys(const char* text) {
  static const struct {
    const char* name;
    uint32_t bit;
  } kNames[] = {{"INIT", kLogInit},   {"BOOTSTRAP", kLogBootstrap}, {"TRANSPORT", kLogTransport}, {"NET", kLogTransport},
                {"COLL", kLogColl},   {"EXEC", kLogExec},           {"TUNING", kLogTuning},       {"TOPO", kLogTopo},
                {"ALL", kLogAll}};
  bool exclude = text[0] == '^';
  if (exclude) ++text;
  uint32_t mask = 0;
  std::string s(text);
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string tok = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    bool known = false;
    for (auto& n : kNames)
      if (strcasecmp(tok.c_str(), n.name) == 0) {
        mask |= n.bit;
        known = true;
      }
    if (!known && !tok.empty()) warnEnv("CHORUS_DEBUG_SUBSYS: unknown subsystem \"%s\" ignored", tok.c_str());
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return exclude ? ~mask : mask;
}

void loadLocked() {
  if (gConfig.out && gConfig.out != stderr) fclose(gConfig.out);
  gConfig = LogConfig{};
  gethostname(gConfig.host, sizeof(gConfig.host) - 1);
  if (const char* lvl = getenv("CHORUS_DEBUG")) {
    if (!strcasecmp(lvl, "NONE")) gConfig.level = LogLevel::None;
    else if (!strcasecmp(lvl, "INFO")) gConfig.level = LogLevel::Info;
    else if (!strcasecmp(lvl, "TRACE")) gConfig.level = LogLevel::Trace;
    else if (!strcasecmp(lvl, "WARN")) gConfig.level = LogLevel::Warn;
    else warnEnv("CHORUS_DEBUG=\"%s\" is not one of NONE, WARN, INFO, TRACE: using WARN", lvl);
  }
  if (const char* sub = getenv("CHORUS_DEBUG_SUBSYS")) gConfig.subsys = parseSubsys(sub);
  if (const char* file = getenv("CHORUS_DEBUG_FILE")) {
    std::string path;
    for (const char* c = file; *c; ++c) {
      if (c[0] == '%' && c[1] == 'h') { path += gConfig.host; ++c; }
      else if (c[0] == '%' && c[1] == 'p') { path += std::to_string(getpid()); ++c; }
      else path += *c;
    }
    if (FILE* f = fopen(path.c_str(), "a")) gConfig.out = f;
    else warnEnv("CHORUS_DEBUG_FILE: cannot open \"%s\": logging to stderr", path.c_str());
  }
  gLoaded.store(true, std::memory_order_release);
}

const char* subsysName(uint32_t s) {
  switch (s) {
    case kLogInit: return "INIT";
    case kLogBootstrap: return "BOOTSTRAP";
    case kLogTransport: return "TRANSPORT";
    case kLogColl: return "COLL";
    case kLogExec: return "EXEC";
    case kLogTuning: return "TUNING";
    case kLogTopo: return "TOPO";
    default: return "ALL";
  }
}

}  // namespace

bool logEnabled(LogLevel level, uint32_t subsys) {
  if (!gLoaded.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> g(gMutex);
    if (!gLoaded.load(std::memory_order_relaxed)) loadLocked();
  }
  return level <= gConfig.level && (gConfig.subsys & subsys) != 0;
}

void logPrint(LogLevel level, uint32_t subsys, const char* fmt, ...) {
  static const char* kLevels[] = {"NONE", "WARN", "INFO", "TRACE"};
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  long tid = syscall(SYS_gettid);
  std::lock_guard<std::mutex> g(gMutex);
  fprintf(gConfig.out, "%s:%d:%ld [%d] CHORUS %s %s %s\n", gConfig.host, getpid(), tid, tRank, kLevels[static_cast<int>(level)],
          subsysName(subsys), msg);
  fflush(gConfig.out);
}

void logSetThreadRank(int rank) { tRank = rank; }

void logReloadConfig() {
  std::lock_guard<std::mutex> g(gMutex);
  loadLocked();
}

}  // namespace chorus
