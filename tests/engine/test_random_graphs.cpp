// Differential tests on random computation graphs (tests/support/random_graph.hpp): programs
// over every built-in op (tests/support/op_registry.hpp) with fan-out, reused inputs, broadcasting,
// constants, variables and Parameters, each checked for
//   * Jacobians against central differences and the dot-product test (public gradcheck),
//   * Parameter leaves against variable leaves, repeated sweeps and sweeps restricted to a
//     subset of the leaves (exactly the same gradients, or zero for the leaves not chosen),
//   * float32 against float64 (value and VJP).
// The checker is itself checked: a graph holding an op with a planted wrong derivative fails,
// and its failure message carries the program and the tape listing.
//
// Graph count: 2,000 by default (seeds 1..2000). The environment variables
// WENGERT_RANDOM_GRAPHS (count) and WENGERT_RANDOM_GRAPHS_FIRST (first seed) change it: the
// ctest test random_graphs_10000 (label `long`) runs 10,000; the valgrind script runs fewer.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "random_graph.hpp"

namespace {

using namespace wengert;
using namespace wengert::testing;

/// A positive integer from the environment, or `fallback` if unset; a malformed value fails.
std::uint64_t env_count(const char* name, std::uint64_t fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (*end != '\0' || v == 0) {
    ADD_FAILURE() << name << "='" << s << "' is not a positive integer; using " << fallback;
    return fallback;
  }
  return v;
}

TEST(RandomGraphs, GradientsAgreeWithFiniteDifferencesParametersAndFloat32) {
  const std::uint64_t n = env_count("WENGERT_RANDOM_GRAPHS", 2000);
  const std::uint64_t first = env_count("WENGERT_RANDOM_GRAPHS_FIRST", 1);
  GraphStats stats;
  int failures = 0;
  for (std::uint64_t seed = first; seed < first + n; ++seed) {
    const RandomGraph g = generate_random_graph(seed);
    stats.add(g);
    const GraphCheck c = check_random_graph(g);
    if (!c.ok && ++failures <= 3) ADD_FAILURE() << c.message;  // seed, program, tape listing
  }
  EXPECT_EQ(failures, 0) << "of " << n << " graphs (seeds " << first << ".." << first + n - 1
                         << ")";
  std::cout << "[ random graphs ] " << n << " graphs, seeds " << first << ".." << first + n - 1
            << ", " << failures << " failures\n";

  // The run must have covered what it claims: every op and every graph feature (the
  // thresholds scale with the count; 2,000 graphs exceed each by a wide margin).
  EXPECT_EQ(stats.graphs, n);
  EXPECT_EQ(stats.ops.count(planted_bug_op().label()), 0u);
  if (n < 200) return;  // a reduced run (valgrind) checks gradients, not coverage
  // Every op of the registry, in every spelling (named form, operator, ...).
  for (const OpEntry& op : op_registry()) {
    EXPECT_GT(stats.ops[op.label()], 0u) << op.label();
    for (const std::string& spelling : op.spellings)
      EXPECT_GT(stats.spellings[op.label() + " as " + spelling], 0u)
          << op.label() << " as " << spelling;
  }
  EXPECT_EQ(stats.ops.size(), op_registry().size());  // and nothing else
  const auto at_least = [n](std::uint64_t per_2000) { return per_2000 * n / 2000; };
  EXPECT_GT(stats.fan_out, n / 4);
  EXPECT_GT(stats.reused_input, at_least(10));
  EXPECT_GT(stats.broadcast, at_least(20));
  EXPECT_GT(stats.constants, at_least(20));
  EXPECT_GT(stats.variables, at_least(20));
  EXPECT_GT(stats.parameters, at_least(20));
  EXPECT_GT(stats.non_scalar_outputs, at_least(10));
}

TEST(RandomGraphs, ThePlantedWrongDerivativeIsCaughtEveryTime) {
  RandomGraphOptions options;
  options.plant_bug = true;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    const RandomGraph g = generate_random_graph(seed, options);
    const GraphCheck c = check_random_graph(g);
    EXPECT_FALSE(c.ok) << "seed " << seed << ": the checker missed a wrong derivative\n" << g.str();
    if (!c.ok) {
      // What failed, the generator's program, and the tape listing (Tape::print), in which the
      // planted op appears under its tape name with its inputs.
      EXPECT_NE(c.message.find("finite differences"), std::string::npos) << c.message;
      EXPECT_NE(c.message.find("planted_bug"), std::string::npos) << c.message;
      const std::size_t listing = c.message.find("\ntape:\n");
      ASSERT_NE(listing, std::string::npos) << c.message;
      EXPECT_NE(c.message.find(" broken_square [", listing), std::string::npos) << c.message;
      EXPECT_NE(c.message.find("#0 ", listing), std::string::npos) << c.message;
    }
    if (seed == 1 && std::getenv("WENGERT_RANDOM_GRAPHS_SHOW_PLANTED"))
      std::cout << c.message;  // what a real failure would print
  }
}

TEST(RandomGraphs, GenerationIsReproducible) {
  for (std::uint64_t seed : {3u, 17u, 99u})
    EXPECT_EQ(generate_random_graph(seed).str(), generate_random_graph(seed).str());
  EXPECT_NE(generate_random_graph(3).str(), generate_random_graph(4).str());
}

}  // namespace
