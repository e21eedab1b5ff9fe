// Tests for nn/wengert/nn/checkpoint.hpp and the state-file format under it (state.hpp):
// training resumed from a checkpoint is bit-identical to training straight through (at an epoch
// boundary and mid-epoch); a checkpoint that does not fit changes nothing; a process SIGKILLed
// at every stage of a save leaves a loadable file; state files of every dtype round-trip and
// corrupt ones are refused with the file named.
#include <wengert/nn/checkpoint.hpp>

#include <wengert/io/batches.hpp>
#include <wengert/nn/linear.hpp>
#include <wengert/nn/serialize.hpp>
#include <wengert/ops/losses.hpp>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "serialize_bytes.hpp"

using namespace wengert;
namespace fs = std::filesystem;

namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("wengert_test_ckpt_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// Three interleaved spirals in 2-D, labels 0..2.
struct Spiral {
  std::vector<float> x;
  std::vector<std::int32_t> y;
  explicit Spiral(std::size_t n) {
    std::mt19937_64 rng(3);
    for (std::size_t i = 0; i < n; ++i) {
      const std::int32_t c = std::int32_t(i % 3);
      const double r = double(i) / double(n),
                   t = 4.0 * r + 2.1 * c + 0.2 * double(rng() % 100) / 100;
      x.push_back(float(r * std::sin(t)));
      x.push_back(float(r * std::cos(t)));
      y.push_back(c);
    }
  }
};

// One training run's objects, built identically every time.
struct TrainRun {
  Spiral data{300};
  nn::MLP<float> model{{2, 16, 16, 3}, nn::Activation::kTanh, 11};
  nn::AdamW<float> opt{model.parameters(), nn::AdamWOptions{0.02}};
  io::Batcher<float> batches{data.x.data(), data.y.data(), 300, 2, 32, /*seed=*/5};
  nn::CosineWarmup sched{0.02, 5, 4 * batches.batches_per_epoch()};
  Tape<float> tape;

  // Trains from (epoch, batch) up to the end of epoch `until` (exclusive), or stops before
  // batch `stop_batch` of epoch `stop_epoch`; returns where it stopped.
  nn::TrainingPosition train(nn::TrainingPosition from, std::uint64_t until,
                             std::uint64_t stop_epoch = ~0ull, std::uint64_t stop_batch = 0) {
    for (std::uint64_t e = from.epoch; e < until; ++e) {
      batches.start_epoch(e);
      std::uint64_t b = 0;
      if (e == from.epoch) {
        batches.skip(from.batch);
        b = from.batch;
      }
      for (; batches.next(); ++b) {
        if (e == stop_epoch && b == stop_batch) return {5, e, b};
        tape.clear();
        Var<float> loss = softmax_cross_entropy(
            model.forward(tape, tape.constant_view(batches.features(), batches.shape())),
            batches.labels(), batches.size());
        sched.step(opt);
        opt.zero_grad();
        tape.backward(loss);
        nn::clip_grad_norm(model.parameters(), 5.0);
        opt.step();
      }
    }
    return {5, until, 0};
  }
};

void expect_bit_identical(nn::MLP<float>& a, nn::MLP<float>& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(std::memcmp(pa[i].second->data(), pb[i].second->data(),
                          pa[i].second->size() * sizeof(float)),
              0)
        << pa[i].first;
}

}  // namespace

TEST_F(CheckpointTest, ResumeAtAnEpochBoundaryIsBitIdentical) {
  TrainRun straight;
  straight.train({5, 0, 0}, 4);

  const std::string f = path("ckpt.wgrt");
  {
    TrainRun first;
    const nn::TrainingPosition at = first.train({5, 0, 0}, 2);
    nn::save_checkpoint(f, first.model, first.opt, &first.sched, at);
  }  // the first process is gone
  TrainRun resumed;
  const nn::TrainingPosition at =
      nn::load_checkpoint(f, resumed.model, resumed.opt, &resumed.sched);
  EXPECT_EQ(at.epoch, 2u);
  EXPECT_EQ(at.batch, 0u);
  EXPECT_EQ(resumed.opt.steps(), 2 * resumed.batches.batches_per_epoch());
  resumed.train(at, 4);
  expect_bit_identical(straight.model, resumed.model);
  // And training did change the model (the comparison is not between untouched models).
  TrainRun untouched;
  EXPECT_NE(std::memcmp(untouched.model.layers()[0].weight().data(),
                        straight.model.layers()[0].weight().data(), 32 * sizeof(float)),
            0);
}

TEST_F(CheckpointTest, ResumeMidEpochIsBitIdentical) {
  TrainRun straight;
  straight.train({5, 0, 0}, 4);
  const std::string f = path("mid.wgrt");
  {
    TrainRun first;
    const nn::TrainingPosition at = first.train({5, 0, 0}, 4, /*stop_epoch=*/1, /*stop_batch=*/3);
    EXPECT_EQ(at.epoch, 1u);
    EXPECT_EQ(at.batch, 3u);
    nn::save_checkpoint(f, first.model, first.opt, &first.sched, at);
  }
  TrainRun resumed;
  resumed.train(nn::load_checkpoint(f, resumed.model, resumed.opt, &resumed.sched), 4);
  expect_bit_identical(straight.model, resumed.model);
}

TEST_F(CheckpointTest, GeneratorStateAndExtrasRoundTrip) {
  std::mt19937_64 rng(123);
  for (int i = 0; i < 1000; ++i) rng();
  TrainRun a;
  nn::StateDict extra;
  extra.set("input.mean", 0.25);
  const std::string f = path("rng.wgrt");
  nn::save_checkpoint(f, a.model, a.opt, &a.sched, {5, 1, 2}, &rng, &extra);
  std::mt19937_64 back(1);
  nn::StateDict got;
  nn::load_checkpoint(f, a.model, a.opt, &a.sched, &back, &got);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(back(), rng()) << i;
  EXPECT_EQ(got.get_f64("input.mean", "test"), 0.25);
}

TEST_F(CheckpointTest, ACheckpointThatDoesNotFitChangesNothing) {
  TrainRun a;
  a.train({5, 0, 0}, 1);
  const std::string f = path("a.wgrt");
  nn::save_checkpoint(f, a.model, a.opt, &a.sched, {5, 1, 0});

  // Another architecture: the model part does not fit.
  nn::MLP<float> wide({2, 32, 3}, nn::Activation::kTanh, 1);
  nn::AdamW<float> wide_opt(wide.parameters());
  nn::CosineWarmup wide_sched(0.02, 5, 4 * a.batches.batches_per_epoch());
  const nn::MLP<float> wide_before = wide;
  try {
    nn::load_checkpoint(f, wide, wide_opt, &wide_sched);
    ADD_FAILURE() << "loaded another model's checkpoint";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'" + f + "'"), std::string::npos) << m;
    EXPECT_NE(m.find("fc0.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected: fc2.weight"), std::string::npos) << m;
  }
  nn::MLP<float> wide_copy = wide_before;
  expect_bit_identical(wide, wide_copy);
  EXPECT_EQ(wide_opt.steps(), 0u);

  // Same model, another schedule: the model and optimizer were loaded, then put back.
  TrainRun b;
  nn::CosineWarmup other_sched(0.02, 7, 4 * b.batches.batches_per_epoch());
  TrainRun b_before;
  EXPECT_THROW(nn::load_checkpoint(f, b.model, b.opt, &other_sched), ValueError);
  expect_bit_identical(b.model, b_before.model);
  EXPECT_EQ(b.opt.steps(), 0u);
  EXPECT_EQ(other_sched.steps(), 0u);
}

// A child process saves a new checkpoint over an old one and is SIGKILLed at one stage of the
// save (the hook in serialize_bytes.hpp). Whatever the stage, the file under the real name loads:
// the old contents before the rename, the new ones after. A stray .tmp is replaced by the next
// save.
TEST_F(CheckpointTest, SigkillAtEveryStageOfASaveLeavesALoadableFile) {
  using nn::detail::SaveStage;
  const std::string f = path("ckpt.wgrt");
  // Big enough (1.5 MB) for the mid-data stage: the kill lands between two write() calls.
  std::vector<float> old_values(393216, 1.0f), new_values(393216, 2.0f);
  nn::StateDict old_state, new_state;
  old_state.set("w", Shape{old_values.size()}, old_values.data());
  new_state.set("w", Shape{new_values.size()}, new_values.data());
  for (SaveStage stage :
       {SaveStage::kMidData, SaveStage::kWritten, SaveStage::kSynced, SaveStage::kRenamed}) {
    nn::save_state(f, old_state);
    static SaveStage target;
    target = stage;
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      nn::detail::set_save_hook([](SaveStage s) {
        if (s == target) ::raise(SIGKILL);
      });
      try {
        nn::save_state(f, new_state);
      } catch (...) {
      }
      ::_exit(0);  // not reached: the hook kills the process
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "stage " << int(stage) << ": the child was not killed mid-save";
    const nn::StateDict got = nn::load_state(f);  // must not throw
    const float want = stage == SaveStage::kRenamed ? 2.0f : 1.0f;
    EXPECT_EQ(got.find("w")->as<float>()[0], want) << "stage " << int(stage);
    EXPECT_EQ(fs::exists(f + ".tmp"), stage != SaveStage::kRenamed) << "stage " << int(stage);
    if (stage == SaveStage::kMidData) {  // the stray temporary file is a partial write
      EXPECT_LT(fs::file_size(f + ".tmp"), fs::file_size(f));
    }
  }
  // The next save replaces the stray temporary file and leaves none.
  nn::save_state(f, new_state);
  EXPECT_FALSE(fs::exists(f + ".tmp"));
  EXPECT_EQ(nn::load_state(f).find("w")->as<float>()[0], 2.0f);
}

TEST_F(CheckpointTest, StateFilesHoldEveryDtype) {
  nn::StateDict sd;
  const float f32[] = {1.5f, -0.0f, INFINITY};
  const double f64[] = {1e300, -2.5};
  const std::uint64_t u64[] = {0, 1, 0xFFFFFFFFFFFFFFFFull, 1ull << 63};
  sd.set("a.f32", Shape{3}, f32);
  sd.set("b.f64", Shape{2, 1}, f64);
  sd.set("c.u64", Shape{2, 2}, u64);
  sd.set("d.step", std::uint64_t{42});
  sd.set("", Shape{0}, f32);  // an empty name and an empty tensor are still entries
  const std::string f = path("all.wgrt");
  nn::save_state(f, sd);
  const nn::StateDict back = nn::load_state(f);
  ASSERT_EQ(back.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(back.entries()[i].name, sd.entries()[i].name);
    EXPECT_EQ(back.entries()[i].shape, sd.entries()[i].shape);
    EXPECT_TRUE(back.entries()[i].values == sd.entries()[i].values) << i;
  }
  EXPECT_EQ(back.get_u64("d.step", "t"), 42u);
  EXPECT_THROW(back.get_f64("d.step", "t"), ValueError);  // a uint64, not a float64
  EXPECT_THROW(back.get<float>("a.f32", Shape{4}, "t"), ValueError);
  EXPECT_THROW(back.find("a.f32")->as<double>(), UsageError);
  // A version-1 parameter file reads as a state dict; a state file of one float dtype loads as
  // parameters, one holding uint64 values does not.
  Parameter<double> p(Shape{2}, "p");
  p.data()[1] = 7;
  nn::save(path("v1.wgrt"), std::vector<Parameter<double>*>{&p});
  EXPECT_EQ(nn::load_state(path("v1.wgrt")).find("p")->as<double>()[1], 7.0);
  try {
    nn::load_all<float>(f);
    ADD_FAILURE() << "uint64 values loaded as float32 parameters";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'b.f64') holds float64"), std::string::npos) << e.what();
  }
}

TEST_F(CheckpointTest, CorruptStateFilesAreRefusedNamingTheFile) {
  nn::StateDict sd;
  const std::uint64_t u[] = {1, 2};
  sd.set("x", Shape{2}, u);
  sd.set("y", Shape{2}, u);
  const std::string f = path("c.wgrt");
  nn::save_state(f, sd);
  std::ifstream in(f, std::ios::binary);
  const std::vector<unsigned char> good((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  auto expect_refused = [&](std::vector<unsigned char> bytes, const std::string& needle,
                            bool fix_crc = true) {
    if (fix_crc) {
      // Recompute the CRC so that the structural check is what fails.
      std::uint32_t crc = 0xFFFFFFFFu;
      for (std::size_t i = 0; i + 4 < bytes.size(); ++i) {
        crc ^= bytes[i];
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
      }
      crc ^= 0xFFFFFFFFu;
      for (int k = 0; k < 4; ++k) bytes[bytes.size() - 4 + k] = (unsigned char)(crc >> (8 * k));
    }
    try {
      nn::detail::load_state_from_bytes(bytes.data(), bytes.size(), "shown.wgrt");
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const ValueError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("load_state: 'shown.wgrt': ", 0), 0u) << m;
      EXPECT_NE(m.find(needle), std::string::npos) << needle << " not in " << m;
    }
  };
  // Sanity: the good bytes load.
  EXPECT_EQ(nn::detail::load_state_from_bytes(good.data(), good.size(), "g").size(), 2u);
  // Record 0: name length at 20, name 'x' at 24, dtype at 25.
  auto bad = good;
  bad[25] = 9;
  expect_refused(bad, "unknown dtype code 9");
  bad = good;
  bad[8] = 1;  // the file-wide dtype field must be 0 in version 2
  expect_refused(bad, "dtype field");
  bad = good;
  bad[24 + 1 + 4 + 4 + 8 + 16 + 4] = 'x';  // record 1's name 'y' → 'x'
  expect_refused(bad, "has the name of an earlier tensor");
  bad = good;
  bad[45] ^= 1;  // a value byte
  expect_refused(bad, "checksum mismatch", false);
  bad = good;
  bad.resize(bad.size() - 9);
  expect_refused(bad, "truncated");
  // Through the file API: a directory, and a path that does not exist.
  try {
    nn::load_state(dir_.string());
    ADD_FAILURE();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("it is a directory"), std::string::npos) << e.what();
  }
  EXPECT_THROW(nn::load_state(path("absent.wgrt")), ValueError);
  EXPECT_THROW(nn::save_state(dir_.string(), sd), ValueError);
}
