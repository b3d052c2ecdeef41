// The Python module chorus_torch._C: the ProcessGroupChorus class (a torch.distributed
// ProcessGroup) and the creator torch calls for backend "chorus" (chorus_torch/__init__.py
// registers it).
#include <pybind11/chrono.h>
#include <torch/csrc/utils/pybind.h>

#include <chorus/chorus.h>

#include "process_group.h"

namespace py = pybind11;

namespace {

c10::intrusive_ptr<chorus_torch::ProcessGroupChorus> createProcessGroup(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                                        int size, std::chrono::duration<double> timeout) {
  return c10::make_intrusive<chorus_torch::ProcessGroupChorus>(
      store, rank, size, std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Chorus collectives as a torch.distributed process group (backend 'chorus')";
  py::object base = py::module::import("torch.distributed").attr("ProcessGroup");
  py::class_<chorus_torch::ProcessGroupChorus, c10::intrusive_ptr<chorus_torch::ProcessGroupChorus>>(m, "ProcessGroupChorus",
                                                                                                       base)
      .def(py::init(&createProcessGroup), py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("timeout"),
           py::call_guard<py::gil_scoped_release>(),
           "Joins a Chorus communicator of `size` ranks through `store` (rank 0 publishes the unique id).")
      .def_property_readonly("timeout", &chorus_torch::ProcessGroupChorus::timeout);
  m.def("create_process_group", &createProcessGroup, py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("timeout"),
        py::call_guard<py::gil_scoped_release>(), "torch.distributed's creator function for backend 'chorus'.");
  m.def("_shutdown_all", &chorus_torch::ProcessGroupChorus::shutdownAll, py::call_guard<py::gil_scoped_release>(),
        "Runs what every chorus group has queued and stops their runner threads (at exit).");
  m.def("version", [] {
    int v = 0;
    chorusGetVersion(&v);
    return v;
  });
}
