// Parser of the cluster description file (format: cluster_file.h, docs/TOPOLOGY.md). Line
// based: '#' starts a comment, blank lines are skipped, words are separated by blanks, and
// every option is key=value. Each error names the file, the line and the offending word.
#include "topology/cluster_file.h"

#include <fnmatch.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace chorus {
namespace {

double parsePositive(const std::string& value, const std::string& where, const char* key, bool allowZero) {
  char* end = nullptr;
  errno = 0;
  double v = strtod(value.c_str(), &end);
  bool ok = !value.empty() && end && *end == '\0' && errno == 0 && std::isfinite(v) && (allowZero ? v >= 0 : v > 0);
  CHORUS_CHECK_ARG(ok, "%s: %s=%s is not a %s number", where.c_str(), key, value.c_str(), allowZero ? "non-negative" : "positive");
  return v;
}

// "key=value" -> (key, value); throws for a word without '='.
std::pair<std::string, std::string> option(const std::string& word, const std::string& where) {
  size_t eq = word.find('=');
  CHORUS_CHECK_ARG(eq != std::string::npos && eq > 0, "%s: expected key=value, got '%s'", where.c_str(), word.c_str());
  return {word.substr(0, eq), word.substr(eq + 1)};
}

bool validName(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c == '=' || c == '#' || static_cast<unsigned char>(c) <= ' ') return false;
  return true;
}

}  // namespace

const ClusterFileHost* ClusterFile::hostFor(const std::string& hostname, const std::string& address) const {
  for (const ClusterFileHost& h : hosts) {
    if (fnmatch(h.pattern.c_str(), hostname.c_str(), 0) == 0) return &h;
    if (!address.empty() && fnmatch(h.pattern.c_str(), address.c_str(), 0) == 0) return &h;
  }
  return nullptr;
}

ClusterFile parseClusterFile(const std::string& text, const std::string& path) {
  ClusterFile file;
  file.path = path;
  std::istringstream lines(text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    if (w.empty()) continue;
    std::string where = path + ":" + std::to_string(number);
    if (w[0] == "host") {
      CHORUS_CHECK_ARG(w.size() >= 2 && w[1].find('=') == std::string::npos, "%s: 'host' needs a host name or address pattern first",
                       where.c_str());
      ClusterFileHost h;
      h.pattern = w[1];
      h.line = number;
      for (size_t i = 2; i < w.size(); ++i) {
        auto [key, value] = option(w[i], where);
        if (key == "name" || key == "group" || key == "rail") {
          CHORUS_CHECK_ARG(validName(value), "%s: %s='%s' is not a valid name", where.c_str(), key.c_str(), value.c_str());
          (key == "name" ? h.name : key == "group" ? h.group : h.rail) = value;
        } else if (key == "gbps") {
          h.gbps = parsePositive(value, where, "gbps", false);
        } else {
          CHORUS_THROW(chorusInvalidArgument, "%s: unknown host option '%s' (known: name, group, rail, gbps)", where.c_str(), key.c_str());
        }
      }
      file.hosts.push_back(h);
    } else if (w[0] == "link") {
      CHORUS_CHECK_ARG(w.size() >= 3 && validName(w[1]) && validName(w[2]),
                       "%s: 'link' needs two ends (a group, rail, host name or '*') before its options", where.c_str());
      ClusterFileLink l;
      l.a = w[1];
      l.b = w[2];
      l.line = number;
      for (size_t i = 3; i < w.size(); ++i) {
        auto [key, value] = option(w[i], where);
        if (key == "gbps")
          l.gbps = parsePositive(value, where, "gbps", false);
        else if (key == "latency_us")
          l.latencyUs = parsePositive(value, where, "latency_us", true);
        else
          CHORUS_THROW(chorusInvalidArgument, "%s: unknown link option '%s' (known: gbps, latency_us)", where.c_str(), key.c_str());
      }
      CHORUS_CHECK_ARG(l.gbps > 0 || l.latencyUs >= 0, "%s: link %s %s declares neither gbps nor latency_us", where.c_str(),
                       l.a.c_str(), l.b.c_str());
      file.links.push_back(l);
    } else if (w[0] == "fabric") {
      CHORUS_CHECK_ARG(file.fabric.shape.empty(), "%s: a second 'fabric' line (the first is line %d)", where.c_str(), file.fabric.line);
      CHORUS_CHECK_ARG(w.size() >= 2 && w[1].find('=') == std::string::npos, "%s: 'fabric' needs a shape first", where.c_str());
      file.fabric.shape = w[1];
      file.fabric.line = number;
      for (size_t i = 2; i < w.size(); ++i) file.fabric.options.push_back(option(w[i], where));
    } else {
      CHORUS_THROW(chorusInvalidArgument, "%s: unknown directive '%s' (known: host, link, fabric)", where.c_str(), w[0].c_str());
    }
  }
  return file;
}

ClusterFile loadClusterFile(const std::string& path) {
  std::ifstream in(path);
  CHORUS_CHECK_ARG(in.good(), "CHORUS_CLUSTER_FILE=%s cannot be read: %s", path.c_str(), strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return parseClusterFile(text.str(), path);
}

}  // namespace chorus
