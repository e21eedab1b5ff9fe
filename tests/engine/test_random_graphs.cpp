// Differential tests on random computation graphs (tests/support/random_graph.hpp): programs
// over every built-in op with fan-out, reused inputs, broadcasting, constants, variables and
// Parameters, each checked for
//   * Jacobians against central differences and the dot-product test (public gradcheck),
//   * Parameter leaves against variable leaves, repeated sweeps and sweeps restricted to a
//     subset of the leaves (exactly the same gradients, or zero for the leaves not chosen),
//   * float32 against float64 (value and VJP).
// The checker is itself checked: a graph holding an op with a planted wrong derivative fails.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "random_graph.hpp"

namespace {

using namespace wengert;
using namespace wengert::testing;

constexpr std::uint64_t kGraphs = 2000;

TEST(RandomGraphs, GradientsAgreeWithFiniteDifferencesParametersAndFloat32) {
  GraphStats stats;
  int failures = 0;
  for (std::uint64_t seed = 1; seed <= kGraphs; ++seed) {
    const RandomGraph g = generate_random_graph(seed);
    stats.add(g);
    const GraphCheck c = check_random_graph(g);
    if (!c.ok && ++failures <= 3) ADD_FAILURE() << c.message;
  }
  EXPECT_EQ(failures, 0) << "of " << kGraphs << " graphs";

  // The run must have covered what it claims: every op and every graph feature.
  for (int op = 0; op < int(GraphOp::kPlantedBug); ++op)
    EXPECT_GT(stats.ops[graph_op_name(GraphOp(op))], 0u) << graph_op_name(GraphOp(op));
  EXPECT_EQ(stats.ops.count(graph_op_name(GraphOp::kPlantedBug)), 0u);
  EXPECT_EQ(stats.graphs, kGraphs);
  EXPECT_GT(stats.fan_out, kGraphs / 4);
  EXPECT_GT(stats.reused_input, 10u);
  EXPECT_GT(stats.broadcast, 20u);
  EXPECT_GT(stats.constants, 20u);
  EXPECT_GT(stats.variables, 20u);
  EXPECT_GT(stats.parameters, 20u);
  EXPECT_GT(stats.non_scalar_outputs, 10u);
}

TEST(RandomGraphs, ThePlantedWrongDerivativeIsCaughtEveryTime) {
  RandomGraphOptions options;
  options.plant_bug = true;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    const RandomGraph g = generate_random_graph(seed, options);
    const GraphCheck c = check_random_graph(g);
    EXPECT_FALSE(c.ok) << "seed " << seed << ": the checker missed a wrong derivative\n"
                       << g.str();
    if (!c.ok) {
      EXPECT_NE(c.message.find("finite differences"), std::string::npos) << c.message;
      EXPECT_NE(c.message.find("planted_bug"), std::string::npos) << c.message;
    }
  }
}

TEST(RandomGraphs, GenerationIsReproducible) {
  for (std::uint64_t seed : {3u, 17u, 99u})
    EXPECT_EQ(generate_random_graph(seed).str(), generate_random_graph(seed).str());
  EXPECT_NE(generate_random_graph(3).str(), generate_random_graph(4).str());
}

}  // namespace
