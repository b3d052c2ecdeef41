"""Chorus as a torch.distributed backend.

    import chorus_torch                      # registers backend "chorus"
    torch.distributed.init_process_group("chorus")

Every torch.distributed collective and point-to-point call then runs over Chorus (CPU tensors).
docs/PYTORCH.md lists what is supported and how errors surface.
"""

import atexit as _atexit

import torch.distributed as _dist

from ._C import ProcessGroupChorus, _shutdown_all, create_process_group, version

BACKEND_NAME = "chorus"

__all__ = ["BACKEND_NAME", "ProcessGroupChorus", "create_process_group", "version"]


def _register():
    # Importing twice (or from two paths) must not fail: register only once per process.
    if BACKEND_NAME.upper() in getattr(_dist.Backend, "_plugins", {}):
        return
    _dist.Backend.register_backend(BACKEND_NAME, create_process_group)


_register()
# Groups never destroyed are still live at exit: finish their queued calls and stop their runner
# threads while Python can still run the callbacks those calls complete.
_atexit.register(_shutdown_all)
