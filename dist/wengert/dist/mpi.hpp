// wengert — data parallelism over MPI ranks: MpiSession and MpiGradients.
//
// Available when wengert is built with MPI (option WENGERT_WITH_MPI, on when find_package(MPI)
// finds an implementation; WENGERT_HAVE_MPI is then 1). Every rank runs the same program on its
// shard of each global batch:
//
//   dist::MpiSession mpi(&argc, &argv);              // MPI_Init_thread … MPI_Finalize
//   nn::MLP<float> model({784, 256, 10}, nn::Activation::kRelu, seed);
//   dist::MpiGradients<float> sync(model);           // refuses differing models; broadcasts
//   nn::Adam<float> adam(model.parameters(), 1e-3);  //   rank 0's values to every rank
//   for (each global batch of n rows) {
//     auto [b, e] = rows of this rank: dist::shard_begin(n, mpi.size(), mpi.rank()), …(rank + 1)
//     tape.clear(); loss = mean loss of rows [b, e); tape.backward(loss);
//     float global = sync.allreduce(float(e - b), loss.item());  // one MPI_Allreduce
//     adam.step(); adam.zero_grad();
//   }
//
// MpiGradients packs every gradient (scaled by this rank's weight w, its row count), then w,
// w·loss and an optional count, into ONE flat buffer allocated at construction, runs one in-place
// MPI_Allreduce (sum), and unpacks g ← Σ_r w_r g_r / Σ_r w_r: the gradient of the mean loss over
// the global batch, unequal shards included. allreduce() with the default weight 1 divides the sum
// by the world size. Nothing is allocated per step.
//
// Errors. MPI calls return their errors (MPI_ERRORS_RETURN on a private duplicate of the
// communicator) and throw wengert::Error with MPI's message. A rank that fails while the others
// wait in a collective would hang them: catch the exception, and call MpiSession::abort(), which
// prints the message and calls MPI_Abort, so mpirun ends every rank with a non-zero status. An
// MpiSession destroyed by an escaping exception aborts the same way; a killed rank is noticed
// by mpirun, which ends the others.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <wengert/dist/threads.hpp>
#include <wengert/nn/module.hpp>
#include <wengert/tape.hpp>

namespace wengert::dist {

/// MPI for the process's lifetime: initialises MPI (threads: funnelled) unless already
/// initialised, finalises it at destruction if it initialised it.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Prints "wengert: rank <r> of <n>: <message>" to stderr and ends every rank (MPI_Abort with
  /// `code`): what a rank must do when it cannot go on, so the others do not wait forever.
  [[noreturn]] void abort(const std::string& message, int code = 1) const;

  /// True if this process was started by mpirun/mpiexec (OpenMPI's, MPICH's or a PMI launcher).
  static bool launched();

 private:
  bool initialized_here_ = false;
  int rank_ = 0, size_ = 1;
  int uncaught_ = 0;
};

/// A 64-bit FNV-1a hash of the parameters' names, shapes and element size: equal models give
/// equal hashes on every rank.
std::uint64_t parameter_fingerprint(
    const std::vector<std::pair<std::string, const ParameterStorage<float>*>>& params);
std::uint64_t parameter_fingerprint(
    const std::vector<std::pair<std::string, const ParameterStorage<double>*>>& params);

template <class T>
class MpiGradients {
 public:
  /// Collective over `comm`: checks that every rank holds the same parameters and buffers
  /// (count, names, shapes, dtype — by one MPI_Allgather, before anything else is exchanged;
  /// ValueError on every rank otherwise), then broadcasts rank 0's values of both. Allocates
  /// the flat buffer. `buffers`: state that is synchronised but not trained (batch norm's
  /// running statistics; see broadcast_buffers()).
  MpiGradients(const std::vector<std::pair<std::string, Parameter<T>*>>& named,
               MPI_Comm comm = MPI_COMM_WORLD,
               const std::vector<std::pair<std::string, Parameter<T>*>>& buffers = {});
  /// The model's parameters and buffers (Module::named_buffers()).
  explicit MpiGradients(nn::Module<T>& model, MPI_Comm comm = MPI_COMM_WORLD)
      : MpiGradients(model.named_parameters(), comm, model.named_buffers()) {}
  ~MpiGradients();
  MpiGradients(const MpiGradients&) = delete;
  MpiGradients& operator=(const MpiGradients&) = delete;

  /// Collective: every rank's parameter values and buffers become rank 0's.
  void broadcast();
  /// Collective: every rank's buffers become rank 0's. Each rank updates its batch norm
  /// statistics from its own shard; call this before evaluating or saving so that all ranks
  /// use rank 0's, or before every step to follow PyTorch DDP's broadcast_buffers. No-op
  /// (and no MPI call) without buffers; allocates nothing.
  void broadcast_buffers();
  /// Collective: every gradient becomes Σ_r weight_r · g_r / Σ_r weight_r, and the returned
  /// value is Σ_r weight_r · loss_r / Σ_r weight_r. Pass this rank's number of rows as weight
  /// (and its mean loss) to get the global batch's mean-loss gradient for any shard sizes (a rank
  /// with no rows passes 0); with weight 1 everywhere the gradients are averaged over the ranks.
  /// If `sum` is given, *sum becomes the sum of every rank's *sum (a count, say), in the same
  /// call. One MPI_Allreduce (one per chunk() elements for larger models); allocates nothing.
  T allreduce(T weight = T(1), T loss = T(0), T* sum = nullptr);
  /// Collective: sums n doubles over the ranks in place (evaluation counts, say).
  void sum(double* values, std::size_t n);

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Elements allreduce() sends: every parameter's, plus 3 (weight, loss and sum).
  std::size_t buffer_size() const { return param_total_ + 3; }
  /// The buffer goes to MPI in pieces of at most this many elements: one call for models up to
  /// kChunkBytes (16 MiB: 4M float parameters), more for larger ones. Why: Open MPI's
  /// reduction allocates a temporary buffer of the message's size on every call, and glibc
  /// serves 32 MiB and larger from fresh mmap()ed pages (it does not keep them for the next
  /// call), so each call faults its pages in again: on the 2-core VMs we measured, a 32 MiB
  /// MPI_Allreduce took ~4,300 more page faults per rank and 98–120 ms, against 5.5 ms in two
  /// 16 MiB calls (bench_allreduce, README). Pieces also keep every count within MPI's int.
  static constexpr std::size_t kChunkBytes = std::size_t(16) << 20;
  std::size_t chunk() const { return chunk_; }
  /// Sets the largest piece, in elements (≥ 1; values above INT_MAX are clamped to it). Must
  /// be the same on every rank: the number of collective calls depends on it.
  void set_chunk(std::size_t elements);
  /// Where allreduce() spent its time since construction or reset_times(): pack (scaling the
  /// gradients into the buffer and back) and allreduce (inside MPI_Allreduce: the transfer, and
  /// waiting for ranks that arrive later). Four clock reads per call.
  const StepTimes& times() const { return times_; }
  void reset_times() { times_ = StepTimes{}; }

 private:
  std::vector<std::shared_ptr<ParameterStorage<T>>> params_;
  std::vector<std::shared_ptr<ParameterStorage<T>>> buffers_;  // batch norm statistics, …
  std::size_t param_total_ = 0, buffer_total_ = 0;
  // Sends elements [0, n) of buffer_ from rank 0 to all, in pieces of chunk_.
  void bcast(std::size_t n);
  AlignedVector<T> buffer_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::size_t chunk_ = kChunkBytes / sizeof(T);
  int rank_ = 0, size_ = 1;
  StepTimes times_;
};

extern template class MpiGradients<float>;
extern template class MpiGradients<double>;

}  // namespace wengert::dist
