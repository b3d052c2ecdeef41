// What a rank tells the campaign's parent, one line per record over its own pipe:
//   "<tag> <field> <field>...\t<text>\n"   (the text has no tabs or newlines)
// Times are CLOCK_MONOTONIC seconds, the same clock in every process of the machine, so the
// parent can subtract the victim's fault time from a survivor's error time.
#pragma once

#include <string>
#include <vector>

namespace chorus::campaign {

enum RecordTag : char {
  kReady = 'R',       // joined the communicator: <t>
  kInitFailed = 'I',  // chorusCommInitRank failed: <code>, text
  kEntering = 'C',    // (mid-call victim, or a survivor after the fault moment) entering call <k>: <k> <t> <mean call s>
  kFault = 'F',       // the fault happens now (a victim signalling itself, a culprit's skewed call): <t>
  kWrong = 'W',       // call <k> returned success with a wrong element: <k> <wrong elements> <index>, text
  kSkewPassed = 'S',  // call <k>, the mismatched one, returned success on this rank: <k>
  kError = 'E',       // call <k> failed: <code> <k> <t>, text (chorusGetLastError)
  kAborted = 'A',     // chorusCommAbort returned after <seconds>
};

double monotonicNow();

// Child side: writes one record (best effort: the parent may be gone).
void sendRecord(int fd, RecordTag tag, const std::vector<std::string>& fields, const std::string& text = "");

struct Record {
  char tag = 0;
  std::vector<std::string> fields;
  std::string text;
};

// Parent side: bytes in, whole records out.
class RecordReader {
 public:
  void feed(const char* data, size_t n);
  bool next(Record* out);

 private:
  std::string buffer_;
};

}  // namespace chorus::campaign
