// pynn._core.Graph: the N-D graph engine (nn/graph.h) for functional models.
//
// Every argument is checked here, with the GIL held, against a snapshot of the graph's shapes
// taken under the lock; the computation then runs with the GIL released under the lock, after
// checking that the graph did not change in between (its version). Errors are ValueError,
// TypeError or IndexError naming the argument, what was expected and what was given.
//
// Locking rule (as PyNetwork's): never wait for the GIL while holding `mu`. Compute calls
// release the GIL first and then take `mu`; short calls take `mu` while holding the GIL and
// never wait for the GIL inside. predict (and the argument snapshot) take `mu` shared, so
// predictions from several threads on one model run in parallel; everything else takes it
// alone (bindings/model_lock.h, which also keeps fork() safe).
//
// Parameters are the caller's arrays, held by reference (`refs`) so that their memory lives
// as long as the graph.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "bindings/descriptors.h"
#include "bindings/model_lock.h"
#include "bindings/util.h"
#include "common/parallel.h"
#include "nn/graph.h"

namespace pynn::bind {

namespace {

using nn::Shape;

std::string type_name(const py::handle& h) {
  return py::str(py::type::of(h).attr("__name__"));
}

std::string shape_of(const py::array& a) {
  Shape s;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s.push_back(int64_t(a.shape(d)));
  return nn::shape_str(s);
}

// "(rows, 3, 4)"
std::string rows_shape(const Shape& s) {
  std::string out = "(rows";
  for (int64_t d : s) out += ", " + std::to_string(d);
  return out + ")";
}

// What argument checks need, read under the lock; the same for every call until the graph
// changes (its version), so it is made once per version and shared.
struct Snapshot {
  uint64_t version = 0;
  std::vector<Shape> in_shapes, out_shapes;
  std::vector<int64_t> out_sizes;
  std::vector<nn::GraphLoss> losses;
  bool has_losses = false;
};

struct PyGraph {
  std::unique_ptr<nn::Graph> g = std::make_unique<nn::Graph>();
  ModelLock mu;  // predict shares it, everything else takes it alone
  std::vector<py::object> refs;  // the parameter arrays, kept alive
  std::shared_ptr<const Snapshot> snap;  // written by snapshot() only, with the GIL held
  std::unique_lock<std::shared_timed_mutex> lock() { return mu.exclusive(); }
};

struct SnapshotRef {
  std::shared_ptr<const Snapshot> p;
  bool has_opt = false;  // not structural: read live
  const Snapshot* operator->() const { return p.get(); }
};

SnapshotRef snapshot(PyGraph& s) {
  // Shared: it only reads the graph (s.snap itself is guarded by the GIL, which every caller
  // holds), so it does not wait for the predicts running on other threads.
  auto lock = s.mu.shared();
  nn::Graph& g = *s.g;
  if (!s.snap || s.snap->version != g.version()) {
    auto sn = std::make_shared<Snapshot>();
    sn->version = g.version();
    for (int t : g.inputs()) sn->in_shapes.push_back(g.tensor_shape(t));
    for (int t : g.outputs()) {
      sn->out_shapes.push_back(g.tensor_shape(t));
      sn->out_sizes.push_back(g.tensor_size(t));
    }
    sn->has_losses = g.has_losses();
    for (size_t j = 0; j < g.outputs().size(); ++j) sn->losses.push_back(g.loss(int(j)));
    s.snap = std::move(sn);
  }
  return {s.snap, g.has_optimizer()};
}

// The list (or tuple) `o` of `want` items; only the error path builds strings.
py::sequence as_list(const py::object& o, const char* what, size_t want, const char* per) {
  if (!py::isinstance<py::list>(o) && !py::isinstance<py::tuple>(o))
    throw py::type_error(std::string(what) + ": expected a list of arrays (one per " + per +
                         "), got " + type_name(o));
  py::sequence seq = py::reinterpret_borrow<py::sequence>(o);
  if (seq.size() != want)
    throw py::value_error(std::string(what) + ": expected " + std::to_string(want) +
                          " array(s) (one per " + per + "), got " + std::to_string(seq.size()));
  return seq;
}

std::string item(const char* what, size_t i) {
  return std::string(what) + "[" + std::to_string(i) + "]";
}

// what[i]: a float32 C-contiguous array of shape (rows, *shape) or (rows, prod(shape)), with
// `rows` rows when rows >= 0.
// True when `a` holds rows of `shape`: (rows,) + shape, or (rows, size of shape).
bool rows_of_shape(const py::array& a, const Shape& shape) {
  bool ok = a.ndim() == py::ssize_t(shape.size()) + 1;
  for (size_t d = 0; ok && d < shape.size(); ++d) ok = a.shape(py::ssize_t(d) + 1) == shape[d];
  return ok || (a.ndim() == 2 && a.shape(1) == nn::shape_size(shape));
}

py::array sample_array(const py::handle& o, const char* what, size_t i, const Shape& shape,
                       bool writable, int64_t rows) {
  if (!py::isinstance<py::array>(o))
    throw py::type_error(item(what, i) + ": expected a float32 numpy array, got " + type_name(o));
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (a.dtype().kind() != 'f' || a.itemsize() != 4)
    throw py::type_error(item(what, i) + ": expected float32, got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(item(what, i) + ": expected a C-contiguous array");
  if (writable && !a.writeable()) throw py::value_error(item(what, i) + ": array is read-only");
  if (!rows_of_shape(a, shape))
    throw py::value_error(item(what, i) + ": expected shape " + rows_shape(shape) + " or " +
                          rows_shape({nn::shape_size(shape)}) + ", got " + shape_of(a));
  if (rows >= 0 && a.shape(0) != rows)
    throw py::value_error(item(what, i) + ": expected " + std::to_string(rows) +
                          " rows (as xs[0]), got " + std::to_string(a.shape(0)));
  return a;
}

void check_rows(const py::array& a, const std::string& what, int64_t rows) {
  if (a.shape(0) != rows)
    throw py::value_error(what + ": expected " + std::to_string(rows) + " rows (as xs[0]), got " +
                          std::to_string(a.shape(0)));
}

struct XArgs {
  std::vector<py::array> keep;
  std::vector<const float*> ptr;
  int64_t rows = 0;
};

XArgs parse_xs(const py::object& xs, const SnapshotRef& sn) {
  XArgs r;
  py::sequence items = as_list(xs, "xs", sn->in_shapes.size(), "graph input");
  const size_t n = sn->in_shapes.size();
  r.keep.reserve(n);
  r.ptr.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    py::array a = sample_array(items[i], "xs", i, sn->in_shapes[i], false, i == 0 ? -1 : r.rows);
    if (i == 0) r.rows = a.shape(0);
    r.ptr.push_back(static_cast<const float*>(a.data()));
    r.keep.push_back(std::move(a));
  }
  return r;
}

// A new float array of `rows` samples of `shape` each.
py::array_t<float> rows_array(int64_t rows, const Shape& shape) {
  std::vector<py::ssize_t> sh{py::ssize_t(rows)};
  for (int64_t d : shape) sh.push_back(py::ssize_t(d));
  return py::array_t<float>(sh);
}

// predict's argument tables, reused by each thread's next call (cleared on the way out,
// with the GIL held, so no array reference outlives the call).
// Inference under the model's shared lock (predicts on one graph run side by side), without
// the GIL. The graph must still be the one `sn` describes (the arrays were checked against it).
void run_predict(PyGraph& s, const SnapshotRef& sn, const float* const* x, int64_t rows,
                 float* const* out, int64_t chunk) {
  bool stale = false;
  {
    ComputeCall nogil;
    auto lock = s.mu.shared();
    if (s.g->version() != sn->version) stale = true;
    else s.g->predict(x, rows, out, chunk);
  }
  if (stale) throw py::value_error("the graph changed while the call was starting; call again");
}

struct PredictTables {
  std::vector<py::object> keep;
  std::vector<const float*> x;
  std::vector<float*> out;
};
struct ClearOnExit {
  PredictTables& t;
  ~ClearOnExit() {
    t.keep.clear();
    t.x.clear();
    t.out.clear();
  }
};

const int64_t* parse_idx(const py::object& idx, int64_t rows, int64_t& batch, py::array& keep) {
  if (idx.is_none()) {
    batch = rows;
    return nullptr;
  }
  if (!py::isinstance<py::array_t<int64_t>>(idx))
    throw py::type_error("idx: expected an int64 numpy array or None, got " + type_name(idx));
  keep = idx.cast<py::array>();
  if (keep.dtype().kind() != 'i' || keep.itemsize() != 8)
    throw py::type_error("idx: expected int64, got " + std::string(py::str(keep.dtype())));
  if (keep.ndim() != 1 || !(keep.flags() & py::array::c_style))
    throw py::value_error("idx: expected a contiguous 1-D array, got shape " + shape_of(keep));
  const int64_t* p = static_cast<const int64_t*>(keep.data());
  batch = keep.shape(0);
  for (int64_t i = 0; i < batch; ++i)
    if (p[i] < 0 || p[i] >= rows)
      throw py::index_error("idx[" + std::to_string(i) + "]: row " + std::to_string(p[i]) +
                            " out of range for " + std::to_string(rows) + " rows");
  return p;
}

struct StepArgs {
  XArgs x;
  std::vector<py::array> keep;
  std::vector<const float*> y, sw;
  std::vector<char> sw_steps;
  std::vector<const int32_t*> labels;
  py::array idx_keep;
  nn::StepData d;
};

void parse_step(StepArgs& s, const SnapshotRef& sn, const py::object& xs, const py::object& ys,
                const py::object& sws, const py::object& idx) {
  s.x = parse_xs(xs, sn);
  const size_t no = sn->out_shapes.size();
  py::sequence ys_seq = as_list(ys, "ys", no, "output");
  std::vector<py::object> yl, wl(no, py::none());
  for (size_t j = 0; j < no; ++j) yl.push_back(ys_seq[j]);
  if (!sws.is_none()) {
    py::sequence w = as_list(sws, "sample_weights", no, "output");
    for (size_t j = 0; j < no; ++j) wl[j] = w[j];
  }
  const int64_t rows = s.x.rows;
  s.y.assign(no, nullptr);
  s.sw.assign(no, nullptr);
  s.sw_steps.assign(no, 0);
  s.labels.assign(no, nullptr);
  for (size_t j = 0; j < no; ++j) {
    const std::string w = "ys[" + std::to_string(j) + "]";
    const nn::GraphLoss& L = sn->losses[j];
    const Shape& os = sn->out_shapes[j];
    if (!L.has) {
      if (!yl[j].is_none())
        throw py::value_error(w + ": output " + std::to_string(j) + " has no loss; pass None");
      if (!wl[j].is_none())
        throw py::value_error("sample_weights[" + std::to_string(j) + "]: output " +
                              std::to_string(j) + " has no loss; pass None");
      continue;
    }
    const nn::LossTarget target = nn::loss_descriptor(L.cfg.kind).target;
    if (target == nn::LossTarget::none) {
      // The output already is the loss (mean_of_output): targets are not read; None is fine.
      if (!yl[j].is_none()) {
        py::array a = sample_array(yl[j], "ys", j, os, false, rows);
        s.keep.push_back(a);
      }
    } else if (yl[j].is_none()) {
      throw py::value_error(w + ": output " + std::to_string(j) +
                            " has a loss, so its targets are required");
    }
    if (target == nn::LossTarget::labels) {
      if (!py::isinstance<py::array>(yl[j]))
        throw py::type_error(w + ": expected an int32 numpy array of labels, got " + type_name(yl[j]));
      py::array a = yl[j].cast<py::array>();
      if (a.dtype().kind() != 'i' || a.itemsize() != 4)
        throw py::type_error(w + ": sparse_categorical_crossentropy needs int32 labels, got " +
                             std::string(py::str(a.dtype())));
      Shape lead(os.begin(), os.end() - 1);
      const int64_t per = nn::shape_size(lead);
      if (!(a.flags() & py::array::c_style) || a.ndim() < 1 || a.size() != a.shape(0) * per)
        throw py::value_error(w + ": expected contiguous labels of shape " + rows_shape(lead) +
                              ", got " + shape_of(a));
      check_rows(a, w, rows);
      s.labels[j] = static_cast<const int32_t*>(a.data());
      s.keep.push_back(a);
    } else if (target == nn::LossTarget::dense) {
      if (py::isinstance<py::array>(yl[j]) && yl[j].cast<py::array>().dtype().kind() != 'f')
        throw py::type_error(w + ": this loss needs float32 targets, got " +
                             std::string(py::str(yl[j].cast<py::array>().dtype())) +
                             " (integer labels are for sparse_categorical_crossentropy)");
      py::array a = sample_array(yl[j], "ys", j, os, false, rows);
      s.y[j] = static_cast<const float*>(a.data());
      s.keep.push_back(a);
    }
    if (!wl[j].is_none()) {
      const std::string ww = "sample_weights[" + std::to_string(j) + "]";
      if (!py::isinstance<py::array>(wl[j]))
        throw py::type_error(ww + ": expected a float32 numpy array, got " + type_name(wl[j]));
      py::array a = wl[j].cast<py::array>();
      // (rows,) or, for an output with several loss rows per sample, (rows, lead)
      const int64_t lead = nn::shape_size(Shape(os.begin(), os.end() - 1));
      const bool steps = a.ndim() == 2 && lead > 1;
      const float* p = c_contiguous(a, ww.c_str(), steps ? 2 : 1);
      check_rows(a, ww, rows);
      if (steps && a.shape(1) != lead)
        throw py::value_error(ww + ": expected " + std::to_string(lead) +
                              " weights per sample (one per loss row), got " + shape_of(a));
      s.sw[j] = p;
      s.sw_steps[j] = steps ? 1 : 0;
      s.keep.push_back(a);
    }
  }
  s.d.x = s.x.ptr.data();
  s.d.y = s.y.data();
  s.d.labels = s.labels.data();
  s.d.sw = s.sw.data();
  s.d.sw_steps = s.sw_steps.data();
  s.d.idx = parse_idx(idx, rows, s.d.batch, s.idx_keep);
}

// Runs f(graph) with the GIL released and the graph to itself, once it is known to be the
// graph the arguments were checked against (else a ValueError: it changed in between).
template <class F>
void compute_alone(PyGraph& s, const SnapshotRef& sn, F&& f) {
  bool stale = false;
  {
    ComputeCall nogil;
    auto lock = s.mu.exclusive();
    if (s.g->version() != sn->version) stale = true;
    else f(*s.g);
  }
  if (stale) throw py::value_error("the graph changed while the call was starting; call again");
}

template <bool kTrain>
py::tuple run_step(PyGraph& s, const py::object& xs, const py::object& ys,
                   const py::object& sws, const py::object& idx, bool want_outputs) {
  const SnapshotRef sn = snapshot(s);
  if (!sn->has_losses)
    throw py::value_error("the graph has no losses: call set_outputs and set_losses first");
  if (kTrain && !sn.has_opt)
    throw py::value_error("the graph has no optimizer: call set_optimizer first");
  StepArgs a;
  parse_step(a, sn, xs, ys, sws, idx);
  const size_t no = sn->out_shapes.size();
  std::vector<py::array_t<float>> outs;
  std::vector<float*> out_ptr;
  if (want_outputs)
    for (size_t j = 0; j < no; ++j) {
      outs.push_back(rows_array(a.d.batch, sn->out_shapes[j]));
      out_ptr.push_back(outs.back().mutable_data());
    }
  double total = 0.0;
  std::vector<double> losses;
  std::vector<int64_t> correct;
  compute_alone(s, sn, [&](nn::Graph& g) {
    if (kTrain) g.train_step(a.d);
    else g.test_step(a.d);
    total = g.step_total();
    losses = g.step_losses();
    correct = g.step_correct();
    if (want_outputs && a.d.batch > 0)
      for (size_t j = 0; j < no; ++j)
        std::memcpy(out_ptr[j], g.output_value(int(j)),
                    sizeof(float) * size_t(a.d.batch * nn::shape_size(sn->out_shapes[j])));
  });
  py::list pl, pc;
  for (double l : losses) pl.append(l);
  for (int64_t c : correct) pc.append(c);
  py::object po = py::none();
  if (want_outputs) {
    py::list l;
    for (auto& o : outs) l.append(o);
    po = l;
  }
  return py::make_tuple(total, pl, pc, po);
}

// Several training steps in one call: the rows `order` cut into consecutive batches of
// `batch_size` (the last one shorter), each a train_step exactly as run_step<true> would run
// it. fit uses it when nothing needs to see the model between batches, so the per-batch cost
// of a Python call (argument checks, result objects, the garbage collector they feed) is paid
// once per chunk. Returns (totals (steps,), losses (steps, outputs), correct (steps, outputs)).
py::tuple run_steps(PyGraph& s, const py::object& xs, const py::object& ys,
                    const py::object& sws, const py::object& order, int64_t batch_size) {
  if (batch_size <= 0)
    throw py::value_error("batch_size: expected a positive integer, got " +
                          std::to_string(batch_size));
  if (order.is_none())
    throw py::type_error("order: expected an int64 numpy array of rows, got None");
  const SnapshotRef sn = snapshot(s);
  if (!sn->has_losses)
    throw py::value_error("the graph has no losses: call set_outputs and set_losses first");
  if (!sn.has_opt) throw py::value_error("the graph has no optimizer: call set_optimizer first");
  StepArgs a;
  parse_step(a, sn, xs, ys, sws, order);
  const int64_t rows = a.d.batch;
  const int64_t steps = (rows + batch_size - 1) / batch_size;
  const size_t no = sn->out_shapes.size();
  py::array_t<double> totals(std::vector<py::ssize_t>{py::ssize_t(steps)});
  py::array_t<double> losses(std::vector<py::ssize_t>{py::ssize_t(steps), py::ssize_t(no)});
  py::array_t<int64_t> correct(std::vector<py::ssize_t>{py::ssize_t(steps), py::ssize_t(no)});
  double* tp = totals.mutable_data();
  double* lp = losses.mutable_data();
  int64_t* cp = correct.mutable_data();
  compute_alone(s, sn, [&](nn::Graph& g) {
    nn::StepData d = a.d, next = a.d;
    for (int64_t k = 0; k < steps; ++k) {
      d.idx = a.d.idx + k * batch_size;
      d.batch = std::min(batch_size, rows - k * batch_size);
      next.idx = d.idx + batch_size;
      next.batch = std::min(batch_size, rows - (k + 1) * batch_size);
      g.train_step(d, k + 1 < steps ? &next : nullptr);
      tp[k] = g.step_total();
      for (size_t j = 0; j < no; ++j) {
        lp[size_t(k) * no + j] = g.step_losses()[j];
        cp[size_t(k) * no + j] = g.step_correct()[j];
      }
    }
  });
  return py::make_tuple(totals, losses, correct);
}

nn::AttrValue attr_value(const std::string& key, const py::handle& v) {
  const std::string what = "attrs['" + key + "']";
  if (py::isinstance<py::str>(v)) return v.cast<std::string>();
  if (PyBool_Check(v.ptr())) return int64_t(v.ptr() == Py_True);
  if (PyIndex_Check(v.ptr())) return v.cast<int64_t>();
  if (PyFloat_Check(v.ptr()) || py::isinstance(v, py::module_::import("numpy").attr("floating")))
    return v.cast<double>();
  if (py::isinstance<py::sequence>(v)) {
    std::vector<int64_t> ints;
    std::vector<double> dbls;
    bool all_int = true;
    for (auto e : v) {
      if (PyBool_Check(e.ptr()) || PyIndex_Check(e.ptr())) {
        const int64_t i = PyBool_Check(e.ptr()) ? int64_t(e.ptr() == Py_True) : e.cast<int64_t>();
        ints.push_back(i);
        dbls.push_back(double(i));
      } else if (PyFloat_Check(e.ptr()) ||
                 py::isinstance(e, py::module_::import("numpy").attr("floating"))) {
        all_int = false;
        dbls.push_back(e.cast<double>());
      } else {
        throw py::type_error(what + ": expected a list of numbers, found " + type_name(e));
      }
    }
    if (all_int) return ints;
    return dbls;
  }
  throw py::type_error(what + ": expected a number, a string or a list of numbers, got " +
                       type_name(v));
}

int checked_pid(PyGraph& s, int64_t pid) {
  if (pid < 0 || pid >= s.g->num_params())
    throw py::index_error("pid: parameter " + std::to_string(pid) + " out of range (" +
                          std::to_string(s.g->num_params()) + " parameters)");
  return int(pid);
}

int checked_tid(PyGraph& s, int64_t tid, const char* what = "tid") {
  if (tid < 0 || tid >= s.g->num_tensors())
    throw py::index_error(std::string(what) + ": tensor " + std::to_string(tid) +
                          " out of range (" + std::to_string(s.g->num_tensors()) + " tensors)");
  return int(tid);
}

py::array_t<float> copy_array(const float* src, const Shape& shape) {
  std::vector<py::ssize_t> sh(shape.begin(), shape.end());
  py::array_t<float> a(sh);
  const int64_t n = nn::shape_size(shape);
  if (n > 0 && src) std::memcpy(a.mutable_data(), src, sizeof(float) * size_t(n));
  else if (n > 0) std::memset(a.mutable_data(), 0, sizeof(float) * size_t(n));
  return a;
}

std::vector<float>& slot_at(PyGraph& s, int64_t pid, int64_t k) {
  nn::GraphParam& p = s.g->param(checked_pid(s, pid));
  if (k < 0 || k >= int64_t(p.slots.size()))
    throw py::index_error("k: slot " + std::to_string(k) + " out of range (parameter " +
                          std::to_string(pid) + " has " + std::to_string(p.slots.size()) +
                          " slots)");
  return p.slots[size_t(k)];
}

}  // namespace

// Index of the first NaN or infinity among n floats, or -1. Blocks of floats are tested with
// an exponent-bits mask the compiler vectorises (no branch per element); only a block that
// holds a non-finite value is searched element by element. The threads take contiguous
// ranges, and the smallest index found wins, so the answer does not depend on them.
int64_t first_non_finite(const float* x, int64_t n) {
  constexpr int64_t kBlock = 4096;
  constexpr uint32_t kExp = 0x7f800000u;
  auto scan = [x](int64_t lo, int64_t hi) -> int64_t {
    for (int64_t b = lo; b < hi; b += kBlock) {
      const int64_t e = std::min(hi, b + kBlock);
      uint32_t bad = 0;
      for (int64_t i = b; i < e; ++i) {
        uint32_t u;
        std::memcpy(&u, x + i, 4);
        bad |= uint32_t((u & kExp) == kExp);
      }
      if (bad)
        for (int64_t i = b; i < e; ++i)
          if (!std::isfinite(x[i])) return i;
    }
    return -1;
  };
  const int nt = n >= (int64_t(1) << 20) ? parallel::available_threads() : 1;
  if (nt <= 1) return scan(0, n);
  std::vector<int64_t> found(size_t(nt), -1);
  parallel::run(nt, [&](int t) {
    int64_t lo, hi;
    parallel::static_block(n, nt, t, lo, hi);
    found[size_t(t)] = scan(lo, hi);
  });
  for (int64_t f : found)
    if (f >= 0) return f;
  return -1;
}

void register_graph(py::module_& m) {
  m.def(
      "first_non_finite",
      [](const py::array& a) -> int64_t {
        if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4)
          throw py::type_error("a: expected a float32 numpy array, got " +
                               std::string(py::str(a.dtype())));
        if (!(a.flags() & py::array::c_style))
          throw py::value_error("a: expected a C-contiguous array");
        const float* p = static_cast<const float*>(a.data());
        const int64_t n = int64_t(a.size());
        py::gil_scoped_release nogil;
        return first_non_finite(p, n);
      },
      py::arg("a"),
      "Flat index of the first NaN or infinity in a C-contiguous float32 array, or -1 when "
      "every value is finite (one pass, no temporary; fit's input check).");
  py::class_<PyGraph>(m, "Graph",
                      "The N-D graph engine of functional models: tensors, parameters (the "
                      "caller's float32 arrays, used in place) and nodes in topological order.")
      .def(py::init<>())
      .def("add_input",
           [](PyGraph& s, std::vector<int64_t> shape) {
             auto lock = s.lock();
             return s.g->add_input(shape);
           },
           py::arg("shape"), "Adds a graph input of this per-sample shape; returns its tensor id.")
      .def("add_param",
           [](PyGraph& s, py::object value, const std::string& name, bool trainable) {
             if (!py::isinstance<py::array>(value))
               throw py::type_error("value: expected a float32 numpy array, got " + type_name(value));
             py::array a = value.cast<py::array>();
             if (a.dtype().kind() != 'f' || a.itemsize() != 4)
               throw py::type_error("value: expected float32, got " + std::string(py::str(a.dtype())));
             if (!(a.flags() & py::array::c_style))
               throw py::value_error("value: expected a C-contiguous array");
             if (!a.writeable()) throw py::value_error("value: array is read-only");
             Shape shape;
             for (py::ssize_t d = 0; d < a.ndim(); ++d) shape.push_back(int64_t(a.shape(d)));
             auto lock = s.lock();
             const int pid = s.g->add_param(static_cast<float*>(a.mutable_data()), shape, name,
                                            trainable);
             s.refs.push_back(value);
             return pid;
           },
           py::arg("value"), py::arg("name"), py::arg("trainable") = true,
           "Adds a parameter: the array itself (float32, C-contiguous, writeable), read and "
           "written in place; returns its id.")
      .def("add_node",
           [](PyGraph& s, const std::string& op, std::vector<int64_t> inputs,
              std::vector<int64_t> params, py::dict attrs, const std::string& name) {
             std::map<std::string, nn::AttrValue> av;
             for (auto item : attrs) {
               if (!py::isinstance<py::str>(item.first))
                 throw py::type_error("attrs: keys must be strings, got " + type_name(item.first));
               const std::string key = item.first.cast<std::string>();
               if (item.second.is_none()) continue;
               av[key] = attr_value(key, item.second);
             }
             std::vector<int> in, ps;
             for (int64_t t : inputs) in.push_back(int(std::max<int64_t>(std::min<int64_t>(t, 1 << 30), -1)));
             for (int64_t p : params) ps.push_back(int(std::max<int64_t>(std::min<int64_t>(p, 1 << 30), -1)));
             auto lock = s.lock();
             return std::vector<int>{s.g->add_node(op, in, ps, std::move(av), name)};
           },
           py::arg("op"), py::arg("inputs"), py::arg("params"), py::arg("attrs"),
           py::arg("name") = "",
           "Adds a node reading existing tensors; checks shapes; returns its output tensor ids.")
      .def("tensor_shape",
           [](PyGraph& s, int64_t tid) {
             auto lock = s.lock();
             const Shape& sh = s.g->tensor_shape(checked_tid(s, tid));
             py::tuple t(sh.size());
             for (size_t i = 0; i < sh.size(); ++i) t[i] = sh[i];
             return t;
           },
           py::arg("tid"))
      .def("set_outputs",
           [](PyGraph& s, std::vector<int64_t> tids) {
             std::vector<int> ts;
             for (int64_t t : tids) ts.push_back(int(std::max<int64_t>(std::min<int64_t>(t, 1 << 30), -1)));
             auto lock = s.lock();
             s.g->set_outputs(ts);
           },
           py::arg("tids"))
      .def("set_regularization",
           [](PyGraph& s, int64_t pid, float l1, float l2) {
             auto lock = s.lock();
             s.g->set_regularization(checked_pid(s, pid), l1, l2);
           },
           py::arg("pid"), py::arg("l1"), py::arg("l2"))
      .def("set_trainable",
           [](PyGraph& s, int64_t pid, bool trainable) {
             auto lock = s.lock();
             s.g->set_trainable(checked_pid(s, pid), trainable);
           },
           py::arg("pid"), py::arg("trainable"),
           "Freezes (False) or unfreezes a parameter; takes effect at the next step.")
      .def("num_params",
           [](PyGraph& s) {
             auto lock = s.lock();
             return s.g->num_params();
           })
      .def("param_info",
           [](PyGraph& s, int64_t pid) {
             auto lock = s.lock();
             nn::GraphParam& p = s.g->param(checked_pid(s, pid));
             return py::make_tuple(p.name, p.shape, p.flag);
           },
           py::arg("pid"), "(name, shape, trainable flag) of a parameter.")
      .def("get_grad",
           [](PyGraph& s, int64_t pid) {
             auto lock = s.lock();
             nn::GraphParam& p = s.g->param(checked_pid(s, pid));
             return copy_array(p.grad.empty() ? nullptr : p.grad.data(), p.shape);
           },
           py::arg("pid"),
           "A copy of the parameter's gradient from the last training step (zeros for state "
           "parameters, which have none).")
      .def("set_losses",
           [](PyGraph& s, py::object losses) {
             if (!py::isinstance<py::list>(losses) && !py::isinstance<py::tuple>(losses))
               throw py::type_error("losses: expected a list with one (kind, from_logits, delta, "
                                    "weight) tuple or None per output, got " + type_name(losses));
             std::vector<nn::GraphLoss> ls;
             size_t j = 0;
             for (auto h : losses) {
               const std::string w = "losses[" + std::to_string(j++) + "]";
               nn::GraphLoss L;
               if (!h.is_none()) {
                 if (!py::isinstance<py::tuple>(h) && !py::isinstance<py::list>(h))
                   throw py::type_error(w + ": expected (kind, from_logits, delta, weight) or "
                                        "None, got " + type_name(h));
                 py::sequence t = py::reinterpret_borrow<py::sequence>(h);
                 if (t.size() < 4 || t.size() > 6)
                   throw py::value_error(w + ": expected 4 items (kind, from_logits, delta, "
                                         "weight), then optionally mask_output and "
                                         "mask_rescale, got " + std::to_string(t.size()));
                 if (!py::isinstance<py::str>(t[0]))
                   throw py::type_error(w + ": kind must be a string, got " + type_name(t[0]));
                 L.has = true;
                 L.cfg = nn::loss_defaults(loss_or_throw(t[0].cast<std::string>(), w).kind);
                 try {
                   L.cfg.from_logits = t[1].cast<bool>();
                   // delta only matters to huber; None stands for "not given" (the default)
                   if (!t[2].is_none()) L.cfg.huber_delta = t[2].cast<float>();
                   L.weight = t[3].cast<double>();
                   if (t.size() >= 5 && !t[4].is_none()) L.mask_output = t[4].cast<int>();
                   if (t.size() == 6) L.mask_rescale = t[5].cast<bool>();
                 } catch (const py::cast_error&) {
                   throw py::type_error(w + ": expected (str, bool, float, float[, int[, bool]])");
                 }
                 if (const std::string err = nn::loss_config_error(L.cfg, false); !err.empty())
                   throw py::value_error(w + ": " + err);
               }
               ls.push_back(L);
             }
             auto lock = s.lock();
             if (s.g->outputs().empty())
               throw py::value_error("losses: the graph has no outputs: call set_outputs first");
             s.g->set_losses(ls);
           },
           py::arg("losses"))
      .def("set_optimizer",
           [](PyGraph& s, const std::string& kind, py::object cfg) {
             const nn::OptConfig c = parse_optimizer_config(kind, cfg);
             auto lock = s.lock();
             s.g->set_optimizer(c);
           },
           py::arg("kind"), py::arg("cfg") = py::none(),
           "Sets the optimizer: Keras defaults of `kind` overridden by the dict `cfg` (checked "
           "like optimizer_config); resets iterations and allocates slots for every parameter "
           "that can learn, frozen or not.")
      .def_property(
          "learning_rate",
          getter([](PyGraph& s) {
            auto lock = s.lock();
            return s.g->learning_rate();
          }),
          setter([](PyGraph& s, float lr) {
            auto lock = s.lock();
            s.g->set_learning_rate(lr);
          }))
      .def_property(
          "iterations",
          getter([](PyGraph& s) {
            auto lock = s.lock();
            return s.g->iterations();
          }),
          setter([](PyGraph& s, int64_t t) {
            auto lock = s.lock();
            s.g->set_iterations(t);
          }))
      .def_property(
          "u_product",
          getter([](PyGraph& s) {
            auto lock = s.lock();
            return s.g->optimizer_scalars().u_product;
          }),
          setter([](PyGraph& s, double u) {
            auto lock = s.lock();
            s.g->optimizer_scalars().u_product = u;
          }))
      .def("num_slots",
           [](PyGraph& s, int64_t pid) {
             auto lock = s.lock();
             return s.g->param(checked_pid(s, pid)).slots.size();
           },
           py::arg("pid"))
      .def("get_slot",
           [](PyGraph& s, int64_t pid, int64_t k) {
             auto lock = s.lock();
             std::vector<float>& v = slot_at(s, pid, k);
             return copy_array(v.data(), s.g->param(int(pid)).shape);
           },
           py::arg("pid"), py::arg("k"))
      .def("set_slot",
           [](PyGraph& s, int64_t pid, int64_t k, py::array arr) {
             const float* p = c_contiguous(arr, "arr", int(arr.ndim()));
             auto lock = s.lock();
             std::vector<float>& v = slot_at(s, pid, k);
             if (size_t(arr.size()) != v.size())
               throw py::value_error("arr: expected " + std::to_string(v.size()) +
                                     " values, got " + std::to_string(arr.size()));
             if (!v.empty()) std::memcpy(v.data(), p, v.size() * sizeof(float));
           },
           py::arg("pid"), py::arg("k"), py::arg("arr"))
      .def("train_step", &run_step<true>, py::arg("xs"), py::arg("ys"),
           py::arg("sample_weights") = py::none(), py::arg("idx") = py::none(),
           py::arg("want_outputs") = false,
           "One training step on the rows idx (all if None): forward, losses, backward, "
           "update. Returns (total loss, per-output losses, per-output correct counts, "
           "outputs or None).")
      .def("train_steps", &run_steps, py::arg("xs"), py::arg("ys"),
           py::arg("sample_weights"), py::arg("order"), py::arg("batch_size"),
           "Training steps on the rows `order` taken batch_size at a time (the last batch "
           "shorter), each as train_step. Returns (totals, losses, correct): per step the "
           "total loss, and per step and output the loss and the correct count.")
      .def("test_step", &run_step<false>, py::arg("xs"), py::arg("ys"),
           py::arg("sample_weights") = py::none(), py::arg("idx") = py::none(),
           py::arg("want_outputs") = false,
           "The losses of the rows idx (all if None) in inference mode, without an update.")
      .def("predict",
           [](PyGraph& s, py::object xs, py::object outs, int64_t chunk) {
             const SnapshotRef sn = snapshot(s);
             if (sn->out_shapes.empty())
               throw py::value_error("the graph has no outputs: call set_outputs first");
             if (chunk <= 0)
               throw py::value_error("chunk: expected a positive row count, got " +
                                     std::to_string(chunk));
             // One-row predict is latency-bound: the argument tables are reused per thread.
             thread_local PredictTables t;
             ClearOnExit clear{t};
             const size_t ni = sn->in_shapes.size(), no = sn->out_shapes.size();
             py::sequence xl = as_list(xs, "xs", ni, "graph input");
             py::sequence ol = as_list(outs, "outs", no, "output");
             int64_t rows = -1;
             for (size_t i = 0; i < ni; ++i) {
               py::array a = sample_array(xl[i], "xs", i, sn->in_shapes[i], false, rows);
               rows = a.shape(0);
               t.x.push_back(static_cast<const float*>(a.data()));
               t.keep.push_back(std::move(a));
             }
             for (size_t j = 0; j < no; ++j) {
               py::array a = sample_array(ol[j], "outs", j, sn->out_shapes[j], true, rows);
               t.out.push_back(static_cast<float*>(a.mutable_data()));
               t.keep.push_back(std::move(a));
             }
             run_predict(s, sn, t.x.data(), rows, t.out.data(), chunk);
           },
           py::arg("xs"), py::arg("outs"), py::arg("chunk") = 1024,
           "Inference on every row of xs, in chunks of `chunk` rows; writes outs[j].")
      .def("predict_array",
           [](PyGraph& s, const py::handle& x, int64_t chunk) -> py::object {
             // Serving a few rows is latency-bound: one call that checks, allocates and
             // runs, instead of the checks, np.empty and two lists in Python.
             if (!py::isinstance<py::array_t<float, py::array::c_style>>(x)) return py::none();
             const py::array a = py::reinterpret_borrow<py::array>(x);
             const SnapshotRef sn = snapshot(s);
             if (sn->in_shapes.size() != 1 || sn->out_shapes.size() != 1 || a.ndim() < 1 ||
                 a.shape(0) == 0 || !rows_of_shape(a, sn->in_shapes[0]))
               return py::none();
             if (chunk <= 0)
               throw py::value_error("chunk: expected a positive row count, got " +
                                     std::to_string(chunk));
             const int64_t rows = a.shape(0);
             py::array_t<float> out = rows_array(rows, sn->out_shapes[0]);
             const float* xp = static_cast<const float*>(a.data());
             float* op = out.mutable_data();
             run_predict(s, sn, &xp, rows, &op, chunk);
             return std::move(out);
           },
           py::arg("x"), py::arg("chunk") = 256,
           "For a graph of one input and one output: its output on the rows of x (a new "
           "float32 array), or None when x is not a C-contiguous float32 array of rows of the "
           "input's shape (the caller converts it and calls predict).")
      .def("input_gradient",
           [](PyGraph& s, py::object xs, py::object seeds) {
             const SnapshotRef sn = snapshot(s);
             if (sn->out_shapes.empty())
               throw py::value_error("the graph has no outputs: call set_outputs first");
             XArgs x = parse_xs(xs, sn);
             const size_t no = sn->out_shapes.size();
             py::sequence sl = as_list(seeds, "seeds", no, "output");
             std::vector<py::array> keep;
             std::vector<const float*> sp;
             for (size_t j = 0; j < no; ++j) {
               py::array a = sample_array(sl[j], "seeds", j, sn->out_shapes[j], false, x.rows);
               sp.push_back(static_cast<const float*>(a.data()));
               keep.push_back(a);
             }
             std::vector<py::array_t<float>> dxs;
             std::vector<float*> dp;
             for (size_t i = 0; i < x.keep.size(); ++i) {
               std::vector<py::ssize_t> sh;
               for (py::ssize_t d = 0; d < x.keep[i].ndim(); ++d) sh.push_back(x.keep[i].shape(d));
               dxs.emplace_back(sh);
               dp.push_back(dxs.back().mutable_data());
             }
             compute_alone(s, sn, [&](nn::Graph& g) {
               g.input_gradient(x.ptr.data(), x.rows, sp.data(), dp.data());
             });
             py::list out;
             for (auto& a : dxs) out.append(a);
             return out;
           },
           py::arg("xs"), py::arg("seeds"),
           "d(sum_j sum(out_j * seeds[j])) / d xs[i] in inference mode, one array per input.")
      .def("forward_train",
           [](PyGraph& s, py::object xs, int64_t call) {
             const SnapshotRef sn = snapshot(s);
             if (sn->out_shapes.empty())
               throw py::value_error("the graph has no outputs: call set_outputs first");
             if (call < 0)
               throw py::value_error("call: expected a call number >= 0, got " +
                                     std::to_string(call));
             XArgs x = parse_xs(xs, sn);
             std::vector<py::array_t<float>> outs;
             std::vector<float*> op;
             for (const auto& shape : sn->out_shapes) {
               outs.push_back(rows_array(x.rows, shape));
               op.push_back(outs.back().mutable_data());
             }
             compute_alone(s, sn, [&](nn::Graph& g) {
               g.forward_train(x.ptr.data(), x.rows, op.data(), uint64_t(call));
             });
             py::list out;
             for (auto& a : outs) out.append(a);
             return out;
           },
           py::arg("xs"), py::arg("call"),
           "The outputs of one forward pass in training mode (Keras's model(x, training=True)): "
           "random ops draw from call number `call`'s streams; BatchNormalization's moving "
           "statistics are updated. No loss, no update.")
      .def("dense_chain_layers",
           [](PyGraph& s) {
             auto lock = s.lock();
             return s.g->dense_chain_layers();
           },
           "How many dense layers predict runs as one fused chain (0: the general path).")
      .def("memory_info",
           [](PyGraph& s) {
             auto lock = s.lock();
             const nn::GraphMemory mi = s.g->memory_info();
             py::dict d;
             d["capacity"] = mi.capacity;
             d["train_activation_bytes"] = mi.train_bytes;
             d["predict_activation_bytes"] = mi.predict_bytes;
             d["input_gradient_activation_bytes"] = mi.input_grad_bytes;
             d["allocated_arena_bytes"] = mi.allocated_bytes;
             d["io_bytes"] = mi.io_bytes;
             d["param_bytes"] = mi.param_bytes;
             d["grad_bytes"] = mi.grad_bytes;
             d["slot_bytes"] = mi.slot_bytes;
             return d;
           },
           "Bytes used: the arenas of each mode at `capacity` rows (the largest batch seen), "
           "parameters, gradients, optimizer slots.");
}

}  // namespace pynn::bind
