// Must NOT compile: labels of a type other than int32/int64 are refused by a one-line
// static_assert (ctest softmax_cross_entropy_label_type checks the message).
#include <wengert/ops/losses.hpp>

#include <cstdint>
#include <vector>

int main() {
  wengert::Tape<float> tape;
  auto z = tape.variable(xt::xarray<float>{{0.f, 1.f}});
  const std::vector<std::uint8_t> labels{1};
  return softmax_cross_entropy(z, labels).item() > 0 ? 0 : 1;
}
