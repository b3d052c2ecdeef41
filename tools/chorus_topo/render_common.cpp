// Small text helpers every renderer of chorus-topo uses (see chorus_topo.h).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "chorus_topo.h"

namespace chorus::topo_tool {

std::string xmlEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 text; show them as '?'.
        out += (c < 0x20 && c != '\t' && c != '\n') ? '?' : static_cast<char>(c);
    }
  }
  return out;
}

std::string bytesText(unsigned long long bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<long long>(v)))
    std::snprintf(buf, sizeof buf, "%lld %s", static_cast<long long>(v), units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string gbpsText(double gbps) {
  if (gbps <= 0) return "speed unknown";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g Gb/s", gbps);
  return buf;
}

std::string pciClassText(unsigned classId) {
  switch (classId) {
    case 0x0108: return "NVMe";
    case 0x0200: return "Ethernet";
    case 0x0207: return "InfiniBand";
    case 0x0300: return "VGA";
    case 0x0302: return "3D controller";
    case 0x0380: return "display controller";
    case 0x0604: return "PCI bridge";
    case 0x0600: return "host bridge";
    case 0x1200: return "accelerator";
  }
  switch (classId >> 8) {
    case 0x01: return "storage";
    case 0x02: return "network";
    case 0x03: return "display";
    case 0x06: return "bridge";
    case 0x0b: return "processor";
    case 0x12: return "accelerator";
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "class %04x", classId);
  return buf;
}

bool writeFile(const std::string& path, const std::string& content) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "%s: cannot write '%s': %s\n", program_invocation_short_name, path.c_str(), std::strerror(errno));
    return false;
  }
  const bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::fprintf(stderr, "%s: writing '%s' failed: %s\n", program_invocation_short_name, path.c_str(), std::strerror(ok ? errno : err));
    return false;
  }
  return true;
}

}  // namespace chorus::topo_tool
