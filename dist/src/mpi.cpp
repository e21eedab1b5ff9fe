#include <wengert/dist/mpi.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <type_traits>

namespace wengert::dist {

namespace {

std::string mpi_message(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, std::size_t(len));
}

void check(int code, const char* what) {
  if (code != MPI_SUCCESS)
    throw Error(std::string("MPI: ") + what + " failed: " + mpi_message(code));
}

template <class T>
MPI_Datatype mpi_type() {
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

template <class T>
std::uint64_t fingerprint(
    const std::vector<std::pair<std::string, const ParameterStorage<T>*>>& params) {
  std::uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const void* data, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  const std::uint64_t elem = sizeof(T);
  mix(&elem, sizeof elem);
  for (const auto& [name, s] : params) {
    mix(name.data(), name.size() + 1);  // with the terminating '\0': "ab"+"c" ≠ "a"+"bc"
    const std::uint64_t rank = s->shape.rank();
    mix(&rank, sizeof rank);
    for (std::size_t d = 0; d < s->shape.rank(); ++d) {
      const std::uint64_t dim = s->shape[d];
      mix(&dim, sizeof dim);
    }
  }
  return h;
}

}  // namespace

std::uint64_t parameter_fingerprint(
    const std::vector<std::pair<std::string, const ParameterStorage<float>*>>& params) {
  return fingerprint(params);
}
std::uint64_t parameter_fingerprint(
    const std::vector<std::pair<std::string, const ParameterStorage<double>*>>& params) {
  return fingerprint(params);
}

MpiSession::MpiSession(int* argc, char*** argv) : uncaught_(std::uncaught_exceptions()) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    initialized_here_ = true;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
}

MpiSession::~MpiSession() {
  // Unwinding from an exception: the other ranks may wait in a collective that this rank will
  // never join; MPI_Finalize would wait for them in turn. End them all instead.
  if (std::uncaught_exceptions() > uncaught_ && size_ > 1)
    abort("an exception left main while MPI was running", 1);
  if (initialized_here_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
}

void MpiSession::abort(const std::string& message, int code) const {
  std::fprintf(stderr, "wengert: rank %d of %d: %s; ending all ranks (MPI_Abort)\n", rank_, size_,
               message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; in case an implementation does
}

bool MpiSession::launched() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

template <class T>
MpiGradients<T>::MpiGradients(const std::vector<std::pair<std::string, Parameter<T>*>>& named,
                              MPI_Comm comm,
                              const std::vector<std::pair<std::string, Parameter<T>*>>& buffers) {
  std::vector<std::pair<std::string, const ParameterStorage<T>*>> list;
  std::size_t total = 0;
  for (const auto& [name, p] : named) {
    params_.push_back(p->storage());
    list.emplace_back(name, p->storage().get());
    total += p->size();
  }
  param_total_ = total;
  for (const auto& [name, b] : buffers) {  // in the fingerprint too, under their own names
    buffers_.push_back(b->storage());
    list.emplace_back("buffer " + name, b->storage().get());
    buffer_total_ += b->size();
  }
  check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  try {
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    // Before any allreduce: every rank's (parameter count, element count, fingerprint).
    const std::uint64_t mine[3] = {params_.size(), total, parameter_fingerprint(list)};
    std::vector<std::uint64_t> all(3 * std::size_t(size_));
    check(MPI_Allgather(mine, 3, MPI_UINT64_T, all.data(), 3, MPI_UINT64_T, comm_),
          "MPI_Allgather of the models' fingerprints");
    std::string differ;
    for (int r = 1; r < size_; ++r)
      if (all[3 * r] != all[0] || all[3 * r + 1] != all[1] || all[3 * r + 2] != all[2])
        differ += " rank " + std::to_string(r) + " has " + std::to_string(all[3 * r]) +
                  " parameters of " + std::to_string(all[3 * r + 1]) + " values (fingerprint " +
                  std::to_string(all[3 * r + 2]) + ");";
    if (!differ.empty()) {
      differ.pop_back();
      throw ValueError(
          "MpiGradients: the ranks' models differ, so their gradients cannot be "
          "reduced: rank 0 has " +
          std::to_string(all[0]) + " parameters of " + std::to_string(all[1]) +
          " values (fingerprint " + std::to_string(all[2]) + ");" + differ +
          ". Every rank must build the same model (parameter names, shapes and "
          "dtype)");
    }
    buffer_.assign(std::max(total + 3, total + buffer_total_), T(0));
    broadcast();
  } catch (...) {
    MPI_Comm_free(&comm_);
    throw;
  }
}

template <class T>
MpiGradients<T>::~MpiGradients() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

template <class T>
void MpiGradients<T>::broadcast() {
  // Parameters, then buffers, packed into the flat buffer: one MPI_Bcast per chunk_.
  std::size_t off = 0;
  for (const auto* list : {&params_, &buffers_})
    for (auto& s : *list) {
      if (!s->owned || off + s->value.size() > buffer_.size())
        throw UsageError(std::string("MpiGradients: ") +
                         (list == &params_ ? "parameter '" : "buffer '") + s->name +
                         "' was replaced or resized since construction");
      std::copy(s->value.begin(), s->value.end(), buffer_.begin() + std::ptrdiff_t(off));
      off += s->value.size();
    }
  bcast(off);
  off = 0;
  for (const auto* list : {&params_, &buffers_})
    for (auto& s : *list) {
      std::copy(buffer_.begin() + std::ptrdiff_t(off),
                buffer_.begin() + std::ptrdiff_t(off + s->value.size()), s->value.begin());
      off += s->value.size();
    }
}

template <class T>
void MpiGradients<T>::broadcast_buffers() {
  if (buffers_.empty()) return;
  std::size_t off = 0;
  for (auto& s : buffers_) {
    if (!s->owned || off + s->value.size() > buffer_total_)
      throw UsageError("MpiGradients: buffer '" + s->name +
                       "' was replaced or resized since construction");
    std::copy(s->value.begin(), s->value.end(), buffer_.begin() + std::ptrdiff_t(off));
    off += s->value.size();
  }
  bcast(off);
  off = 0;
  for (auto& s : buffers_) {
    std::copy(buffer_.begin() + std::ptrdiff_t(off),
              buffer_.begin() + std::ptrdiff_t(off + s->value.size()), s->value.begin());
    off += s->value.size();
  }
}

template <class T>
void MpiGradients<T>::bcast(std::size_t n) {
  for (std::size_t at = 0; at < n; at += chunk_)
    check(MPI_Bcast(buffer_.data() + at, int(std::min(chunk_, n - at)), mpi_type<T>(), 0, comm_),
          "MPI_Bcast of the parameters and buffers");
}

template <class T>
T MpiGradients<T>::allreduce(T weight, T loss, T* sum) {
  if (!(weight >= T(0)))
    throw UsageError("MpiGradients::allreduce: the weight must be >= 0 (this rank's rows)");
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const auto t0 = Clock::now();
  const std::size_t total = param_total_, n_all = param_total_ + 3;
  T* buf = buffer_.data();
  std::size_t off = 0;
  for (auto& s : params_) {
    if (!s->owned || off + s->grad.size() > total)
      throw UsageError("MpiGradients: parameter '" + s->name +
                       "' was replaced or resized since construction");
    const T* g = s->grad.data();
    T* o = buf + off;
    const std::size_t n = s->grad.size();
    if (weight == T(1))
      std::copy(g, g + n, o);
    else
      for (std::size_t i = 0; i < n; ++i) o[i] = weight * g[i];
    off += n;
  }
  buf[total] = weight;
  buf[total + 1] = weight * loss;
  buf[total + 2] = sum ? *sum : T(0);
  const auto t1 = Clock::now();
  for (std::size_t at = 0; at < n_all; at += chunk_)  // one call up to kChunkBytes
    check(MPI_Allreduce(MPI_IN_PLACE, buf + at, int(std::min(chunk_, n_all - at)), mpi_type<T>(),
                        MPI_SUM, comm_),
          "MPI_Allreduce of the gradients");
  const auto t2 = Clock::now();
  const T sum_w = buf[total];
  if (!(sum_w > T(0)))  // the same on every rank: all of them throw
    throw UsageError("MpiGradients::allreduce: the weights of all ranks sum to 0 (no rows)");
  off = 0;
  for (auto& s : params_) {
    T* g = s->grad.data();
    const std::size_t n = s->grad.size();
    for (std::size_t i = 0; i < n; ++i) g[i] = buf[off + i] / sum_w;
    off += n;
  }
  if (sum) *sum = buf[total + 2];
  ++times_.steps;
  times_.allreduce += seconds(t1, t2);
  times_.pack += seconds(t0, t1) + seconds(t2, Clock::now());
  return buf[total + 1] / sum_w;
}

template <class T>
void MpiGradients<T>::set_chunk(std::size_t elements) {
  if (elements == 0) throw ValueError("MpiGradients::set_chunk: the piece must hold >= 1 element");
  chunk_ = std::min<std::size_t>(elements, std::size_t(std::numeric_limits<int>::max()));
}

template <class T>
void MpiGradients<T>::sum(double* values, std::size_t n) {
  check(MPI_Allreduce(MPI_IN_PLACE, values, int(n), MPI_DOUBLE, MPI_SUM, comm_),
        "MPI_Allreduce of a sum");
}

template class MpiGradients<float>;
template class MpiGradients<double>;

}  // namespace wengert::dist
