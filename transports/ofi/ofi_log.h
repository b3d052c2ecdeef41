// Logging of the libfabric plugin: through the logger Chorus passes to init (NULL: silent). The
// plugin uses nothing of Chorus but include/chorus/net_plugin.h, so no Chorus logging here.
#pragma once

#include <atomic>

#include "chorus/net_plugin.h"

namespace chorus::ofi {

enum LogLevel { kLogError = 0, kLogWarn = 1, kLogInfo = 2, kLogTrace = 3 };

// The logger given to init (may be null); set before anything else runs.
inline std::atomic<chorusNetLogger_v1_t>& logSink() {
  static std::atomic<chorusNetLogger_v1_t> sink{nullptr};
  return sink;
}

}  // namespace chorus::ofi

#define OFI_LOG(level, ...)                                                                   \
  do {                                                                                        \
    chorusNetLogger_v1_t ofiLogSink_ = ::chorus::ofi::logSink().load(std::memory_order_acquire); \
    if (ofiLogSink_ != nullptr) ofiLogSink_((level), __FILE__, __LINE__, __VA_ARGS__);        \
  } while (0)
