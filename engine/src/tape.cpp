// wengert — the out-of-line parts of the tape: inspection, Jacobians, error messages.
#include <wengert/tape.hpp>

#include <ostream>
#include <sstream>

namespace wengert {

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const std::size_t r = std::max(a.rank(), b.rank());
  Shape out;
  for (std::size_t i = 0; i < r; ++i) {
    // Align trailing dimensions (numpy): missing leading dimensions count as 1.
    std::size_t da = i + a.rank() >= r ? a[i + a.rank() - r] : 1;
    std::size_t db = i + b.rank() >= r ? b[i + b.rank() - r] : 1;
    if (da != db && da != 1 && db != 1)
      throw ShapeError(std::string(op) + ": a is " + a.str() + " but b is " + b.str() +
                       ": dimension " + std::to_string(i) + " (" + std::to_string(da) + " vs " +
                       std::to_string(db) + ") cannot be broadcast");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

template <class T>
void Tape<T>::throw_bad_handle(const Var<T>& v, const char* op, std::size_t arg) const {
  std::string where = std::string(op) + ": argument " + std::to_string(arg);
  if (!v.tape_) throw UsageError(where + " is an empty handle (default-constructed Var)");
  if (v.tape_ != this)
    throw UsageError(where + " (node #" + std::to_string(v.index_) +
                     ") belongs to another tape; an op's inputs must all be on one tape");
  throw UsageError(where + " is a stale handle to node #" + std::to_string(v.index_) +
                   ": the tape was cleared after it was recorded");
}

template <class T>
void Tape<T>::throw_foreign(const char* what) {
  throw UsageError(std::string("tape: ") + what +
                   " from a thread that does not own this tape; a tape is used by one thread "
                   "at a time (clear() releases it)");
}

template <class T>
void Tape<T>::throw_no_grad_wrt(const char* what, const Var<T>& v, std::size_t arg) const {
  const detail::Node<T>& n = nodes_[v.index_];
  throw UsageError(std::string(what) + ": argument " + std::to_string(arg) + " (node #" +
                   std::to_string(v.index_) + ", '" + n.name + "' " + n.shape.str() +
                   ") needs no gradient (a constant, a detached value, or recorded under "
                   "no-grad): derivatives are taken with respect to variables and parameters");
}

template <class T>
void Tape<T>::throw_foreign_clear() {
  throw UsageError(
      "tape: clear() from a thread that does not own this tape; a tape is used by one thread at "
      "a time and only its owner may clear it (the owner's clear() releases it, after which any "
      "thread may record on it)");
}

template <class T>
void Tape<T>::throw_no_memory(const char* what, const Shape& s, bool grad, detail::Arena::Mark m,
                              const ResourceError& e) {
  arena_.rewind(m);  // the tape stays exactly as it was
  throw ResourceError(std::string(what) + ": cannot allocate the output of shape " + s.str() +
                      " (" + std::to_string(s.size() * sizeof(T)) + " bytes" +
                      (grad ? ", and as many for its gradient" : "") + "): " + e.what());
}

template <class T>
void Tape<T>::throw_busy(const char* what) const {
  if (sweeping_)
    throw UsageError(std::string("tape: ") + what +
                     " during backward (from inside a backward closure); a closure may only "
                     "read its context and accumulate into its inputs' adjoints");
  if (replaying_)
    throw UsageError(std::string("tape: ") + what +
                     " during replay (from inside a forward kernel); a forward kernel may only "
                     "read its inputs and write its output and scratch");
  throw UsageError(std::string("tape: ") + what + " while op '" + nodes_.back().name +
                   "' is being recorded (between begin_op and finish); finish() it first");
}

template <class T>
void Tape<T>::throw_anomaly(const detail::Node<T>& n, const char* where, std::size_t elem,
                            T value) const {
  std::ostringstream os;
  os << "anomaly: op '" << n.name << "' (node #" << (&n - nodes_.data()) << ", recorded at "
     << (n.file && *n.file ? n.file : "?") << ":" << n.line << ") produced " << value << " in its "
     << where << " at element " << elem << " of " << n.shape.str();
  throw ValueError(os.str());
}

template <class T>
void Tape<T>::print(std::ostream& os) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const detail::Node<T>& n = nodes_[i];
    os << '#' << i << ' ' << n.name << ' ' << n.shape.str();
    if (n.in_count) {
      os << " <-";
      for (std::uint32_t k = 0; k < n.in_count; ++k) {
        std::uint32_t j = inputs_[n.in_begin + k];
        os << (k ? ", #" : " #") << j << ' ' << nodes_[j].shape.str();
      }
    }
    if (n.flags & detail::kExternalGrad)
      os << "  [parameter]";
    else if (n.flags & detail::kRequiresGrad)
      os << "  [grad]";
    if (n.line) os << "  @" << n.file << ':' << n.line;
    os << '\n';
  }
}

template <class T>
std::string Tape<T>::str() const {
  std::ostringstream os;
  print(os);
  return os.str();
}

template <class T>
void Tape<T>::to_dot(std::ostream& os) const {
  os << "digraph wengert {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n";
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const detail::Node<T>& n = nodes_[i];
    const char* style = (n.flags & detail::kLeaf) ? ((n.flags & detail::kRequiresGrad)
                                                         ? ", style=filled, fillcolor=\"#cfe8ff\""
                                                         : ", style=filled, fillcolor=\"#eeeeee\"")
                                                  : "";
    os << "  n" << i << " [label=\"#" << i << ' ' << n.name << "\\n"
       << n.shape.str() << '"' << style << "];\n";
    for (std::uint32_t k = 0; k < n.in_count; ++k)
      os << "  n" << inputs_[n.in_begin + k] << " -> n" << i << ";\n";
  }
  os << "}\n";
}

template <class T>
xt::xarray<T> Tape<T>::jacobian(const Var<T>& y, const Var<T>& x) {
  check_owner("jacobian");
  check_input(y, "jacobian", 0);
  check_input(x, "jacobian", 1);
  const detail::Node<T>& xn = nodes_[x.index_];
  // An x that needs no gradient (a constant, a detached value, anything recorded under
  // no-grad) is refused, exactly as backward refuses it in `wrt` (throw_no_grad_wrt): a
  // quiet zero Jacobian would hide the mistake of differentiating with respect to it.
  if (!(xn.flags & detail::kRequiresGrad)) throw_no_grad_wrt("jacobian", x, 1);
  const std::size_t m = nodes_[y.index_].size, k = xn.size;
  xt::xarray<T> J = xt::zeros<T>({m, k});
  // A y that depends on no variable at all: dy/dx is zero.
  if (!(nodes_[y.index_].flags & detail::kRequiresGrad)) return J;
  // A parameter's adjoint accumulates: save it, zero it per row, restore it at the end.
  const bool external = xn.flags & detail::kExternalGrad;
  std::vector<T> saved;
  if (external) saved.assign(xn.grad, xn.grad + k);
  std::vector<T> seed(m, T(0));
  for (std::size_t r = 0; r < m; ++r) {
    seed[r] = T(1);
    if (external) std::fill(xn.grad, xn.grad + k, T(0));
    sweep(y, Seed::values(seed.data()), &x, 1, "jacobian");
    seed[r] = T(0);
    // A sweep that never reaches x leaves its adjoint untouched: the row is zero.
    if (x.index_ < marks_.size() && (marks_[y.index_] & detail::kActive))
      std::copy(xn.grad, xn.grad + k, J.data() + r * k);
  }
  if (external) std::copy(saved.begin(), saved.end(), xn.grad);
  return J;
}

template <class T>
void Tape<T>::replay() {
  check_owner("replay");
  check_idle("replay");
  if (first_unreplayable_ < nodes_.size()) throw_unreplayable();
  detail::Node<T>* nodes = nodes_.data();
  const std::size_t count = nodes_.size();
  // Checked before any value changes: a Parameter whose storage moved (copy-assigned with
  // another size) would have the recorded ops read freed memory.
  for (std::size_t i = 0; i < count; ++i) {
    const detail::Node<T>& nd = nodes[i];
    if (nd.flags & detail::kParam) {
      const auto* st = static_cast<const ParameterStorage<T>*>(nd.closure);
      if (st->value.data() != nd.value || st->shape != nd.shape || !st->owned) throw_param_moved(i);
    }
  }
  const bool anomaly = anomaly_mode();
  struct Replaying {  // reset on every exit, including a forward kernel's throw
    bool& flag;
    explicit Replaying(bool& f) : flag(f) { flag = true; }
    ~Replaying() { flag = false; }
  } replaying(replaying_);
  const std::uint32_t* ins = inputs_.data();
  const ViewRecord* view = views_.data();
  const ViewRecord* const views_end = view + views_.size();
  // The tape-owned adjoints are zeroed here, each beside the value being recomputed (one
  // allocation holds both), instead of in a separate pass at the start of the next sweep.
  zeroed_ = 0;
  std::size_t i = 0;
  try {
    for (; i < count; ++i) {
      detail::Node<T>& nd = nodes[i];
      if (view != views_end && view->node == i) {
        nd.value = nodes[view->source].value + view->offset;
        ++view;
      }
      if (nd.flags & detail::kReplayable) {  // else a leaf (no op is without: checked above)
        (*static_cast<detail::ForwardThunk<T>*>(nd.closure))(
            nd.closure, ForwardContext<T>(nodes, &nd, ins + nd.in_begin));
        if (anomaly) check_finite_output(nd);
      }
      if ((nd.flags & (detail::kRequiresGrad | detail::kExternalGrad)) == detail::kRequiresGrad)
        zero_adjoint(nd);
    }
  } catch (...) {
    // A forward kernel threw (a refilled label out of range, say): the values are half this
    // step's, half the last; backward refuses them until a replay succeeds or a clear().
    failed_replay_ = i;
    throw;
  }
  failed_replay_ = ~std::size_t{0};
  zeroed_ = count;
}

template <class T>
void Tape<T>::set_input(const Var<T>& x, const T* data, const Shape& shape) {
  check_owner("set_input");
  check_input(x, "set_input", 0);
  check_idle("set_input");
  detail::Node<T>& nd = nodes_[x.index_];
  const bool view = nd.flags & detail::kAliased;
  if (!(nd.flags & detail::kLeaf) || (nd.flags & detail::kParam) ||
      (view && std::strcmp(nd.name, "constant") != 0))
    throw UsageError(std::string("set_input: node #") + std::to_string(x.index_) + " ('" + nd.name +
                     "') is not a constant or variable leaf; only those take new values for "
                     "replay (a Parameter is updated in place, an op's value is recomputed)");
  if (shape != nd.shape)
    throw ShapeError(std::string("set_input: node #") + std::to_string(x.index_) + " ('" + nd.name +
                     "') was recorded as " + nd.shape.str() + " but the new value is " +
                     shape.str() +
                     "; a replay cannot change shapes: clear the tape and record the step again");
  if (!data && nd.size)
    throw UsageError("set_input: data is a null pointer for " + shape.str() + " values");
  if (view)
    nd.value = data;  // constant_view: alias the new memory, as recording it there would
  else if (nd.size)
    std::memmove(const_cast<T*>(nd.value), data, nd.size * sizeof(T));
}

template <class T>
void Tape<T>::throw_failed_replay(const char* what) const {
  const detail::Node<T>& n = nodes_[failed_replay_];
  throw UsageError(std::string(what) + ": the last replay() threw at op '" + n.name + "' (node #" +
                   std::to_string(failed_replay_) +
                   "), so the tape holds values of two different steps; replay() again once the "
                   "inputs are valid, or clear() and record the step");
}

template <class T>
void Tape<T>::throw_unreplayable() const {
  const detail::Node<T>& n = nodes_[first_unreplayable_];
  throw UsageError("replay: op '" + std::string(n.name) + "' (node #" +
                   std::to_string(first_unreplayable_) + ", recorded at " +
                   (n.file && *n.file ? n.file : "?") + ":" + std::to_string(n.line) +
                   ") was recorded without a forward kernel (OpBuilder::finish(backward) alone), "
                   "so this tape cannot be replayed; record the step again instead, or give the "
                   "op a forward with finish(forward, backward)");
}

template <class T>
void Tape<T>::throw_param_moved(std::size_t i) const {
  const detail::Node<T>& n = nodes_[i];
  const auto* st = static_cast<const ParameterStorage<T>*>(n.closure);
  if (!st->owned)
    throw UsageError("replay: the Parameter of node #" + std::to_string(i) +
                     " was destroyed or replaced after it was recorded; record the step again");
  throw ShapeError("replay: the Parameter of node #" + std::to_string(i) + " was " + n.shape.str() +
                   " when recorded and is " + st->shape.str() +
                   " now (its storage was reassigned); a replay cannot change shapes: clear the "
                   "tape and record the step again");
}

template class Tape<float>;
template class Tape<double>;

}  // namespace wengert
