// The dlib contender (see mlp_dlib.hpp). This is the only file that includes a dlib header.
#include "mlp_dlib.hpp"

#include <dlib/dnn.h>
#include <dlib/revision.h>

#include <algorithm>
#include <stdexcept>

// Debian's libdlib is compiled for baseline x86-64; with AVX on, dlib's SIMD types would not match
// it (benchmarks/CMakeLists.txt takes -march=native off for this file).
#if defined(__AVX__)
#error \
    "mlp_dlib.cpp must be compiled without -march=native/-mavx (Debian's dlib is baseline x86-64)"
#endif

namespace wengert_bench {

std::string dlib_info() {
  std::string s = "dlib " + std::to_string(DLIB_MAJOR_VERSION) + "." +
                  std::to_string(DLIB_MINOR_VERSION) + "." + std::to_string(DLIB_PATCH_VERSION);
#ifdef DLIB_USE_BLAS
  s += " (BLAS on)";
#else
  s += " (BLAS off)";
#endif
  s += ", this file compiled for baseline x86-64";
  return s;
}

namespace {

// fc sizes are set at run time (set_num_outputs before the first forward); the 1 is a default.
template <template <typename> class Loss>
using Net = Loss<dlib::fc<
    1, dlib::htan<dlib::fc<1, dlib::htan<dlib::fc<1, dlib::input<dlib::matrix<float>>>>>>>>;

}  // namespace

struct DlibMLP::Impl {
  virtual ~Impl() = default;
  virtual float step() = 0;
  virtual const dlib::tensor& params(std::size_t l) const = 0;  // [in + 1, out], bias last
  virtual const dlib::tensor& grads(std::size_t l) const = 0;
  std::size_t in(std::size_t l) const { return sizes[l]; }
  std::size_t out(std::size_t l) const { return sizes[l + 1]; }
  std::vector<std::size_t> sizes;
};

namespace {

template <template <typename> class Loss, class Label>
struct NetImpl final : DlibMLP::Impl {
  NetImpl(const Problem& p, std::vector<Label> labels_)
      : labels(std::move(labels_)),
        lr(p.lr),
        solvers(Net<Loss>::num_computational_layers, dlib::sgd(0.0f, 0.0f)) {
    const Workload& w = p.w;
    sizes = w.sizes;
    // Layer l of the floor (0 = first) is dlib::layer<5 - 2l>: 1 is the top fc, 6 the input.
    dlib::layer<5>(net).layer_details().set_num_outputs(long(w.sizes[1]));
    dlib::layer<3>(net).layer_details().set_num_outputs(long(w.sizes[2]));
    dlib::layer<1>(net).layer_details().set_num_outputs(long(w.sizes[3]));
    // The batch through the input layer's to_tensor once (it also tells the net its sample
    // expansion factor): each sample a 1×in row, so x holds p.x as it is, [batch, 1, 1, in].
    const long in = long(w.sizes[0]);
    std::vector<dlib::matrix<float>> samples(w.batch, dlib::matrix<float>(1, in));
    for (std::size_t i = 0; i < w.batch; ++i)
      std::copy(p.x.begin() + long(i) * in, p.x.begin() + long(i + 1) * in, samples[i].begin());
    net.to_tensor(samples.begin(), samples.end(), x);
    net.subnet().forward(x);  // sets the layers up (allocates their parameters)
    for (std::size_t l = 0; l < 3; ++l) {
      float* dst = param_tensor(l).host();
      std::copy(p.W0[l].begin(), p.W0[l].end(), dst);
      std::copy(p.b0[l].begin(), p.b0[l].end(), dst + p.W0[l].size());
    }
  }

  dlib::tensor& param_tensor(std::size_t l) {
    switch (l) {
      case 0:
        return dlib::layer<5>(net).layer_details().get_layer_params();
      case 1:
        return dlib::layer<3>(net).layer_details().get_layer_params();
      default:
        return dlib::layer<1>(net).layer_details().get_layer_params();
    }
  }
  const dlib::tensor& params(std::size_t l) const override {
    return const_cast<NetImpl*>(this)->param_tensor(l);
  }
  const dlib::tensor& grads(std::size_t l) const override {
    auto& n = const_cast<Net<Loss>&>(net);
    switch (l) {
      case 0:
        return dlib::layer<5>(n).get_parameter_gradient();
      case 1:
        return dlib::layer<3>(n).get_parameter_gradient();
      default:
        return dlib::layer<1>(n).get_parameter_gradient();
    }
  }

  float step() override {
    const double loss = net.compute_parameter_gradients(x, labels.begin());
    net.update_parameters(solvers, lr);
    return float(loss);
  }

  Net<Loss> net;
  dlib::resizable_tensor x;
  std::vector<Label> labels;
  double lr;
  std::vector<dlib::sgd> solvers;
};

}  // namespace

DlibMLP::DlibMLP(const Problem& p) {
  const Workload& w = p.w;
  if (w.layers() != 3)
    throw std::invalid_argument("DlibMLP: the dlib contender is built for 3 fc layers");
  if (w.loss == LossKind::kSoftmaxCrossEntropy) {
    std::vector<unsigned long> labels(p.labels.begin(), p.labels.end());
    impl_ = std::make_unique<NetImpl<dlib::loss_multiclass_log, unsigned long>>(p, labels);
  } else {
    // loss_binary_log takes ±1 labels: log(1 + e^(−y·z)), averaged — the floor's sigmoid BCE
    // on 0/1 targets t with y = 2t − 1.
    std::vector<float> labels;
    for (float t : p.targets) labels.push_back(t > 0.5f ? 1.0f : -1.0f);
    impl_ = std::make_unique<NetImpl<dlib::loss_binary_log, float>>(p, labels);
  }
}

DlibMLP::~DlibMLP() = default;

float DlibMLP::step() { return impl_->step(); }

std::vector<float> DlibMLP::weight(std::size_t l) const {
  const float* d = impl_->params(l).host();
  return std::vector<float>(d, d + impl_->in(l)*impl_->out(l));
}
std::vector<float> DlibMLP::bias(std::size_t l) const {
  const float* d = impl_->params(l).host() + impl_->in(l)*impl_->out(l);
  return std::vector<float>(d, d + impl_->out(l));
}
std::vector<float> DlibMLP::grad_weight(std::size_t l) const {
  const float* d = impl_->grads(l).host();
  return std::vector<float>(d, d + impl_->in(l)*impl_->out(l));
}
std::vector<float> DlibMLP::grad_bias(std::size_t l) const {
  const float* d = impl_->grads(l).host() + impl_->in(l)*impl_->out(l);
  return std::vector<float>(d, d + impl_->out(l));
}

}  // namespace wengert_bench
