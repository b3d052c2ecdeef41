// The transports a campaign may run over, as the user names them ("shm", "tcp", "ucx", "ofi",
// or one variant: "ucx:tcp", "ucx:sm", "ofi:tcp", "ofi:shm"), and the environment each variant
// sets in the ranks. A bare "ucx" or "ofi" lets each trial draw one of its variants.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace chorus::campaign {

struct TransportVariant {
  std::string label;                                     // "shm", "tcp", "ucx/tcp", "ofi/shm": how trials and tables name it
  std::string transport;                                 // the value of CHORUS_TRANSPORT
  std::vector<std::pair<std::string, std::string>> env;  // what else the ranks set
};

// One entry of --transports: the variants a trial may draw from it.
struct TransportChoice {
  std::string name;  // as the user wrote it
  std::vector<TransportVariant> variants;
};

// Transports this build of Chorus has (shm and tcp always; ucx and ofi when built).
std::vector<std::string> builtTransports();

// Parses a comma list; an unknown or unbuilt transport is an error whose text is in *error.
bool parseTransports(const std::string& list, std::vector<TransportChoice>* out, std::string* error);

}  // namespace chorus::campaign
