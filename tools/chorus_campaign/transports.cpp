#include "transports.h"

#include <sstream>

namespace chorus::campaign {
namespace {

// Loopback only: a campaign runs every rank on this host, and UCX and libfabric would
// otherwise pick their own devices.
std::vector<TransportVariant> variantsOf(const std::string& base) {
  if (base == "shm" || base == "tcp") return {{base, base, {}}};
  if (base == "ucx")
    return {{"ucx/tcp", "ucx", {{"UCX_TLS", "tcp"}, {"UCX_NET_DEVICES", "lo"}}},
            {"ucx/sm", "ucx", {{"UCX_TLS", "sm,tcp"}, {"UCX_NET_DEVICES", "lo"}}}};
  if (base == "ofi")
    return {{"ofi/tcp", "ofi", {{"CHORUS_OFI_PROVIDER", "tcp;ofi_rxm"}}}, {"ofi/shm", "ofi", {{"CHORUS_OFI_PROVIDER", "shm"}}}};
  return {};
}

}  // namespace

std::vector<std::string> builtTransports() {
  std::vector<std::string> out = {"shm", "tcp"};
#ifdef CHORUS_HAVE_UCX
  out.push_back("ucx");
#endif
#ifdef CHORUS_HAVE_OFI
  out.push_back("ofi");
#endif
  return out;
}

bool parseTransports(const std::string& list, std::vector<TransportChoice>* out, std::string* error) {
  const std::vector<std::string> built = builtTransports();
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    const std::string base = item.substr(0, colon);
    bool isBuilt = false;
    for (const std::string& b : built) isBuilt |= b == base;
    std::vector<TransportVariant> variants = variantsOf(base);
    if (variants.empty() || !isBuilt) {
      std::string names;
      for (const std::string& b : built) names += (names.empty() ? "" : ", ") + b;
      *error = "transport '" + base + "' is " + (variants.empty() ? "unknown" : "not built") + " (this build has: " + names + ")";
      return false;
    }
    if (colon != std::string::npos) {
      const std::string want = base + "/" + item.substr(colon + 1);
      std::vector<TransportVariant> one;
      for (const TransportVariant& v : variants)
        if (v.label == want) one.push_back(v);
      if (one.empty()) {
        *error = "transport '" + item + "': no such variant (" + base + " has:";
        for (const TransportVariant& v : variants) *error += " " + v.label.substr(base.size() + 1);
        *error += ")";
        return false;
      }
      variants = one;
    }
    out->push_back({item, variants});
  }
  if (out->empty()) {
    *error = "no transport given";
    return false;
  }
  return true;
}

}  // namespace chorus::campaign
