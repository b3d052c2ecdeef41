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

}  // namespace

chorusNetResult_t chooseListenAddress(ListenAddress* out) {
  const char* env = getenv("CHORUS_SOCKET_IFNAME");
  const size_t prefixLen = env ? strlen(env) : 0;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    UCXNET_ERROR("ucx: getifaddrs failed: %s", strerror(errno));
    return chorusNetSystemError;
  }
  const ifaddrs* v4 = nullptr;
  const ifaddrs* v6 = nullptr;
  for (const ifaddrs* it = list; it; it = it->ifa_next) {
    if (!it->ifa_addr || !(it->ifa_flags & IFF_UP)) continue;
    const int fam = it->ifa_addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    if (prefixLen > 0) {
      if (strncmp(it->ifa_name, env, prefixLen) != 0) continue;
    } else if (it->ifa_flags & IFF_LOOPBACK) {
      continue;
    }
    if (fam == AF_INET && !v4) v4 = it;
    if (fam == AF_INET6 && !v6 && prefixLen > 0 && usableV6(it->ifa_addr)) v6 = it;
  }
  const ifaddrs* pick = v4 ? v4 : v6;
  if (pick) {
    out->advertiseLen = copyAddr(pick->ifa_addr, &out->advertise);
    snprintf(out->ifname, sizeof(out->ifname), "%s", pick->ifa_name);
  }
  freeifaddrs(list);

  if (prefixLen > 0) {
    if (!pick) {
      UCXNET_ERROR("ucx: CHORUS_SOCKET_IFNAME=%s matches no interface that is up with an IP address", env);
      return chorusNetInvalidUsage;
    }
    // A named interface: listen on its address only.
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
