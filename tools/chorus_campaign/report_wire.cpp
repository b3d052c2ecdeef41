#include "report_wire.h"

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

namespace chorus::campaign {

double monotonicNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void sendRecord(int fd, RecordTag tag, const std::vector<std::string>& fields, const std::string& text) {
  std::string line(1, static_cast<char>(tag));
  for (const std::string& f : fields) line += " " + f;
  line += '\t';
  for (char c : text) line += (c == '\n' || c == '\t' || c == '\r') ? ' ' : c;
  line += '\n';
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(fd, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

void RecordReader::feed(const char* data, size_t n) {
  buffer_.append(data, n);
}

bool RecordReader::next(Record* out) {
  const size_t end = buffer_.find('\n');
  if (end == std::string::npos) return false;
  const std::string line = buffer_.substr(0, end);
  buffer_.erase(0, end + 1);
  const size_t tab = line.find('\t');
  const std::string head = line.substr(0, tab);
  *out = Record{};
  out->text = tab == std::string::npos ? "" : line.substr(tab + 1);
  std::istringstream in(head);
  std::string tagText;
  in >> tagText;
  out->tag = tagText.empty() ? 0 : tagText[0];
  for (std::string f; in >> f;) out->fields.push_back(f);
  return true;
}

}  // namespace chorus::campaign
