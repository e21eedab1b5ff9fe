// The libtorch side of the check (torch_peer.cpp, the only file that includes libtorch): the two
// example models written with torch ops, float64, from given initial parameters (row-major, in
// the order of the wengert models' params()). Each returns the loss on one batch before and
// after one Adam step on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace torch_peer {

struct Losses {
  double before, after;
};

/// tiny_attention's block: vocabulary V, length L, width d, batch B; x, y [B,L].
Losses attention(const std::vector<std::vector<double>>& params, std::size_t V, std::size_t L,
                 std::size_t d, std::size_t B, const std::vector<std::int32_t>& x,
                 const std::vector<std::int32_t>& y, double lr);

/// char_lstm's LSTM: vocabulary V, embedding E, hidden H, length L, batch B; x, y [L,B] (time
/// first), zero initial state.
Losses lstm(const std::vector<std::vector<double>>& params, std::size_t V, std::size_t E,
            std::size_t H, std::size_t L, std::size_t B, const std::vector<std::int32_t>& x,
            const std::vector<std::int32_t>& y, double lr);

}  // namespace torch_peer
