// wengert — data parallelism over threads of one process: ThreadDataParallel.
//
// The model given at construction is the master: the optimizer updates its Parameters, and it
// alone is saved, evaluated or checkpointed. ThreadDataParallel keeps N − 1 replicas (deep
// copies: nn::Module copies are deep) and N tapes. A step splits the batch's rows into N
// contiguous shards, as equal as possible (the first rows % N shards one row longer), and for
// each shard k calls
//
//     Var<T> loss(M& model, Tape<T>& tape, std::size_t begin, std::size_t end)
//
// which records the forward pass of rows [begin, end) on `tape` with `model` and returns the
// shard's MEAN loss (a scalar). Shard 0 runs on the calling thread with the master itself, the
// others on N − 1 worker threads (made once, at construction) with their replicas. Each tape
// is used by one thread only.
//
// Before its shard every replica copies the master's current values, and before the shards
// start its buffers (batch norm's running statistics) and every module's training mode (so the
// previous optimizer step, a loaded checkpoint, or master.eval() is seen; the master's buffers are
// updated by shard 0's rows alone, as with rank 0's in PyTorch's DistributedDataParallel). Each
// shard's backward is seeded with its weight n_k / n (n_k its rows, n the batch's), so its
// gradients are already those of its share of the batch's mean loss: shard 0's land in the master's
// gradients, the others' in their replicas'. Then all threads together reduce, each over its own
// range of the parameters' elements taken as one flat vector:
//     master.grad += replica_1.grad + … + replica_{N−1}.grad,
// added in shard order (the result does not depend on scheduling), zeroing those replica
// elements for the next step. The master's gradients are then those of the mean loss over the
// whole batch, unequal shards included.
//
// Two ways to use it:
//   * backward(rows, loss): the above; an optimizer step on the master follows, as after
//     tape.backward. Master gradients accumulate, as backward's do: zero them after the step.
//   * step(rows, loss, optimizer): the same, then each thread also applies the optimizer to its
//     range (Optimizer::update) and zeroes its range of the master's gradients, so the update
//     runs on every thread while that range is still in cache. The result equals backward()
//     followed by optimizer.step() and zero_grad(), bit for bit: the ranges are cut at
//     multiples of Optimizer::kAlign elements into each parameter.
//
// With N = 1 there are no replicas and no threads: the loss runs on the master itself, exactly
// as a plain training step would (bit-identical results).
//
// Per step nothing is allocated by ThreadDataParallel (the loss function's tape work is
// allocation-free too once the tapes have grown). A thread waiting for the others spins for
// up to 100 µs (a step's hand-overs come sooner than a futex sleep and wake-up would), then
// sleeps on a condition variable: idle workers sleep. An exception in any shard is caught; once
// every shard has finished, the call throws a wengert::Error naming the shard, its rows and the
// original message. The master's values and the optimizer are then untouched, and the master's
// gradients are zero: shard 0 may have added its part already, so what they held before the call is
// not kept (zero them before accumulating, as after any failed batch). The object stays usable.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
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
#include <wengert/nn/optim.hpp>
#include <wengert/tape.hpp>

namespace wengert::dist {

/// Splits n rows into `parts` contiguous shards; shard k is [shard_begin(n, parts, k),
/// shard_begin(n, parts, k + 1)). The first n % parts shards have one row more.
inline std::size_t shard_begin(std::size_t n, std::size_t parts, std::size_t k) {
  const std::size_t q = n / parts, r = n % parts;
  return k * q + (k < r ? k : r);
}

/// Where a data-parallel step's time went, in seconds summed over steps (steady clock). Filled
/// by ThreadDataParallel (the calling thread's view, which is what the step's wall time is) and
/// by MpiGradients; a field a class does not measure stays 0.
struct StepTimes {
  std::uint64_t steps = 0;
  double compute = 0;    // threads: forward and backward of shard 0 (on the calling thread)
  double wait = 0;       // threads: waiting at the barrier for the other shards' backward
  double reduce = 0;     // threads: its part of the reduction (and of the optimizer's update,
                         // in step()), and waiting for the other parts
  double pack = 0;       // MPI: scaling the gradients into the flat buffer, and back out
  double allreduce = 0;  // MPI: inside MPI_Allreduce (transfer, and waiting for slower ranks)
  double optimizer = 0;  // the optimizer step and zero_grad, if the training loop records them
};

template <class T, class M>
class ThreadDataParallel {
  static_assert(std::is_base_of_v<nn::Module<T>, M>, "M must be an nn::Module<T>");

 public:
  /// Makes threads − 1 replicas of `master` and starts threads − 1 workers. `master` must
  /// outlive this object (its Parameters may move: their storage is held, as optimizers hold
  /// it).
  ThreadDataParallel(M& master, std::size_t threads) : master_(&master), n_(threads) {
    if (threads == 0) throw UsageError("ThreadDataParallel: threads must be at least 1");
    for (Parameter<T>* p : master.parameters()) master_params_.push_back(p->storage());
    for (auto& [name, b] : master.named_buffers()) master_buffers_.push_back(b->storage());
    master_modules_.push_back(&master);
    for (auto& [name, m] : master.named_modules()) master_modules_.push_back(m);
    tapes_.reserve(n_);
    for (std::size_t k = 0; k < n_; ++k) tapes_.push_back(std::make_unique<Tape<T>>());
    replicas_.resize(n_);  // replicas_[0] stays empty: shard 0 runs on the master
    replica_params_.resize(n_);
    replica_buffers_.resize(n_);
    replica_modules_.resize(n_);
    for (std::size_t k = 1; k < n_; ++k) {
      replicas_[k] = std::make_unique<M>(master);
      for (Parameter<T>* p : replicas_[k]->parameters()) {
        p->zero_grad();
        replica_params_[k].push_back(p->storage());
      }
      for (auto& [name, b] : replicas_[k]->named_buffers())
        replica_buffers_[k].push_back(b->storage());
      replica_modules_[k].push_back(replicas_[k].get());
      for (auto& [name, m] : replicas_[k]->named_modules()) replica_modules_[k].push_back(m);
      if (replica_params_[k].size() != master_params_.size() ||
          replica_buffers_[k].size() != master_buffers_.size() ||
          replica_modules_[k].size() != master_modules_.size())
        throw UsageError(
            "ThreadDataParallel: a copy of the model does not have the master's "
            "parameters, buffers and modules; M's copy constructor must copy them "
            "all");
    }
    shards_.resize(n_);
    errors_.resize(n_ + 1);
    losses_.resize(n_);
    weights_.resize(n_);
    // The flat range [cuts_[k], cuts_[k + 1]) of parameter elements thread k reduces (and
    // updates, in step()): equal parts, each cut moved down to a multiple of kAlign elements
    // into its parameter, so that the optimizer's kernels round as in one whole step.
    std::size_t total = 0;
    for (auto& s : master_params_) total += s->value.size();
    cuts_.resize(n_ + 1);
    for (std::size_t k = 0; k <= n_; ++k) {
      const std::size_t want = shard_begin(total, n_, k);
      std::size_t off = 0, cut = want;
      for (auto& s : master_params_) {
        const std::size_t size = s->value.size();
        if (want < off + size) {
          cut = off + (want - off) / nn::Optimizer<T>::kAlign * nn::Optimizer<T>::kAlign;
          break;
        }
        off += size;
      }
      cuts_[k] = cut;
    }
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
  /// The model shard k runs on (0 ≤ k < threads()): the master for k = 0, a replica otherwise.
  M& replica(std::size_t k) {
    if (k >= n_)
      throw UsageError("ThreadDataParallel::replica(" + std::to_string(k) + "): there are " +
                       std::to_string(n_) + " shards");
    return k == 0 ? *master_ : *replicas_[k];
  }
  /// The tape shard k records on.
  Tape<T>& tape(std::size_t k) { return *tapes_.at(k); }
  /// Where the calling thread's time went since construction or reset_times() (compute, wait
  /// and reduce; with one thread all of it is compute). Six clock reads per step.
  const StepTimes& times() const { return times_; }
  void reset_times() { times_ = StepTimes{}; }

  /// Forward and backward of a batch of `rows` rows, split over the threads (see the top of
  /// this header); adds the gradient of the batch's mean loss to the master's gradients and
  /// returns that mean loss. rows must be ≥ threads() (every shard needs a row).
  template <class F>
  T backward(std::size_t rows, F&& loss) {
    return run(rows, loss, nullptr);
  }

  /// backward(rows, loss), then `optimizer`'s step and the zeroing of the master's gradients,
  /// every thread doing its range of the parameters. The optimizer must update exactly the
  /// master's parameters, in the order of master.parameters() (UsageError otherwise). Any
  /// gradient the master held before the call is part of the step, as with backward().
  template <class F>
  T step(std::size_t rows, F&& loss, nn::Optimizer<T>& optimizer) {
    if (optimizer.size() != master_params_.size())
      throw UsageError("ThreadDataParallel::step: the optimizer updates " +
                       std::to_string(optimizer.size()) + " parameters but the master model has " +
                       std::to_string(master_params_.size()) +
                       "; build it on the master's parameters()");
    for (std::size_t i = 0; i < master_params_.size(); ++i)
      if (&optimizer.parameter(i) != master_params_[i].get())
        throw UsageError("ThreadDataParallel::step: the optimizer's parameter " +
                         std::to_string(i) + " ('" + optimizer.parameter(i).name +
                         "') is not the master's parameter " + std::to_string(i) + " ('" +
                         master_params_[i]->name + "'); build it on the master's parameters()");
    if (n_ == 1) {
      const T l = run(rows, loss, nullptr);
      const auto t0 = Clock::now();
      optimizer.step();
      optimizer.zero_grad();
      times_.optimizer += seconds(t0, Clock::now());
      return l;
    }
    return run(rows, loss, &optimizer);
  }

  /// Runs fn(model, tape, begin, end) for every shard of `rows` rows, shard k on thread k with
  /// the model shard k uses (replicas first copy the master's values), and returns when all
  /// are done: for work that needs no gradient, such as evaluating a test set in parallel
  /// (fn then opens its own NoGradGuard: grad mode is per thread). Each shard's tape is
  /// cleared before fn. Exceptions are rethrown as by backward(); gradients are not touched.
  /// rows must be ≥ threads().
  template <class F>
  void for_each_shard(std::size_t rows, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    each_ = [](void* f, M& m, Tape<T>& t, std::size_t b, std::size_t e) {
      (*static_cast<Fn*>(f))(m, t, b, e);
    };
    fn_ = const_cast<void*>(static_cast<const void*>(&fn));
    start(rows, nullptr, true);
  }

 private:
  template <class F>
  T run(std::size_t rows, F& loss, nn::Optimizer<T>* opt) {
    using Fn = std::remove_reference_t<F>;
    call_ = [](void* f, M& m, Tape<T>& t, std::size_t b, std::size_t e) -> Var<T> {
      return (*static_cast<Fn*>(f))(m, t, b, e);
    };
    fn_ = const_cast<void*>(static_cast<const void*>(&loss));
    return start(rows, opt, false);
  }

  // Splits `rows`, runs every shard (the loss and backward, or for_each_shard's function) and
  // the reduction; rethrows the first shard's error.
  T start(std::size_t rows, nn::Optimizer<T>* opt, bool each) {
    if (rows < n_)
      throw UsageError("ThreadDataParallel: a batch of " + std::to_string(rows) +
                       " rows cannot be split over " + std::to_string(n_) +
                       " threads (every thread needs at least one row)");
    rows_ = rows;
    for (std::size_t k = 0; k < n_; ++k) {
      shards_[k] = {shard_begin(rows, n_, k), shard_begin(rows, n_, k + 1)};
      weights_[k] = T(shards_[k].second - shards_[k].first) / T(rows);
    }
    if (!each) ++times_.steps;
    if (n_ == 1 && each) {
      Tape<T>& t = *tapes_[0];
      t.clear();
      each_(fn_, *master_, t, 0, rows);
      return T(0);
    }
    if (n_ == 1) {
      const auto t0 = Clock::now();
      Tape<T>& t = *tapes_[0];
      t.clear();
      Var<T> l = call_(fn_, *master_, t, 0, rows);
      check_scalar(l, 0);
      t.backward(l);
      times_.compute += seconds(t0, Clock::now());
      return l.item();
    }
    check_structure();
    // Buffers and modes are copied here, before any shard starts: shard 0's forward writes the
    // master's buffers (batch norm's running statistics) while the workers run (a data race
    // TSan found when each worker copied them itself). They are small; the parameters, large
    // and not written until every shard is done, are copied by each worker in parallel.
    for (std::size_t k = 1; k < n_; ++k) refresh_state(k);
    {
      std::lock_guard<std::mutex> lock(mu_);
      arrived_ = 0;
      computed_.store(false, std::memory_order_relaxed);
      reduced_.store(0, std::memory_order_relaxed);
      failed_ = false;
      opt_ = opt;
      each_mode_ = each;
      generation_.fetch_add(1, std::memory_order_release);  // publishes the step's setup
    }
    start_cv_.notify_all();
    run_shard(0);
    const auto t3 = Clock::now();
    await(done_cv_, [this] { return reduced_.load(std::memory_order_acquire) == n_; });
    if (!each) times_.reduce += seconds(t3, Clock::now());
    if (failed_) {
      for (std::size_t k = 0; k <= n_; ++k)
        if (errors_[k]) {
          std::exception_ptr e = std::exchange(errors_[k], nullptr);
          for (auto& x : errors_) x = nullptr;
          rethrow(e, k);
        }
    }
    if (each) return T(0);
    T sum = 0;
    for (std::size_t k = 0; k < n_; ++k)
      sum += losses_[k] * T(shards_[k].second - shards_[k].first);
    return sum / T(rows);
  }

  void check_scalar(const Var<T>& l, std::size_t k) const {
    if (l.size() != 1)
      throw UsageError("ThreadDataParallel: the loss of shard " + std::to_string(k) +
                       " has shape " + l.shape().str() +
                       "; it must be a scalar (the shard's mean loss)");
  }

  // The master may have changed since construction (a parameter resized): the replicas would
  // then not fit it.
  void check_structure() const {
    auto check = [](const auto& mine, const auto& theirs, const char* what) {
      for (std::size_t i = 0; i < mine.size(); ++i)
        if (!mine[i]->owned || mine[i]->value.size() != theirs[i]->value.size())
          throw UsageError(std::string("ThreadDataParallel: the master model's ") + what + " '" +
                           mine[i]->name +
                           "' was replaced or resized after the replicas were made; build a "
                           "new ThreadDataParallel for the new model");
    };
    check(master_params_, replica_params_[1], "parameter");
    check(master_buffers_, replica_buffers_[1], "buffer");
  }

  // Shard k on the calling thread (k = 0, the master) or worker k (replica k): refresh,
  // forward, backward seeded with the shard's weight; then, once every shard's gradients are
  // final, the k-th part of the reduction (and of the update, in step()).
  void run_shard(std::size_t k) {
    const auto t0 = Clock::now();
    try {
      M& m = k == 0 ? *master_ : *replicas_[k];
      if (k > 0) refresh(k);  // values (buffers and modes: refresh_state, before the start)
      Tape<T>& t = *tapes_[k];
      t.clear();
      if (each_mode_) {
        each_(fn_, m, t, shards_[k].first, shards_[k].second);
      } else {
        Var<T> l = call_(fn_, m, t, shards_[k].first, shards_[k].second);
        check_scalar(l, k);
        t.backward(l, &weights_[k], nullptr, 0);
        losses_[k] = l.item();
      }
    } catch (...) {
      errors_[k] = std::current_exception();
    }
    const auto t1 = Clock::now();
    bool last = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (errors_[k]) failed_ = true;
      last = ++arrived_ == n_;
      if (last) {
        // The last shard to finish starts the optimizer's step (its checks and step count).
        if (!failed_ && opt_) try {
            opt_->begin_step();
          } catch (...) {
            errors_[n_] = std::current_exception();
            failed_ = true;
          }
        computed_.store(true, std::memory_order_release);
      }
    }
    if (last)
      computed_cv_.notify_all();
    else
      await(computed_cv_, [this] { return computed_.load(std::memory_order_acquire); });
    const auto t2 = Clock::now();
    std::exception_ptr late;  // reduce_part's checks passed in begin_step: not expected
    if (!each_mode_) try {
        reduce_part(k, !failed_.load(std::memory_order_acquire));
      } catch (...) {
        late = std::current_exception();
      }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (late && !errors_[k]) errors_[k] = late;
      if (late) failed_ = true;
      last = reduced_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_;
    }
    if (last) done_cv_.notify_all();
    if (k == 0 && !each_mode_) {  // the calling thread; its wait for the others: in start()
      times_.compute += seconds(t0, t1);
      times_.wait += seconds(t1, t2);
      times_.reduce += seconds(t2, Clock::now());
    }
  }

  using Clock = std::chrono::steady_clock;
  static double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }

  // Replica k's parameter values become the master's (on worker k, at the start of its shard).
  void refresh(std::size_t k) {
    auto& ps = replica_params_[k];
    for (std::size_t i = 0; i < ps.size(); ++i)
      std::copy(master_params_[i]->value.begin(), master_params_[i]->value.end(),
                ps[i]->value.begin());
  }

  // Replica k's buffers (batch norm's running statistics) and every module's training mode
  // become the master's (on the calling thread, before the shards start). So the replicas' own
  // updates of their buffers are dropped, and the master's come from shard 0's rows alone —
  // what PyTorch's DistributedDataParallel does with broadcast_buffers, where rank 0's win.
  void refresh_state(std::size_t k) {
    auto& bs = replica_buffers_[k];
    for (std::size_t i = 0; i < bs.size(); ++i)
      std::copy(master_buffers_[i]->value.begin(), master_buffers_[i]->value.end(),
                bs[i]->value.begin());
    for (std::size_t i = 0; i < master_modules_.size(); ++i)
      replica_modules_[k][i]->set_own_training(master_modules_[i]->training());
  }

  // Thread k's range [cuts_[k], cuts_[k + 1]) of the flat parameter vector, one block of
  // kBlock elements at a time: adds the replicas' gradients into the master's in shard order
  // (master += g_1, then += g_2, …: the same order whatever the scheduling) and zeroes them in
  // the replicas for the next step; in step() it then updates the block with the optimizer
  // and zeroes the master's gradients there, while the block is still in the L1 cache (one
  // pass over memory instead of three). If a shard failed it zeroes the replicas' and the
  // master's gradients only. Blocks start a multiple of kBlock (itself one of kAlign) after a
  // cut, which falls a multiple of kAlign into a parameter: the update stays bit-identical to
  // Optimizer::step(). Contiguous loops over raw pointers: vectorised.
  void reduce_part(std::size_t k, bool add) {
    const std::size_t b = cuts_[k], e = cuts_[k + 1];
    const bool update = add && opt_;
    std::size_t off = 0;
    for (std::size_t i = 0; i < master_params_.size() && off < e; ++i) {
      const std::size_t size = master_params_[i]->value.size();
      const std::size_t lo = std::max(b, off) - off, hi = std::min(e, off + size) - off;
      for (std::size_t s = lo; s < hi; s += kBlock) {
        const std::size_t t = std::min(hi, s + kBlock), len = t - s;
        T* g = master_params_[i]->grad.data() + s;
        for (std::size_t j = 1; j < n_; ++j) {
          T* r = replica_params_[j][i]->grad.data() + s;
          if (add)
            for (std::size_t x = 0; x < len; ++x) g[x] += r[x];
          std::fill(r, r + len, T(0));
        }
        if (update) opt_->update_parameter(i, s, t);
        if (update || !add) std::fill(g, g + len, T(0));
      }
      off += size;
    }
  }
  // 4 KiB of float per array: the block's gradient, replica gradient, value and two Adam
  // moments (20 KiB; 40 in double) stay in a 48 KiB L1 data cache (Zen 4, Ice Lake and later)
  // between the reduction and the update.
  static constexpr std::size_t kBlock = 1024;
  static_assert(kBlock % nn::Optimizer<T>::kAlign == 0, "blocks must keep cuts aligned");

  void worker(std::size_t k) {
    std::uint64_t seen = 0;
    for (;;) {
      await(start_cv_, [&] {
        return stop_.load(std::memory_order_acquire) ||
               generation_.load(std::memory_order_acquire) != seen;
      });
      if (stop_.load(std::memory_order_acquire)) return;
      seen = generation_.load(std::memory_order_acquire);
      run_shard(k);
    }
  }

  // Waits until pred() (which reads atomics only) holds. A step's hand-overs come
  // microseconds apart, less than a futex sleep and wake-up costs, so it first spins for up to
  // kSpin, then sleeps on cv: an idle worker sleeps. Whoever makes pred() true does so under
  // mu_ and then notifies cv, so a sleeper cannot miss it.
  template <class P>
  void await(std::condition_variable& cv, P pred) {
    const auto until = Clock::now() + kSpin;
    for (unsigned i = 1; !pred(); ++i) {
      if (i % 64 == 0 && Clock::now() >= until) {
        std::unique_lock<std::mutex> lock(mu_);
        cv.wait(lock, pred);
        return;
      }
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#else
      std::this_thread::yield();
#endif
    }
  }
  static constexpr std::chrono::microseconds kSpin{100};

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true, std::memory_order_release);
    }
    start_cv_.notify_all();
    for (auto& w : workers_)
      if (w.joinable()) w.join();
    workers_.clear();
  }

  [[noreturn]] void rethrow(std::exception_ptr e, std::size_t k) const {
    const std::string where =
        k == n_ ? "ThreadDataParallel::step: the optimizer refused the step; the master's "
                  "gradients were zeroed: "
                : "ThreadDataParallel: shard " + std::to_string(k) + " of " + std::to_string(n_) +
                      " (rows " + std::to_string(shards_[k].first) + ".." +
                      std::to_string(shards_[k].second) + " of " + std::to_string(rows_) +
                      ", thread " + std::to_string(k) + ") failed" +
                      (each_mode_ ? ": "
                                  : "; the master's values are unchanged and its gradients "
                                    "zeroed: ");
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
  std::vector<std::size_t> cuts_;  // thread k's flat parameter range: [cuts_[k], cuts_[k + 1])
  std::vector<std::shared_ptr<ParameterStorage<T>>> master_params_;
  std::vector<std::unique_ptr<M>> replicas_;  // [0] empty: shard 0 uses the master
  std::vector<std::vector<std::shared_ptr<ParameterStorage<T>>>> replica_params_;
  // Buffers and modules (the root first), in the same order in the master and each replica.
  std::vector<std::shared_ptr<ParameterStorage<T>>> master_buffers_;
  std::vector<std::vector<std::shared_ptr<ParameterStorage<T>>>> replica_buffers_;
  std::vector<nn::Module<T>*> master_modules_;
  std::vector<std::vector<nn::Module<T>*>> replica_modules_;
  std::vector<std::unique_ptr<Tape<T>>> tapes_;
  std::vector<std::pair<std::size_t, std::size_t>> shards_;
  std::vector<std::exception_ptr> errors_;  // per shard, and [n_]: the optimizer's begin_step
  std::vector<T> losses_;
  std::vector<T> weights_;  // n_k / n of the current step
  std::size_t rows_ = 0;
  StepTimes times_;
  void* fn_ = nullptr;
  Var<T> (*call_)(void*, M&, Tape<T>&, std::size_t, std::size_t) = nullptr;
  void (*each_)(void*, M&, Tape<T>&, std::size_t, std::size_t) = nullptr;
  bool each_mode_ = false;           // for_each_shard: no backward, no reduction
  nn::Optimizer<T>* opt_ = nullptr;  // in step(); set under mu_ before the workers start

  std::mutex mu_;
  std::condition_variable start_cv_, computed_cv_, done_cv_;
  // Written under mu_ (so that a sleeper in await cannot miss a change), read by spinners.
  std::atomic<std::uint64_t> generation_{0};  // one per step: workers start on a new value
  std::atomic<bool> computed_{false};         // every shard's backward is done
  std::atomic<std::size_t> reduced_{0};       // threads done with their part of the reduction
  std::atomic<bool> stop_{false};
  std::size_t arrived_ = 0;  // shards done with backward (under mu_)
  // Written under mu_, before computed_ (a shard failed) or, unexpectedly, by a failing
  // reduction while others read it: atomic.
  std::atomic<bool> failed_{false};
  std::vector<std::thread> workers_;
};

}  // namespace wengert::dist
