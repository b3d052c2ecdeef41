// The unique id in its two outside forms: the bytes of chorusUniqueId (what applications copy
// between processes, e.g. through torch's Store, and what a split sends over the out-of-band
// channel) and the text of CHORUS_ROOT_ADDR ("host:port", "[v6]:port") from which launchers
// derive it. Checks: a decoded id passes checkUniqueId and survives encode/decode unchanged;
// a split address has a port in 1-65535; anything else is chorusInvalidArgument.
//
// Input: a mode byte (even: bytes form, odd: text form), then the bytes or the text.
#include <chorus/chorus.h>

#include "bootstrap/launcher_env.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "base/error.h"
#include "fuzz_util.h"

using namespace chorus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Reader in(data, size);
  uint8_t mode = in.byte();
  std::string rest = in.rest();
  if (mode % 2 == 0) {
    try {
      UniqueIdData d = decodeUniqueIdBytes(rest.data(), rest.size());
      FUZZ_CHECK(rest.size() >= sizeof(UniqueIdData) && rest.size() <= CHORUS_UNIQUE_ID_BYTES);
      FUZZ_CHECK(d.root.family == AF_INET || d.root.family == AF_INET6);
      FUZZ_CHECK(!addrToString(d.root).empty());
      chorusUniqueId again = encodeUniqueId(d);
      UniqueIdData back = decodeUniqueId(again);
      FUZZ_CHECK(memcmp(&back, &d, sizeof(d)) == 0);
    } catch (const Error& e) {
      FUZZ_CHECK(e.code() == chorusInvalidArgument);
    }
    return 0;
  }
  try {
    HostPort hp = splitHostPort(rest, "CHORUS_ROOT_ADDR");
    FUZZ_CHECK(hp.port >= 1 && hp.port <= 65535);
    FUZZ_CHECK(hp.host.size() < rest.size());
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == chorusInvalidArgument);
  }
  return 0;
}
