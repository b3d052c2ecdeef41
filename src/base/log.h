// Logging. CHORUS_DEBUG=WARN|INFO|TRACE chooses the level (default WARN);
// CHORUS_DEBUG_SUBSYS=INIT,BOOTSTRAP,TRANSPORT,COLL,EXEC,ALL (or ^X to
// exclude) chooses subsystems. Lines go to stderr (or CHORUS_DEBUG_FILE, where %h is the
// host name and %p the pid) as "host:pid:tid [rank] CHORUS LEVEL SUBSYS message".
#pragma once

#include <cstdint>

namespace chorus {

enum class LogLevel : int { None = 0, Warn = 1, Info = 2, Trace = 3 };

enum LogSubsys : uint32_t {
  kLogInit = 1u << 0,
  kLogBootstrap = 1u << 1,
  kLogTransport = 1u << 2,
  kLogColl = 1u << 3,
  kLogExec = 1u << 4,
  kLogTuning = 1u << 5,
  kLogTopo = 1u << 6,
  kLogAll = ~0u,
};

bool logEnabled(LogLevel level, uint32_t subsys);
void logPrint(LogLevel level, uint32_t subsys, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
// The rank shown in log lines of the calling thread (-1: none yet).
void logSetThreadRank(int rank);
// Re-reads CHORUS_DEBUG* (for tests that change the environment).
void logReloadConfig();

}  // namespace chorus

#define CHORUS_LOG(level, subsys, ...)                                           \
  do {                                                                          \
    if (::chorus::logEnabled((level), (subsys))) ::chorus::logPrint((level), (subsys), __VA_ARGS__); \
  } while (0)
#define CHORUS_WARN(subsys, ...) CHORUS_LOG(::chorus::LogLevel::Warn, subsys, __VA_ARGS__)
#define CHORUS_INFO(subsys, ...) CHORUS_LOG(::chorus::LogLevel::Info, subsys, __VA_ARGS__)
#define CHORUS_TRACE(subsys, ...) CHORUS_LOG(::chorus::LogLevel::Trace, subsys, __VA_ARGS__)
