// pynn._core.Network: the compiled model behind pynn.Sequential.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <mutex>

#include "bindings/descriptors.h"
#include "bindings/model_lock.h"

#include "bindings/util.h"
#include "nn/network.h"

namespace pynn::bind {

namespace {

// One Network plus the lock that serialises calls on it: the GIL is released while it
// computes, and its buffers are shared by every call.
//
// Locking rule: never wait for the GIL while holding `mu`. Compute releases the GIL first and
// then takes `mu`; short calls that need Python objects take `mu` while holding the GIL (they
// never wait for the GIL inside), so a training thread and a caller cannot deadlock, and no
// call can change the network under a running step.
struct PyNetwork {
  std::unique_ptr<nn::Network> net;
  ModelLock mu;  // always taken exclusively: predict shares the network's buffers
  explicit PyNetwork(int64_t w) : net(std::make_unique<nn::Network>(w)) {}
  std::unique_lock<std::shared_timed_mutex> lock() { return mu.exclusive(); }
};

// Checks, under the lock, that the shapes validated with the GIL still match the network
// (another thread may have changed it in between) and that the targets suit the loss.
std::string step_error(const nn::Network& net, int64_t in_w, int64_t out_w, bool has_y,
                       bool has_labels) {
  if (net.input_width() != in_w || net.output_width() != out_w)
    return "the model changed while the call was starting; call again";
  if (!net.has_loss()) return "the model has no loss: compile it first";
  const bool sparse = nn::loss_descriptor(net.loss().kind).target == nn::LossTarget::labels;
  if (sparse && !has_labels)
    return "labels: sparse_categorical_crossentropy needs int32 labels, not dense targets";
  if (!sparse && !has_y)
    return "y: this loss needs float32 targets (labels are only for "
           "sparse_categorical_crossentropy)";
  return "";
}

nn::Param& param_at(PyNetwork& self, int i) {
  auto ps = self.net->params();
  if (i < 0 || i >= int(ps.size()))
    throw py::index_error("parameter index " + std::to_string(i) + " out of range");
  return *ps[size_t(i)];
}

py::array_t<float> copy_out(const std::vector<float>& v, const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> sh(shape.begin(), shape.end());
  py::array_t<float> a(sh);
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(float));
  return a;
}

void copy_in(std::vector<float>& dst, const py::array& src, const char* what) {
  const float* p = c_contiguous(src, what, int(src.ndim()));
  if (size_t(src.size()) != dst.size())
    throw py::value_error(std::string(what) + ": expected " + std::to_string(dst.size()) +
                          " values, got " + std::to_string(src.size()));
  if (!dst.empty()) std::memcpy(dst.data(), p, dst.size() * sizeof(float));
}

struct BatchArgs {
  const float* x;
  int64_t ldx;
  int64_t out_w = 0;
  const float* y = nullptr;
  const int32_t* labels = nullptr;
  const float* sw = nullptr;
  const int64_t* idx = nullptr;
  int64_t batch = 0;
};

BatchArgs batch_args(PyNetwork& self, const py::array& x, const py::object& y,
                     const py::object& labels, const py::object& sw, const py::object& idx) {
  BatchArgs a;
  {
    auto lock = self.lock();
    a.out_w = self.net->output_width();
  }
  const float* xp = c_contiguous(x, "x", 2);
  if (x.shape(1) != self.net->input_width())
    throw py::value_error("x: expected " + std::to_string(self.net->input_width()) +
                          " features, got " + std::to_string(x.shape(1)));
  a.x = xp;
  a.ldx = x.shape(1);
  const int64_t rows = x.shape(0);
  if (!y.is_none()) {
    py::array ya = y.cast<py::array>();
    a.y = c_contiguous(ya, "y", 2);
    if (ya.shape(0) != rows || ya.shape(1) != a.out_w)
      throw py::value_error("y: expected shape (rows of x, output width)");
  } else if (!labels.is_none()) {
    py::array la = labels.cast<py::array>();
    if (!py::isinstance<py::array_t<int32_t>>(la) || la.ndim() != 1 || la.shape(0) != rows ||
        !(la.flags() & py::array::c_style))
      throw py::value_error("labels: expected a contiguous int32 vector with a label per row");
    // Range: the Python layer checks every label once per fit; the loss kernel checks the
    // gathered batch before reading with it (an O(rows) scan here would run every step).
    a.labels = static_cast<const int32_t*>(la.data());
  } else {
    throw py::value_error("either y or labels is required");
  }
  if (!sw.is_none()) {
    py::array swa = sw.cast<py::array>();
    a.sw = c_contiguous(swa, "sample_weight", 1);
    if (swa.shape(0) != rows) throw py::value_error("sample_weight: expected one weight per row");
  }
  if (!idx.is_none()) {
    py::array ia = idx.cast<py::array>();
    if (!py::isinstance<py::array_t<int64_t>>(ia) || ia.ndim() != 1 ||
        !(ia.flags() & py::array::c_style))
      throw py::value_error("idx: expected a contiguous int64 vector");
    a.idx = static_cast<const int64_t*>(ia.data());
    a.batch = ia.shape(0);
    for (int64_t i = 0; i < a.batch; ++i)
      if (a.idx[i] < 0 || a.idx[i] >= rows)
        throw py::index_error("idx: row index " + std::to_string(a.idx[i]) + " out of range");
  } else {
    a.batch = rows;
  }
  return a;
}

// train_step and test_step share their argument handling; only the engine call differs.
// With want_output, the step's output probabilities are copied out under the same lock, so a
// predict in another thread cannot replace them before the caller reads them.
template <bool kTrain>
py::tuple run_step(PyNetwork& s, py::array x, py::object y, py::object labels, py::object sw,
                   py::object idx, bool want_output) {
  BatchArgs a = batch_args(s, x, y, labels, sw, idx);
  py::object out_obj = py::none();
  float* out = nullptr;
  if (want_output) {
    py::array_t<float> arr({py::ssize_t(a.batch), py::ssize_t(a.out_w)});
    out = arr.mutable_data();
    out_obj = arr;
  }
  nn::StepResult r;
  std::string err;
  {
    ComputeCall nogil;
    auto lock = s.mu.exclusive();
    err = step_error(*s.net, a.ldx, a.out_w, a.y != nullptr, a.labels != nullptr);
    if (err.empty() && kTrain && !s.net->has_optimizer()) err = "the model has no optimizer";
    if (err.empty()) {
      r = kTrain ? s.net->train_step(a.x, a.ldx, a.y, a.labels, a.sw, a.idx, a.batch)
                 : s.net->test_step(a.x, a.ldx, a.y, a.labels, a.sw, a.idx, a.batch);
      if (out != nullptr && a.batch > 0)
        std::memcpy(out, s.net->last_output(), sizeof(float) * size_t(a.batch * a.out_w));
    }
  }
  if (!err.empty()) throw py::value_error(err);
  return py::make_tuple(r.loss, r.correct, out_obj);
}

}  // namespace

void register_network(py::module_& m) {
  py::class_<PyNetwork>(m, "Network")
      .def(py::init<int64_t>(), py::arg("input_width"))
      .def("add_dense",
           [](PyNetwork& s, int64_t units, const std::string& act, std::vector<float> params,
              bool use_bias) {
             auto lock = s.lock();
             return s.net->add_dense(units, act, std::move(params), use_bias);
           },
           py::arg("units"), py::arg("activation") = "linear",
           py::arg("act_params") = std::vector<float>{}, py::arg("use_bias") = true)
      .def("add_activation",
           [](PyNetwork& s, const std::string& act, std::vector<float> params, uint64_t seed) {
             auto lock = s.lock();
             return s.net->add_activation(act, std::move(params), seed);
           },
           py::arg("activation"), py::arg("act_params") = std::vector<float>{},
           py::arg("seed") = 0)
      .def("add_dropout",
           [](PyNetwork& s, float rate, uint64_t seed) {
             auto lock = s.lock();
             return s.net->add_dropout(rate, seed);
           },
           py::arg("rate"), py::arg("seed"))
      .def("add_batchnorm",
           [](PyNetwork& s, float momentum, float eps, bool center, bool scale) {
             auto lock = s.lock();
             return s.net->add_batchnorm(momentum, eps, center, scale);
           },
           py::arg("momentum"), py::arg("eps"), py::arg("center"), py::arg("scale"))
      .def("add_prelu", [](PyNetwork& s) {
        auto lock = s.lock();
        return s.net->add_prelu();
      })
      .def_property_readonly("input_width",
                             getter([](PyNetwork& s) { return s.net->input_width(); }))
      .def_property_readonly("output_width", getter([](PyNetwork& s) {
                               auto lock = s.lock();
                               return s.net->output_width();
                             }))
      .def("num_params", [](PyNetwork& s) {
        auto lock = s.lock();
        return s.net->params().size();
      })
      .def("set_frozen",
           [](PyNetwork& s, int i, bool frozen) {
             auto lock = s.lock();
             param_at(s, i).frozen = frozen;
           },
           py::arg("i"), py::arg("frozen"),
           "Frozen parameters keep their values in training (Keras trainable=False); takes "
           "effect at the next set_optimizer.")
      .def("param_info",
           [](PyNetwork& s, int i) {
             auto lock = s.lock();
             nn::Param& p = param_at(s, i);
             return py::make_tuple(p.name, p.shape, p.trainable);
           },
           py::arg("i"))
      .def("get_param", [](PyNetwork& s, int i) {
        auto lock = s.mu.exclusive();
        nn::Param& p = param_at(s, i);
        return copy_out(p.value, p.shape);
      }, py::arg("i"))
      .def("set_param", [](PyNetwork& s, int i, py::array a) {
        auto lock = s.mu.exclusive();
        copy_in(param_at(s, i).value, a, "value");
      }, py::arg("i"), py::arg("value"))
      .def("get_grad", [](PyNetwork& s, int i) {
        auto lock = s.mu.exclusive();
        nn::Param& p = param_at(s, i);
        return copy_out(p.grad, p.shape);
      }, py::arg("i"))
      .def("set_regularization",
           [](PyNetwork& s, int i, float l1, float l2) {
             auto lock = s.lock();
             s.net->set_regularization(i, l1, l2);
           },
           py::arg("i"), py::arg("l1"), py::arg("l2"))
      .def("set_loss",
           [](PyNetwork& s, const std::string& kind, bool from_logits, float delta) {
             nn::LossConfig c;
             c.kind = loss_or_throw(kind, "kind").kind;
             c.from_logits = from_logits;
             c.huber_delta = delta;
             if (const std::string err = nn::loss_config_error(c, false); !err.empty())
               throw py::value_error(err);
             auto lock = s.lock();
             s.net->set_loss(c);
           },
           py::arg("kind"), py::arg("from_logits") = false, py::arg("delta") = 1.0f)
      .def("set_optimizer",
           [](PyNetwork& s, const std::string& kind, py::object cfg) {
             const nn::OptConfig c = parse_optimizer_config(kind, cfg);
             auto lock = s.lock();
             s.net->set_optimizer(c);
           },
           py::arg("kind"), py::arg("cfg") = py::none(),
           "Sets the optimizer: Keras defaults of `kind` overridden by the dict `cfg` (checked "
           "like optimizer_config); resets iterations and slots.")
      .def_property(
          "learning_rate",
          getter([](PyNetwork& s) {
            auto lock = s.lock();
            return s.net->learning_rate();
          }),
          setter([](PyNetwork& s, float lr) {
            auto lock = s.lock();
            s.net->set_learning_rate(lr);
          }))
      .def_property(
          "iterations",
          getter([](PyNetwork& s) {
            auto lock = s.lock();
            return s.net->iterations();
          }),
          setter([](PyNetwork& s, int64_t t) {
            auto lock = s.lock();
            s.net->set_iterations(t);
          }))
      .def_property(
          "u_product",
          getter([](PyNetwork& s) {
            auto lock = s.lock();
            return s.net->optimizer_scalars().u_product;
          }),
          setter([](PyNetwork& s, double u) {
            auto lock = s.lock();
            s.net->optimizer_scalars().u_product = u;
          }))
      .def("num_slots",
           [](PyNetwork& s, int i) {
             auto lock = s.lock();
             return param_at(s, i).slots.size();
           },
           py::arg("i"))
      .def("get_slot",
           [](PyNetwork& s, int i, int k) {
             auto lock = s.lock();
             nn::Param& p = param_at(s, i);
             if (k < 0 || k >= int(p.slots.size()))
               throw py::index_error("slot index out of range");
             return copy_out(p.slots[size_t(k)], p.shape);
           },
           py::arg("i"), py::arg("k"))
      .def("set_slot",
           [](PyNetwork& s, int i, int k, py::array a) {
             auto lock = s.lock();
             nn::Param& p = param_at(s, i);
             if (k < 0 || k >= int(p.slots.size()))
               throw py::index_error("slot index out of range");
             copy_in(p.slots[size_t(k)], a, "slot");
           },
           py::arg("i"), py::arg("k"), py::arg("value"))
      .def("train_step", &run_step<true>, py::arg("x"), py::arg("y"), py::arg("labels"),
           py::arg("sample_weight"), py::arg("idx"), py::arg("want_output") = false,
           "One training step (forward, loss, backward, update) on the rows idx (all if None); "
           "returns (batch loss, correct rows, output probabilities or None).")
      .def("test_step", &run_step<false>, py::arg("x"), py::arg("y"), py::arg("labels"),
           py::arg("sample_weight"), py::arg("idx"), py::arg("want_output") = false,
           "The loss of the rows idx (all if None) in inference mode; returns (loss, correct, "
           "output or None).")
      .def("last_output", [](PyNetwork& s) {
        auto lock = s.mu.exclusive();
        const float* src = s.net->last_output();
        const int64_t n = src ? s.net->last_batch() : 0, c = s.net->output_width();
        py::array_t<float> out({py::ssize_t(n), py::ssize_t(c)});
        if (n > 0) std::memcpy(out.mutable_data(), src, sizeof(float) * size_t(n * c));
        return out;
      })
      .def("predict",
           [](PyNetwork& s, py::array x, py::array out, int64_t chunk) {
             const float* xp = c_contiguous(x, "x", 2);
             float* op = mutable_c_contiguous(out, "out", 2);
             if (chunk <= 0) throw py::value_error("chunk must be positive");
             const int64_t n = x.shape(0), ld = x.shape(1), ow = out.shape(1);
             if (out.shape(0) != n) throw py::value_error("out: expected one row per row of x");
             std::string err;
             {
               ComputeCall nogil;
               auto lock = s.mu.exclusive();
               if (ld != s.net->input_width())
                 err = "x: expected " + std::to_string(s.net->input_width()) +
                       " features, got " + std::to_string(ld);
               else if (ow != s.net->output_width())
                 err = "out: expected " + std::to_string(s.net->output_width()) + " columns";
               else if (n > 0)
                 s.net->predict(xp, ld, n, op, chunk);
             }
             if (!err.empty()) throw py::value_error(err);
             return out;
           },
           py::arg("x"), py::arg("out"), py::arg("chunk"))
      .def("input_gradient", [](PyNetwork& s, py::array x, py::array seed) {
        const float* xp = c_contiguous(x, "x", 2);
        const float* sp = c_contiguous(seed, "seed", 2);
        const int64_t n = x.shape(0), ld = x.shape(1);
        if (seed.shape(0) != n) throw py::value_error("seed: expected one row per row of x");
        py::array_t<float> dx({py::ssize_t(n), py::ssize_t(ld)});
        float* dp = dx.mutable_data();
        const int64_t sw = seed.shape(1);
        std::string err;
        {
          ComputeCall nogil;
          auto lock = s.mu.exclusive();
          if (ld != s.net->input_width())
            err = "x: expected " + std::to_string(s.net->input_width()) + " features";
          else if (sw != s.net->output_width())
            err = "seed: expected " + std::to_string(s.net->output_width()) + " columns";
          else if (n > 0)
            s.net->input_gradient(xp, ld, n, sp, dp);
        }
        if (!err.empty()) throw py::value_error(err);
        return dx;
      },
      py::arg("x"), py::arg("seed"));
}

}  // namespace pynn::bind
