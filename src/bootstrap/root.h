// Private to src/bootstrap: the root rendezvous service (see root.cpp for the protocol).
#pragma once

#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"

namespace chorus {

// Starts a detached thread that serves exactly one rendezvous on `listener` (already listening)
// for the communicator of `id`, then closes everything and exits. It gives up, telling every
// rank that checked in which ranks never did, timeoutSec after it started.
void launchRootThread(Fd listener, const UniqueIdData& id, double timeoutSec);

}  // namespace chorus
