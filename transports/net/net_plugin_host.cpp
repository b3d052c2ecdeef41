#include "transports/net/net_plugin_host.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "base/error.h"
#include "base/log.h"
#include "transports/transport.h"

namespace chorus {
namespace net {
namespace {

// The plugin's log lines go to Chorus's log under the transport subsystem (CHORUS_DEBUG_SUBSYS=NET).
void pluginLogger(int level, const char* file, int line, const char* fmt, ...) {
  LogLevel l = level <= 1 ? LogLevel::Warn : level == 2 ? LogLevel::Info : LogLevel::Trace;
  if (!logEnabled(l, kLogTransport)) return;
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  const char* base = file ? strrchr(file, '/') : nullptr;
  logPrint(l, kLogTransport, "net plugin: %s (%s:%d)", text, base ? base + 1 : file ? file : "?", line);
}

std::mutex gMutex;

const char* resultName(chorusNetResult_t r) {
  switch (r) {
    case chorusNetSuccess: return "success";
    case chorusNetSystemError: return "system error";
    case chorusNetInternalError: return "internal error";
    case chorusNetInvalidArgument: return "invalid argument";
    case chorusNetInvalidUsage: return "invalid usage";
    case chorusNetRemoteError: return "remote error";
  }
  return "unknown result";
}

}  // namespace

void ensureInitialised(const chorusNet_v1_t& plugin) {
  static std::map<const chorusNet_v1_t*, chorusNetResult_t> results;
  std::lock_guard<std::mutex> g(gMutex);
  auto it = results.find(&plugin);
  if (it == results.end()) it = results.emplace(&plugin, plugin.init(pluginLogger)).first;
  if (it->second != chorusNetSuccess)
    CHORUS_THROW(chorusSystemError,
                 "the %s network plugin failed to initialise (%s); its reason is in the log (CHORUS_DEBUG=WARN, subsystem NET)",
                 plugin.name, resultName(it->second));
}

void check(chorusNetResult_t r, const chorusNet_v1_t& plugin, const std::string& what) {
  if (r == chorusNetSuccess) return;
  chorusResult_t code = chorusInternalError;
  switch (r) {
    case chorusNetSystemError: code = chorusSystemError; break;
    case chorusNetInvalidArgument: code = chorusInvalidArgument; break;
    case chorusNetInvalidUsage: code = chorusInvalidUsage; break;
    case chorusNetRemoteError: code = chorusRemoteError; break;
    default: break;
  }
  if (r == chorusNetRemoteError)
    CHORUS_THROW(code, "%s: the %s transport reports the peer died, closed or its link failed", what.c_str(), plugin.name);
  CHORUS_THROW(code, "%s: the %s network plugin failed (%s)", what.c_str(), plugin.name, resultName(r));
}

}  // namespace net

namespace {

// The folder of the object this code is in (libchorus.so, or a program linked with the static
// library), with a trailing '/'; "" if unknown.
std::string ownFolder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&ownFolder), &info) == 0 || !info.dli_fname) return "";
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

}  // namespace

const chorusNet_v1_t& loadNetPlugin(const std::string& spec, const std::string& whose) {
  CHORUS_CHECK_ARG(!spec.empty(), "CHORUS_NET_PLUGIN is empty");
  const std::string who = whose.empty() ? "CHORUS_NET_PLUGIN=" + spec : whose;
  static std::map<std::string, const chorusNet_v1_t*> loaded;
  std::lock_guard<std::mutex> g(net::gMutex);
  auto it = loaded.find(spec);
  if (it != loaded.end()) return *it->second;
  // A name X: libchorus-net-X.so next to libchorus (where the project's own plugins are built
  // and installed), else wherever the library path finds it.
  std::string file = spec;
  if (spec.find('/') == std::string::npos) {
    const std::string name = "libchorus-net-" + spec + ".so";
    const std::string folder = ownFolder();
    file = !folder.empty() && access((folder + name).c_str(), F_OK) == 0 ? folder + name : name;
  }
  // RTLD_LOCAL: the plugin's symbols (and its fabric library's) stay out of the global scope.
  // The handle is never closed: plugins may keep threads and registrations until exit.
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) CHORUS_THROW(chorusInvalidUsage, "%s: cannot load %s: %s", who.c_str(), file.c_str(), dlerror());
  auto* table = static_cast<const chorusNet_v1_t*>(dlsym(handle, CHORUS_NET_PLUGIN_SYMBOL_V1));
  if (!table)
    CHORUS_THROW(chorusInvalidUsage, "%s: %s exports no %s (not a Chorus network plugin, or not ABI version 1)", who.c_str(), file.c_str(), CHORUS_NET_PLUGIN_SYMBOL_V1);
  if (table->abiVersion != CHORUS_NET_PLUGIN_ABI_VERSION)
    CHORUS_THROW(chorusInvalidUsage, "%s: %s says ABI version %u, this Chorus speaks version %d", who.c_str(),
                 file.c_str(), table->abiVersion, CHORUS_NET_PLUGIN_ABI_VERSION);
  bool complete = table->name && table->init && table->devices && table->getProperties && table->listen && table->connect &&
                  table->accept && table->regMr && table->deregMr && table->isend && table->irecv && table->test &&
                  table->closeSend && table->closeRecv && table->closeListen;
  if (!complete)
    CHORUS_THROW(chorusInvalidUsage, "%s: %s has a NULL name or function in its %s table", who.c_str(), file.c_str(),
                 CHORUS_NET_PLUGIN_SYMBOL_V1);
  CHORUS_INFO(kLogTransport, "loaded network plugin %s (ABI v%u) from %s", table->name, table->abiVersion, file.c_str());
  loaded.emplace(spec, table);
  return *table;
}

}  // namespace chorus
