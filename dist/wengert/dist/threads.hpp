// wengert — data parallelism over threads of one process: ThreadDataParallel.
//
// The model given at construction is the master: the optimizer updates its Parameters, and it
// alone is saved, evaluated or checkpointed. ThreadDataParallel keeps N replicas (deep copies:
// nn::Module copies are deep) and N tapes. backward(rows, loss) splits the batch's rows
// into N contiguous shards, as equal as possible (the first rows % N shards one row longer), and
// for each shard k calls
//
//     Var<T> loss(M& model, Tape<T>& tape, std::size_t begin, std::size_t end)
//
// which records the forward pass of rows [begin, end) on `tape` with `model` and returns the
// shard's MEAN loss (a scalar). Shard 0 runs on the calling thread, the others on N − 1 worker
// threads made once, at construction. Each tape is used by one thread only.
//
// With N ≥ 2 every shard runs on its own replica (N deep copies); the master is only read.
// Before its shard, every replica copies the master's current values (so the previous
// optimizer step, or a loaded checkpoint, is seen), runs backward into its own gradients, and
// then all threads together reduce: each adds its part of every gradient element,
//     master.grad += Σ_k (n_k / n) · replica_k.grad,      n_k = rows of shard k, n = rows,
// added in shard order (the result does not depend on scheduling), and zeroes that part of the
// replicas' gradients again. The master's gradients then equal those of the mean loss over the
// whole batch — unequal shards included — and one optimizer step follows, as after tape.backward.
// Master gradients accumulate, as backward's do: zero them after the step.
//
// With N = 1 there are no replicas and no threads: the loss runs on the master itself, exactly
// as a plain training step would (bit-identical results).
//
// Per step nothing is allocated by ThreadDataParallel (the loss function's tape work is
// allocation-free too once the tapes have grown), and idle workers sleep on a condition
// variable. An exception in any shard is caught; once every shard has finished, backward()
// throws a wengert::Error naming the shard, its rows and the original message, and leaves the
// master's gradients untouched. The object stays usable.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <wengert/errors.hpp>
#include <wengert/nn/module.hpp>
#include <wengert/tape.hpp>

namespace wengert::dist {

/// Splits n rows into `parts` contiguous shards; shard k is [shard_begin(n, parts, k),
/// shard_begin(n, parts, k + 1)). The first n % parts shards have one row more.
inline std::size_t shard_begin(std::size_t n, std::size_t parts, std::size_t k) {
  const std::size_t q = n / parts, r = n % parts;
  return k * q + (k < r ? k : r);
}

template <class T, class M>
class ThreadDataParallel {
  static_assert(std::is_base_of_v<nn::Module<T>, M>, "M must be an nn::Module<T>");

 public:
  /// Makes `threads` replicas of `master` (none for one thread) and starts threads − 1 workers.
  /// `master` must outlive this object (its Parameters may move: their storage is held, as
  /// optimizers hold it).
  ThreadDataParallel(M& master, std::size_t threads) : master_(&master), n_(threads) {
    if (threads == 0) throw UsageError("ThreadDataParallel: threads must be at least 1");
    for (Parameter<T>* p : master.parameters()) master_params_.push_back(p->storage());
    tapes_.reserve(n_);
    for (std::size_t k = 0; k < n_; ++k) tapes_.push_back(std::make_unique<Tape<T>>());
    replicas_.reserve(n_);
    replica_params_.resize(n_);
    for (std::size_t k = 0; n_ > 1 && k < n_; ++k) {
      replicas_.push_back(std::make_unique<M>(master));
      for (Parameter<T>* p : replicas_.back()->parameters()) {
        p->zero_grad();
        replica_params_[k].push_back(p->storage());
      }
    }
    shards_.resize(n_);
    errors_.resize(n_);
    losses_.resize(n_);
    weights_.resize(n_);
    // Element range of the reduction done by each thread: the parameters as one flat vector.
    std::size_t total = 0;
    for (auto& s : master_params_) total += s->value.size();
    total_ = total;
    try {
      workers_.reserve(n_ - 1);
      for (std::size_t k = 1; k < n_; ++k) workers_.emplace_back([this, k] { worker(k); });
    } catch (...) {
      shutdown();
      throw;
    }
  }
  ~ThreadDataParallel() { shutdown(); }
  ThreadDataParallel(const ThreadDataParallel&) = delete;
  ThreadDataParallel& operator=(const ThreadDataParallel&) = delete;

  std::size_t threads() const { return n_; }
  /// The replica shard k runs on (0 ≤ k < threads(), threads() ≥ 2; with one thread the
  /// master itself is used and there are no replicas).
  M& replica(std::size_t k) { return *replicas_.at(k); }
  /// The tape shard k records on.
  Tape<T>& tape(std::size_t k) { return *tapes_.at(k); }

  /// Forward and backward of a batch of `rows` rows, split over the threads (see the top of
  /// this header); adds the gradient of the batch's mean loss to the master's gradients and
  /// returns that mean loss. rows must be ≥ threads() (every shard needs a row).
  template <class F>
  T backward(std::size_t rows, F&& loss) {
    using Fn = std::remove_reference_t<F>;
    if (rows < n_)
      throw UsageError("ThreadDataParallel: a batch of " + std::to_string(rows) +
                       " rows cannot be split over " + std::to_string(n_) +
                       " threads (every thread needs at least one row)");
    rows_ = rows;
    for (std::size_t k = 0; k < n_; ++k) {
      shards_[k] = {shard_begin(rows, n_, k), shard_begin(rows, n_, k + 1)};
      weights_[k] = T(shards_[k].second - shards_[k].first) / T(rows);
    }
    call_ = [](void* f, M& m, Tape<T>& t, std::size_t b, std::size_t e) -> Var<T> {
      return (*static_cast<Fn*>(f))(m, t, b, e);
    };
    fn_ = const_cast<void*>(static_cast<const void*>(&loss));
    if (n_ == 1) {
      Tape<T>& t = *tapes_[0];
      t.clear();
      Var<T> l = call_(fn_, *master_, t, 0, rows);
      check_scalar(l, 0);
      t.backward(l);
      return l.item();
    }
    check_structure();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++generation_;
      computed_ = 0;
      reduced_ = 0;
      failed_ = false;
    }
    start_cv_.notify_all();
    run_shard(0);
    {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [this] { return reduced_ == n_; });
    }
    if (failed_) {
      for (std::size_t k = 0; k < n_; ++k)
        if (errors_[k]) {
          std::exception_ptr e = std::exchange(errors_[k], nullptr);
          for (auto& x : errors_) x = nullptr;
          rethrow(e, k);
        }
    }
    T sum = 0;
    for (std::size_t k = 0; k < n_; ++k)
      sum += losses_[k] * T(shards_[k].second - shards_[k].first);
    return sum / T(rows);
  }

 private:
  void check_scalar(const Var<T>& l, std::size_t k) const {
    if (l.size() != 1)
      throw UsageError("ThreadDataParallel: the loss of shard " + std::to_string(k) +
                       " has shape " + l.shape().str() +
                       "; it must be a scalar (the shard's mean loss)");
  }

  // The master may have changed since construction (a parameter resized): the replicas would
  // then not fit it.
  void check_structure() const {
    for (std::size_t i = 0; i < master_params_.size(); ++i)
      if (!master_params_[i]->owned ||
          master_params_[i]->value.size() != replica_params_[0][i]->value.size())
        throw UsageError("ThreadDataParallel: the master model's parameter '" +
                         master_params_[i]->name +
                         "' was replaced or resized after the replicas were made; build a new "
                         "ThreadDataParallel for the new model");
  }

  // Shard k on the calling thread (k = 0) or worker k: refresh, forward, backward, then the
  // k-th part of the reduction once every shard's gradients are final.
  void run_shard(std::size_t k) {
    try {
      M& m = *replicas_[k];
      refresh(k);
      if (m.training() != master_->training()) m.train(master_->training());
      Tape<T>& t = *tapes_[k];
      t.clear();
      Var<T> l = call_(fn_, m, t, shards_[k].first, shards_[k].second);
      check_scalar(l, k);
      t.backward(l);
      losses_[k] = l.item();
    } catch (...) {
      errors_[k] = std::current_exception();
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (errors_[k]) failed_ = true;
      if (++computed_ == n_)
        computed_cv_.notify_all();
      else
        computed_cv_.wait(lock, [this] { return computed_ == n_; });
    }
    reduce_part(k, !failed_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (++reduced_ == n_) done_cv_.notify_all();
    }
  }

  std::vector<std::shared_ptr<ParameterStorage<T>>>& shard_params(std::size_t k) {
    return replica_params_[k];
  }

  void refresh(std::size_t k) {
    auto& ps = shard_params(k);
    for (std::size_t i = 0; i < ps.size(); ++i)
      std::copy(master_params_[i]->value.begin(), master_params_[i]->value.end(),
                ps[i]->value.begin());
  }

  // Thread k adds elements [b, e) of the flat parameter vector into the master's gradient,
  // replica by replica in shard order (master += w_0·g_0, then += w_1·g_1, …: the same order
  // whatever the scheduling), zeroing them in the replicas for the next step; if a shard
  // failed it only zeroes them. Contiguous loops over raw pointers: vectorised.
  void reduce_part(std::size_t k, bool add) {
    const std::size_t b = shard_begin(total_, n_, k), e = shard_begin(total_, n_, k + 1);
    std::size_t off = 0;
    for (std::size_t i = 0; i < master_params_.size() && off < e; ++i) {
      const std::size_t size = master_params_[i]->value.size();
      const std::size_t lo = std::max(b, off), hi = std::min(e, off + size);
      if (lo < hi) {
        T* g = master_params_[i]->grad.data() + (lo - off);
        const std::size_t len = hi - lo;
        for (std::size_t j = 0; j < n_; ++j) {
          T* r = replica_params_[j][i]->grad.data() + (lo - off);
          const T w = weights_[j];
          if (add)
            for (std::size_t x = 0; x < len; ++x) g[x] += w * r[x];
          std::fill(r, r + len, T(0));
        }
      }
      off += size;
    }
  }

  void worker(std::size_t k) {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      run_shard(k);
    }
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    start_cv_.notify_all();
    for (auto& w : workers_)
      if (w.joinable()) w.join();
    workers_.clear();
  }

  [[noreturn]] void rethrow(std::exception_ptr e, std::size_t k) const {
    const std::string where = "ThreadDataParallel: shard " + std::to_string(k) + " of " +
                              std::to_string(n_) + " (rows " + std::to_string(shards_[k].first) +
                              ".." + std::to_string(shards_[k].second) + " of " +
                              std::to_string(rows_) + ", thread " + std::to_string(k) +
                              ") failed; the master's gradients are unchanged: ";
    try {
      std::rethrow_exception(e);
    } catch (const ShapeError& x) {
      throw ShapeError(where + x.what());
    } catch (const ValueError& x) {
      throw ValueError(where + x.what());
    } catch (const ResourceError& x) {
      throw ResourceError(where + x.what());
    } catch (const std::exception& x) {
      throw UsageError(where + x.what());
    } catch (...) {
      throw UsageError(where + "an exception of unknown type");
    }
  }

  M* master_;
  std::size_t n_;
  std::size_t total_ = 0;
  std::vector<std::shared_ptr<ParameterStorage<T>>> master_params_;
  std::vector<std::unique_ptr<M>> replicas_;
  std::vector<std::vector<std::shared_ptr<ParameterStorage<T>>>> replica_params_;
  std::vector<std::unique_ptr<Tape<T>>> tapes_;
  std::vector<std::pair<std::size_t, std::size_t>> shards_;
  std::vector<std::exception_ptr> errors_;
  std::vector<T> losses_;
  std::vector<T> weights_;  // n_k / n of the current step
  std::size_t rows_ = 0;
  void* fn_ = nullptr;
  Var<T> (*call_)(void*, M&, Tape<T>&, std::size_t, std::size_t) = nullptr;

  std::mutex mu_;
  std::condition_variable start_cv_, computed_cv_, done_cv_;
  std::uint64_t generation_ = 0;
  std::size_t computed_ = 0, reduced_ = 0;
  bool failed_ = false;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace wengert::dist
