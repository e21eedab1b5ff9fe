// wengert — Module: named, nested parameters, a train/eval flag, and state dicts by name.
//
// A model is a tree of Modules. Each Module says what it holds by overriding visit(): its own
// parameters and its child modules, each under a name. Everything else is derived from that one
// function, on demand — nothing is registered and no pointer into the module is stored — so a
// Module can be copied (a deep copy) and moved (into a std::vector that grows, say) at any time:
//
//   template <class T>
//   struct Block : nn::Module<T> {
//     nn::Linear<T> fc1, fc2;
//     Parameter<T> scale{Shape{1}};
//     void visit(nn::ModuleVisitor<T>& v) override {
//       v.module("fc1", fc1);
//       v.module("fc2", fc2);
//       v.parameter("scale", scale);
//     }
//   };
//
//   block.named_parameters();   // {"fc1.weight", &…}, {"fc1.bias", &…}, …, {"scale", &…}
//   block.eval();               // training() is false here and in fc1 and fc2
//   nn::StateDict sd = block.state_dict();
//   other.load_state_dict(sd);  // all or nothing; ValueError listing every mismatch
//
// Optimizers built from parameters() keep working when the module moves: they hold the
// Parameters' storage, not the Parameter objects (see parameter.hpp).
//
// A module may also hold buffers: state that is saved and loaded with the parameters but is not
// trained (batch norm's running statistics). visit() reports them with v.buffer(name, b); they
// are in state_dict() and load_state_dict() (so in checkpoints and weights files) and in
// named_buffers(), never in parameters() (so no optimizer touches them). A buffer is held as a
// Parameter<T> for its storage; its gradient is unused.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <wengert/nn/state.hpp>
#include <wengert/tape.hpp>

namespace wengert::nn {

template <class T>
class Module;

/// What Module::visit() reports to: its parameters and its children, by name.
template <class T>
class ModuleVisitor {
 public:
  virtual ~ModuleVisitor() = default;
  virtual void parameter(const std::string& name, Parameter<T>& p) = 0;
  virtual void module(const std::string& name, Module<T>& m) = 0;
  /// A buffer: saved and loaded like a parameter, never trained. Ignored unless overridden.
  virtual void buffer(const std::string& name, Parameter<T>& b) {
    (void)name;
    (void)b;
  }
};

template <class T>
class Module {
 public:
  virtual ~Module() = default;

  /// Reports this module's own parameters and children to `v` (not the children's contents).
  /// Names must be non-empty, contain no '.', and be unique within the module.
  virtual void visit(ModuleVisitor<T>& v) = 0;

  /// Every parameter of the tree, depth first in visit() order, named by its path ("fc1.weight").
  std::vector<std::pair<std::string, Parameter<T>*>> named_parameters() {
    std::vector<std::pair<std::string, Parameter<T>*>> out;
    Collector c([&](const std::string& name, Parameter<T>& p) { out.emplace_back(name, &p); });
    c.walk(*this, "");
    return out;
  }
  /// Every buffer of the tree (see the top of this header), named by path ("bn1.running_mean").
  std::vector<std::pair<std::string, Parameter<T>*>> named_buffers() {
    std::vector<std::pair<std::string, Parameter<T>*>> out;
    Collector c(nullptr, nullptr,
                [&](const std::string& name, Parameter<T>& b) { out.emplace_back(name, &b); });
    c.walk(*this, "");
    return out;
  }
  /// The same parameters, without their names: what an optimizer takes.
  std::vector<Parameter<T>*> parameters() {
    std::vector<Parameter<T>*> out;
    for (auto& [name, p] : named_parameters()) out.push_back(p);
    return out;
  }
  /// Every module of the tree below this one, depth first, named by its path ("encoder.fc1").
  std::vector<std::pair<std::string, Module<T>*>> named_modules() {
    std::vector<std::pair<std::string, Module<T>*>> out;
    Collector c(nullptr,
                [&](const std::string& name, Module<T>& m) { out.emplace_back(name, &m); });
    c.walk(*this, "");
    return out;
  }

  /// Sets training mode (true) or evaluation mode (false) on this module and every module below.
  /// Layers whose forward differs between the two (dropout, batch norm) read training().
  void train(bool on = true) {
    training_ = on;
    for (auto& [name, m] : named_modules()) m->training_ = on;
  }
  void eval() { train(false); }
  bool training() const { return training_; }
  /// Sets the mode of this module alone, not of those below it (train() sets the whole tree):
  /// for code that mirrors one tree's modes onto a copy of it (dist::ThreadDataParallel does,
  /// before every step). Allocates nothing.
  void set_own_training(bool on) { training_ = on; }

  /// A copy of every parameter's and then every buffer's value, by path.
  StateDict state_dict() const {
    StateDict sd;
    for (auto& [name, p] : self().named_parameters()) sd.set(name, *p);
    for (auto& [name, b] : self().named_buffers()) sd.set(name, *b);
    return sd;
  }
  /// Copies `sd`'s tensors into the parameters of the same names. With `strict`, the names must
  /// be exactly this module's; without, entries the model lacks are ignored (parameters the
  /// state lacks are still an error). A ValueError lists everything that is missing, unexpected
  /// or of the wrong shape or dtype; on any error nothing is written.
  void load_state_dict(const StateDict& sd, bool strict = true) {
    auto named = named_parameters();
    for (auto& nb : named_buffers()) named.push_back(nb);
    std::string missing, wrong, unexpected;
    for (auto& [name, p] : named) {
      const StateDict::Entry* e = sd.find(name);
      if (!e)
        missing += (missing.empty() ? "" : ", ") + name;
      else if (e->dtype() != dtype_of<T>() || e->shape != p->shape())
        wrong += (wrong.empty() ? "" : ", ") + name + " (" + dtype_name(e->dtype()) + " " +
                 e->shape.str() + " in the state, " + dtype_name(dtype_of<T>()) + " " +
                 p->shape().str() + " in the model)";
    }
    if (strict)
      for (const auto& e : sd.entries()) {
        bool found = false;
        for (auto& np : named) found = found || np.first == e.name;
        if (!found) unexpected += (unexpected.empty() ? "" : ", ") + e.name;
      }
    if (!missing.empty() || !wrong.empty() || !unexpected.empty()) {
      std::string msg = "load_state_dict: the state does not fit the model:";
      if (!missing.empty()) msg += " missing: " + missing + ";";
      if (!unexpected.empty()) msg += " unexpected: " + unexpected + ";";
      if (!wrong.empty()) msg += " wrong shape or dtype: " + wrong + ";";
      msg.pop_back();
      throw ValueError(msg);
    }
    for (auto& [name, p] : named) {
      const std::vector<T>& v = sd.find(name)->template as<T>();
      std::copy(v.begin(), v.end(), p->data());
    }
  }

 protected:
  Module() = default;
  Module(const Module&) = default;
  Module(Module&&) noexcept = default;
  Module& operator=(const Module&) = default;
  Module& operator=(Module&&) noexcept = default;

 private:
  Module& self() const { return const_cast<Module&>(*this); }  // visit() does not modify

  // Walks the tree, checking names as it goes; calls on_param / on_module with full paths.
  class Collector final : public ModuleVisitor<T> {
   public:
    using ParamFn = std::function<void(const std::string&, Parameter<T>&)>;
    using ModuleFn = std::function<void(const std::string&, Module<T>&)>;
    explicit Collector(ParamFn on_param, ModuleFn on_module = nullptr, ParamFn on_buffer = nullptr)
        : on_param_(std::move(on_param)),
          on_module_(std::move(on_module)),
          on_buffer_(std::move(on_buffer)) {}
    void walk(Module<T>& m, const std::string& prefix) {
      const std::string saved = prefix_;
      std::vector<std::string> seen;
      std::swap(seen, seen_);
      prefix_ = prefix;
      m.visit(*this);
      prefix_ = saved;
      std::swap(seen, seen_);
    }
    void parameter(const std::string& name, Parameter<T>& p) override {
      const std::string path = check(name);
      if (on_param_) on_param_(path, p);
    }
    void buffer(const std::string& name, Parameter<T>& b) override {
      const std::string path = check(name);
      if (on_buffer_) on_buffer_(path, b);
    }
    void module(const std::string& name, Module<T>& m) override {
      const std::string path = check(name);
      if (on_module_) on_module_(path, m);
      walk(m, path + ".");
    }

   private:
    std::string check(const std::string& name) {
      if (name.empty() || name.find('.') != std::string::npos)
        throw UsageError("Module: the name '" + name + "' under '" + prefix_ +
                         "' must be non-empty and contain no '.'");
      for (const auto& s : seen_)
        if (s == name) throw UsageError("Module: two members are named '" + prefix_ + name + "'");
      seen_.push_back(name);
      return prefix_ + name;
    }
    ParamFn on_param_;
    ModuleFn on_module_;
    ParamFn on_buffer_;
    std::string prefix_;
    std::vector<std::string> seen_;
  };

  bool training_ = true;
};

}  // namespace wengert::nn
