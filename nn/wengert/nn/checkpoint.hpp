// wengert — checkpoints: everything a training run needs to continue exactly where it stopped.
//
// A checkpoint is one state file (state.hpp, written atomically) holding:
//   model.*       the model's parameters by name (Module::state_dict)
//   optimizer.*   the optimizer's learning rate, step count, scalars and moments
//   scheduler.*   the scheduler's step count and hyperparameters (if there is one)
//   data.seed, data.epoch, data.batch    the data order: a Batcher's shuffle is a pure function
//                 of (seed, epoch), so these say which batch comes next
//   rng           a std::mt19937_64's full state (if given), for dropout or augmentation
//   extra.*       anything else the caller wants kept (input statistics, its own counters)
//
// Resuming from it — same model, same optimizer and scheduler settings, same data, same
// machine, one thread — continues bit for bit: the test (tests/nn/test_checkpoint.cpp) trains
// 4 epochs straight and 2 + stop + resume 2 and compares every parameter's bits.
//
//   nn::save_checkpoint("run/checkpoint.wgrt", model, adam, &sched, {seed, epoch, 0});
//   …
//   nn::TrainingPosition at = nn::load_checkpoint("run/checkpoint.wgrt", model, adam, &sched);
//   for (epoch = at.epoch; …) {
//     batches.start_epoch(epoch);
//     if (epoch == at.epoch) batches.skip(at.batch);   // the batches trained before it
//     …
//   }
//
// load_checkpoint is all or nothing: if any part does not fit (another model, another
// optimizer, another schedule), it throws a ValueError naming the file and the part, and the
// model, optimizer, scheduler and generator are left as they were.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include <wengert/nn/module.hpp>
#include <wengert/nn/optim.hpp>
#include <wengert/nn/schedule.hpp>
#include <wengert/nn/state.hpp>

namespace wengert::nn {

/// Where a run stands: the next batch to train is batch `batch` of epoch `epoch` (both
/// 0-based) of the order drawn from `seed`.
struct TrainingPosition {
  std::uint64_t seed = 0;
  std::uint64_t epoch = 0;
  std::uint64_t batch = 0;
};

/// Stores / restores a generator's complete state as a uint64 tensor `name`.
void set_rng(StateDict& sd, const std::string& name, const std::mt19937_64& rng);
void get_rng(const StateDict& sd, const std::string& name, std::mt19937_64& rng,
             const std::string& who);

/// Writes a checkpoint to `path` (atomically; see save_state). `sched`, `rng` and `extra` may
/// be null.
template <class T>
void save_checkpoint(const std::string& path, const Module<T>& model, const Optimizer<T>& opt,
                     const LRScheduler* sched, const TrainingPosition& position,
                     const std::mt19937_64* rng = nullptr, const StateDict* extra = nullptr);

/// Restores a checkpoint into the model, optimizer, scheduler and generator (those given must
/// have been given to save_checkpoint too) and returns the position; `extra`, if given,
/// receives the extra.* entries (prefix removed). All or nothing (see above).
template <class T>
TrainingPosition load_checkpoint(const std::string& path, Module<T>& model, Optimizer<T>& opt,
                                 LRScheduler* sched, std::mt19937_64* rng = nullptr,
                                 StateDict* extra = nullptr);

extern template void save_checkpoint<float>(const std::string&, const Module<float>&,
                                            const Optimizer<float>&, const LRScheduler*,
                                            const TrainingPosition&, const std::mt19937_64*,
                                            const StateDict*);
extern template void save_checkpoint<double>(const std::string&, const Module<double>&,
                                             const Optimizer<double>&, const LRScheduler*,
                                             const TrainingPosition&, const std::mt19937_64*,
                                             const StateDict*);
extern template TrainingPosition load_checkpoint<float>(const std::string&, Module<float>&,
                                                        Optimizer<float>&, LRScheduler*,
                                                        std::mt19937_64*, StateDict*);
extern template TrainingPosition load_checkpoint<double>(const std::string&, Module<double>&,
                                                         Optimizer<double>&, LRScheduler*,
                                                         std::mt19937_64*, StateDict*);

}  // namespace wengert::nn
