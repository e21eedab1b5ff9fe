// StateDict: named tensors of float32, float64 or uint64 (wengert/nn/state.hpp). The file
// functions save_state / load_state are in serialize.cpp, beside the parameter-file format.
#include <wengert/nn/state.hpp>

#include <cstring>

namespace wengert::nn {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kUInt64:
      return "uint64";
  }
  return "unknown";
}

template <class V>
const std::vector<V>& StateDict::Entry::as() const {
  if (dtype() != dtype_of<V>())
    throw UsageError("StateDict: '" + name + "' holds " + dtype_name(dtype()) + ", not " +
                     dtype_name(dtype_of<V>()));
  return std::get<std::vector<V>>(values);
}

StateDict::Entry& StateDict::slot(const std::string& name) {
  auto it = index_.find(name);
  if (it != index_.end()) return entries_[it->second];
  entries_.emplace_back();
  entries_.back().name = name;
  index_.emplace(name, entries_.size() - 1);
  return entries_.back();
}

template <class V>
void StateDict::set(const std::string& name, const Shape& shape, const V* data) {
  std::vector<V> v(shape.size());
  if (!v.empty()) std::memcpy(v.data(), data, v.size() * sizeof(V));
  Entry& e = slot(name);
  e.shape = shape;
  e.values = std::move(v);
}

const StateDict::Entry* StateDict::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

template <class V>
const V* StateDict::get(const std::string& name, const Shape& shape, const std::string& who) const {
  const Entry* e = find(name);
  if (!e) throw ValueError(who + ": '" + name + "' is missing");
  if (e->dtype() != dtype_of<V>())
    throw ValueError(who + ": '" + name + "' holds " + dtype_name(e->dtype()) + " values, not " +
                     dtype_name(dtype_of<V>()));
  if (e->shape != shape)
    throw ValueError(who + ": '" + name + "' has shape " + e->shape.str() + ", expected " +
                     shape.str());
  return std::get<std::vector<V>>(e->values).data();
}

std::uint64_t StateDict::get_u64(const std::string& name, const std::string& who) const {
  return *get<std::uint64_t>(name, Shape{}, who);
}

double StateDict::get_f64(const std::string& name, const std::string& who) const {
  return *get<double>(name, Shape{}, who);
}

void StateDict::erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
}

StateDict StateDict::sub(const std::string& prefix) const {
  StateDict out;
  const std::string p = prefix + ".";
  for (const Entry& e : entries_)
    if (e.name.compare(0, p.size(), p) == 0) {
      Entry& o = out.slot(e.name.substr(p.size()));
      o.shape = e.shape;
      o.values = e.values;
    }
  return out;
}

void StateDict::merge(const std::string& prefix, const StateDict& other) {
  if (&other == this) {  // slot() grows entries_ while the loop would read them
    const StateDict copy = other;
    merge(prefix, copy);
    return;
  }
  for (const Entry& e : other.entries_) {
    Entry& o = slot(prefix.empty() ? e.name : prefix + "." + e.name);
    o.shape = e.shape;
    o.values = e.values;
  }
}

template const std::vector<float>& StateDict::Entry::as<float>() const;
template const std::vector<double>& StateDict::Entry::as<double>() const;
template const std::vector<std::uint64_t>& StateDict::Entry::as<std::uint64_t>() const;
template void StateDict::set<float>(const std::string&, const Shape&, const float*);
template void StateDict::set<double>(const std::string&, const Shape&, const double*);
template void StateDict::set<std::uint64_t>(const std::string&, const Shape&, const std::uint64_t*);
template const float* StateDict::get<float>(const std::string&, const Shape&,
                                            const std::string&) const;
template const double* StateDict::get<double>(const std::string&, const Shape&,
                                              const std::string&) const;
template const std::uint64_t* StateDict::get<std::uint64_t>(const std::string&, const Shape&,
                                                            const std::string&) const;

}  // namespace wengert::nn
