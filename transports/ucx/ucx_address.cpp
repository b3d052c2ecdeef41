// Listen address choice and handle <-> sockaddr conversion (see ucx_address.h).
#include "transports/ucx/ucx_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "transports/ucx/ucx_state.h"

namespace chorus::ucxnet {

namespace {

bool usableV6(const sockaddr* sa) {
  const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
  return !IN6_IS_ADDR_LINKLOCAL(&a) && !IN6_IS_ADDR_UNSPECIFIED(&a);
}

socklen_t copyAddr(const sockaddr* sa, sockaddr_storage* out) {
  socklen_t len = sa->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  memset(out, 0, sizeof(*out));
  memcpy(out, sa, len);
  if (sa->sa_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(out)->sin_port = 0;
  else
    reinterpret_cast<sockaddr_in6*>(out)->sin6_port = 0;
  return len;
}

// The address of the first up interface that `match` accepts: IPv4 first, else a usable IPv6 one
// (only when v6 is true). NULL when none.
template <typename Match>
const ifaddrs* findAddress(const ifaddrs* list, bool v6, Match match) {
  const ifaddrs* v4addr = nullptr;
  const ifaddrs* v6addr = nullptr;
  for (const ifaddrs* it = list; it; it = it->ifa_next) {
    if (!it->ifa_addr || !(it->ifa_flags & IFF_UP) || !match(it)) continue;
    const int fam = it->ifa_addr->sa_family;
    if (fam == AF_INET && !v4addr) v4addr = it;
    if (fam == AF_INET6 && v6 && !v6addr && usableV6(it->ifa_addr)) v6addr = it;
  }
  return v4addr ? v4addr : v6addr;
}

// The first interface of UCX_NET_DEVICES (plain names like "eth0"; RDMA ports "mlx5_0:1" are
// skipped) that has an address, or NULL.
const ifaddrs* fromUcxNetDevices(const ifaddrs* list) {
  const char* env = getenv("UCX_NET_DEVICES");
  if (env == nullptr) return nullptr;
  const std::string devices(env);
  size_t pos = 0;
  while (pos <= devices.size()) {
    size_t end = devices.find(',', pos);
    if (end == std::string::npos) end = devices.size();
    const std::string name = devices.substr(pos, end - pos);
    pos = end + 1;
    if (name.empty() || name == "all" || name.find(':') != std::string::npos) continue;
    if (const ifaddrs* it = findAddress(list, true, [&](const ifaddrs* i) { return name == i->ifa_name; })) return it;
  }
  return nullptr;
}

}  // namespace

chorusNetResult_t chooseListenAddress(ListenAddress* out) {
  const char* prefix = getenv("CHORUS_SOCKET_IFNAME");
  const size_t prefixLen = prefix ? strlen(prefix) : 0;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    UCXNET_ERROR("ucx: getifaddrs failed: %s", strerror(errno));
    return chorusNetSystemError;
  }
  const ifaddrs* pick = nullptr;
  bool specific = true;  // bind the chosen address itself (else 0.0.0.0)
  if (prefixLen > 0) {
    pick = findAddress(list, true, [&](const ifaddrs* i) { return strncmp(i->ifa_name, prefix, prefixLen) == 0; });
  } else if ((pick = fromUcxNetDevices(list)) == nullptr) {
    specific = false;
    pick = findAddress(list, false, [](const ifaddrs* i) { return !(i->ifa_flags & IFF_LOOPBACK); });
  }
  if (pick) {
    out->advertiseLen = copyAddr(pick->ifa_addr, &out->advertise);
    snprintf(out->ifname, sizeof(out->ifname), "%s", pick->ifa_name);
  }
  freeifaddrs(list);

  if (prefixLen > 0 && !pick) {
    UCXNET_ERROR("ucx: CHORUS_SOCKET_IFNAME=%s matches no interface that is up with an IP address", prefix);
    return chorusNetInvalidUsage;
  }
  if (specific) {
    out->bind = out->advertise;
    out->bindLen = out->advertiseLen;
    return chorusNetSuccess;
  }
  if (!pick) {
    sockaddr_in lo{};
    lo.sin_family = AF_INET;
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    out->advertiseLen = copyAddr(reinterpret_cast<sockaddr*>(&lo), &out->advertise);
    snprintf(out->ifname, sizeof(out->ifname), "lo (fallback)");
  }
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  out->bindLen = copyAddr(reinterpret_cast<sockaddr*>(&any), &out->bind);
  return chorusNetSuccess;
}

bool handleToSockaddr(const UcxHandle& h, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  if (h.magic != kHandleMagic || h.version != kHandleVersion || h.port == 0) return false;
  if (h.family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(ss);
    sin->sin_family = AF_INET;
    sin->sin_port = h.port;
    memcpy(&sin->sin_addr, h.addr, 4);
    *len = sizeof(sockaddr_in);
    return true;
  }
  if (h.family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = h.port;
    memcpy(&sin6->sin6_addr, h.addr, 16);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

void handleToString(const UcxHandle& h, char* buf, size_t n) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (h.family == AF_INET || h.family == AF_INET6) inet_ntop(h.family, h.addr, ip, sizeof(ip));
  snprintf(buf, n, h.family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, ntohs(h.port));
}

}  // namespace chorus::ucxnet
