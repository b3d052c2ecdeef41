// fi_getinfo for the libfabric plugin: the hints, what we give up when a provider refuses them,
// and the choice of provider and domains.
#include "transports/ofi/ofi_discovery.h"

#include <rdma/fi_errno.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "transports/ofi/ofi_log.h"

namespace chorus::ofi {

namespace {

// What we ask for, most wanted first. FI_ORDER_SAS keeps same-tag messages in posting order
// (the ABI's matching rule); FI_DIRECTED_RECV lets data receives name their peer; manual
// progress matches how Chorus drives us. A provider that cannot give one of them is still used,
// without it (the code works either way; without SAS same-tag order is not guaranteed).
struct HintSet {
  bool sas;
  bool directed;
  bool manual;
};
constexpr HintSet kHintSets[] = {{true, true, true},  {true, true, false},  {true, false, true},  {true, false, false},
                                 {false, true, true}, {false, true, false}, {false, false, true}, {false, false, false}};

fi_info* makeHints(const HintSet& h, const char* provider) {
  fi_info* hints = fi_allocinfo();
  if (hints == nullptr) return nullptr;
  hints->caps = FI_TAGGED | (h.directed ? FI_DIRECTED_RECV : 0);
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->ep_attr->type = FI_EP_RDM;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  hints->domain_attr->threading = FI_THREAD_DOMAIN;  // the plugin serializes each device itself
  if (h.manual) {
    hints->domain_attr->data_progress = FI_PROGRESS_MANUAL;
    hints->domain_attr->control_progress = FI_PROGRESS_MANUAL;
  }
  if (h.sas) {
    hints->tx_attr->msg_order = FI_ORDER_SAS;
    hints->rx_attr->msg_order = FI_ORDER_SAS;
  }
  if (provider != nullptr) hints->fabric_attr->prov_name = strdup(provider);
  return hints;
}

bool isLoopback(const char* domain) { return domain != nullptr && strncmp(domain, "lo", 2) == 0; }

bool isSocketProvider(const std::string& prov) {
  return prov.find("tcp") != std::string::npos || prov.find("sockets") != std::string::npos ||
         prov.find("udp") != std::string::npos;
}

bool inList(const char* list, const char* name) {
  const std::string l = list, n = name != nullptr ? name : "";
  size_t pos = 0;
  while (pos <= l.size()) {
    const size_t end = l.find(',', pos);
    const std::string item = l.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (item == n) return true;
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return false;
}

}  // namespace

std::vector<fi_info*> discoverDevices() {
  const char* provider = getenv("CHORUS_OFI_PROVIDER");
  if (provider != nullptr && provider[0] == '\0') provider = nullptr;
  fi_info* list = nullptr;
  int rc = -FI_ENODATA;
  const HintSet* used = nullptr;
  for (const HintSet& h : kHintSets) {
    fi_info* hints = makeHints(h, provider);
    if (hints == nullptr) break;
    rc = fi_getinfo(FI_VERSION(1, 11), nullptr, nullptr, 0, hints, &list);
    fi_freeinfo(hints);
    if (rc == 0 && list != nullptr) {
      used = &h;
      break;
    }
  }
  if (used == nullptr) {
    const char* fiProvider = getenv("FI_PROVIDER");
    OFI_LOG(kLogError, "ofi: no RDM endpoint with tagged messages from provider %s (FI_PROVIDER %s): fi_getinfo: %s (%d)",
            provider ? provider : "(any)", fiProvider ? fiProvider : "unset", fi_strerror(-rc), rc);
    return {};
  }
  if (!used->sas) OFI_LOG(kLogWarn, "ofi: provider cannot order sends (FI_ORDER_SAS): same-tag messages may match out of order");
  const std::string prov = list->fabric_attr->prov_name;
  const char* domains = getenv("CHORUS_OFI_DOMAIN");
  const char* ifname = getenv("CHORUS_SOCKET_IFNAME");
  const bool byIfname = (domains == nullptr || domains[0] == '\0') && ifname != nullptr && ifname[0] != '\0' && isSocketProvider(prov);
  bool ifnameMatches = false;
  if (byIfname) {
    for (fi_info* i = list; i != nullptr; i = i->next) {
      if (prov == i->fabric_attr->prov_name && strncmp(i->domain_attr->name, ifname, strlen(ifname)) == 0) ifnameMatches = true;
    }
    if (!ifnameMatches) OFI_LOG(kLogWarn, "ofi: CHORUS_SOCKET_IFNAME=%s matches no %s domain: using all", ifname, prov.c_str());
  }
  std::vector<fi_info*> picked[2];  // [0] other domains, [1] loopback (last)
  std::vector<std::string> seen;
  for (fi_info* i = list; i != nullptr; i = i->next) {
    const char* dom = i->domain_attr->name;
    if (prov != i->fabric_attr->prov_name || dom == nullptr) continue;
    bool dup = false;
    for (const std::string& s : seen) dup = dup || s == dom;
    if (dup) continue;  // the first entry of a domain is the provider's preferred one (IPv4 before IPv6 on tcp)
    if (domains != nullptr && domains[0] != '\0' && !inList(domains, dom)) continue;
    if (ifnameMatches && strncmp(dom, ifname, strlen(ifname)) != 0) continue;
    seen.emplace_back(dom);
    fi_info* copy = fi_dupinfo(i);
    if (copy == nullptr) continue;
    if (!used->directed) copy->caps &= ~FI_DIRECTED_RECV;  // not asked for: not ours to use
    picked[isLoopback(dom) ? 1 : 0].push_back(copy);
  }
  fi_freeinfo(list);
  std::vector<fi_info*> out = picked[0];
  out.insert(out.end(), picked[1].begin(), picked[1].end());
  if (out.empty()) {
    OFI_LOG(kLogError, "ofi: provider %s has no domain in CHORUS_OFI_DOMAIN=%s", prov.c_str(), domains ? domains : "");
    return {};
  }
  for (size_t d = 0; d < out.size(); ++d) {
    OFI_LOG(kLogInfo, "ofi: device %zu: provider %s, fabric %s, domain %s%s%s%s", d, out[d]->fabric_attr->prov_name,
            out[d]->fabric_attr->name, out[d]->domain_attr->name, used->sas ? "" : " (no FI_ORDER_SAS)",
            used->directed ? "" : " (no FI_DIRECTED_RECV)", used->manual ? "" : " (progress not manual)");
  }
  return out;
}

}  // namespace chorus::ofi
