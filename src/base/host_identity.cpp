#include "base/host_identity.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "base/hash.h"

namespace chorus {

std::string hostName() {
  char buf[256] = {};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

uint64_t pidNamespaceId() {
  struct stat st {};
  return stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

uint64_t hostHash(const std::string& overrideId) {
  if (!overrideId.empty()) return fnv1a("id:" + overrideId);
  std::string id = hostName();
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string bootId;
  if (boot >> bootId) id += "/" + bootId;
  struct stat st {};
  if (stat("/proc/self/ns/net", &st) == 0) id += "/netns:" + std::to_string(st.st_ino);
  return fnv1a(id);
}

}  // namespace chorus
