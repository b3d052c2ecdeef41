// For tools and tests inside the project: the Communicator behind a C handle (chorus-topo
// prints its cluster topology). Not part of the public API.
#pragma once

#include <chorus/chorus.h>

namespace chorus {

class Communicator;
// Throws chorusInvalidArgument when `comm` is not a live communicator. The handle must stay
// alive (not destroyed) while the reference is used.
Communicator& communicatorOf(chorusComm_t comm);

}  // namespace chorus
