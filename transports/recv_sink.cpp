#include "transports/transport.h"

#include <cstring>

namespace chorus {

void RecvSink::deliver(size_t offset, const void* data, size_t n) const {
  if (n == 0) return;
  char* d = static_cast<char*>(dst) + offset;
  if (reduce == nullptr) {
    if (d != data) memcpy(d, data, n);
    return;
  }
  const char* l = static_cast<const char*>(local) + offset;
  reduce(d, l, data, n / elemSize);
}

}  // namespace chorus
