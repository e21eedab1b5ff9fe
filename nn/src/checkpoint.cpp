// Checkpoints (wengert/nn/checkpoint.hpp).
#include <wengert/nn/checkpoint.hpp>

#include <sstream>
#include <vector>

namespace wengert::nn {

void set_rng(StateDict& sd, const std::string& name, const std::mt19937_64& rng) {
  // The standard defines a generator's textual state (its words, then its position); parsed
  // into numbers, it is stored exactly and reproduces the generator with operator>>.
  std::stringstream ss;
  ss << rng;
  std::vector<std::uint64_t> words;
  std::uint64_t w;
  while (ss >> w) words.push_back(w);
  sd.set(name, Shape{words.size()}, words.data());
}

void get_rng(const StateDict& sd, const std::string& name, std::mt19937_64& rng,
             const std::string& who) {
  const StateDict::Entry* e = sd.find(name);
  if (!e) throw ValueError(who + ": '" + name + "' is missing");
  if (e->dtype() != DType::kUInt64 || e->shape.rank() != 1)
    throw ValueError(who + ": '" + name + "' is not a generator state (a uint64 vector)");
  std::stringstream ss;
  for (std::uint64_t w : e->as<std::uint64_t>()) ss << w << ' ';
  std::mt19937_64 r;
  ss >> r;
  if (ss.fail()) throw ValueError(who + ": '" + name + "' is not a std::mt19937_64 state");
  rng = r;
}

template <class T>
void save_checkpoint(const std::string& path, const Module<T>& model, const Optimizer<T>& opt,
                     const LRScheduler* sched, const TrainingPosition& pos,
                     const std::mt19937_64* rng, const StateDict* extra) {
  StateDict sd;
  sd.merge("model", model.state_dict());
  opt.state_dict(sd, "optimizer");
  if (sched) sched->state_dict(sd, "scheduler");
  sd.set("data.seed", pos.seed);
  sd.set("data.epoch", pos.epoch);
  sd.set("data.batch", pos.batch);
  if (rng) set_rng(sd, "rng", *rng);
  if (extra) sd.merge("extra", *extra);
  save_state(path, sd);
}

template <class T>
TrainingPosition load_checkpoint(const std::string& path, Module<T>& model, Optimizer<T>& opt,
                                 LRScheduler* sched, std::mt19937_64* rng, StateDict* extra) {
  const StateDict sd = load_state(path);
  const std::string who = "load_checkpoint: '" + path + "'";
  TrainingPosition pos;
  pos.seed = sd.get_u64("data.seed", who);
  pos.epoch = sd.get_u64("data.epoch", who);
  pos.batch = sd.get_u64("data.batch", who);
  std::mt19937_64 r;
  if (rng) get_rng(sd, "rng", r, who);
  StateDict ex;
  if (extra) ex = sd.sub("extra");
  // All or nothing: keep what is there, and put it back if any later part fails, whatever the
  // error (a ValueError for a state that does not fit, a ResourceError, anything).
  const StateDict model_before = model.state_dict();
  StateDict opt_before;
  opt.state_dict(opt_before, "optimizer");
  try {
    try {
      model.load_state_dict(sd.sub("model"));
    } catch (const ValueError& e) {
      throw ValueError(who + ": model: " + e.what());
    }
    opt.load_state_dict(sd, "optimizer");
    if (sched) sched->load_state_dict(sd, "scheduler");
  } catch (...) {
    model.load_state_dict(model_before);
    opt.load_state_dict(opt_before, "optimizer");
    try {
      throw;
    } catch (const ValueError& e) {
      const std::string msg = e.what();
      throw ValueError(msg.rfind(who, 0) == 0 ? msg : who + ": " + msg);
    }
  }
  // Nothing below can throw: the swap and the generator's copy.
  if (rng) *rng = r;
  if (extra) extra->swap(ex);
  return pos;
}

template void save_checkpoint<float>(const std::string&, const Module<float>&,
                                     const Optimizer<float>&, const LRScheduler*,
                                     const TrainingPosition&, const std::mt19937_64*,
                                     const StateDict*);
template void save_checkpoint<double>(const std::string&, const Module<double>&,
                                      const Optimizer<double>&, const LRScheduler*,
                                      const TrainingPosition&, const std::mt19937_64*,
                                      const StateDict*);
template TrainingPosition load_checkpoint<float>(const std::string&, Module<float>&,
                                                 Optimizer<float>&, LRScheduler*, std::mt19937_64*,
                                                 StateDict*);
template TrainingPosition load_checkpoint<double>(const std::string&, Module<double>&,
                                                  Optimizer<double>&, LRScheduler*,
                                                  std::mt19937_64*, StateDict*);

}  // namespace wengert::nn
