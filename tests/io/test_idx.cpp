// Tests for io/wengert/io/idx.hpp: small IDX files written here (plain and gzip) read back
// exactly; each documented error names the file; the installed Fashion-MNIST loads (skipped if
// the dataset package is absent).
#include <wengert/io/idx.hpp>

#include <wengert/errors.hpp>

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace wengert;
namespace fs = std::filesystem;

namespace {

// The bytes of an IDX file: magic 00 00 <type> <rank>, big-endian dims, then `data`.
std::vector<unsigned char> idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims,
                                     const std::vector<std::uint8_t>& data) {
  std::vector<unsigned char> b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (std::uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write_plain(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

void write_gz(const std::string& path, const std::vector<unsigned char>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("wengert_test_idx_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes split `split` for load_mnist_like: one 1×1 image per label, and `labels` as given.
  // Returns the labels file's path.
  std::string write_split(const std::string& split, const std::vector<std::uint8_t>& labels) {
    const auto n = static_cast<std::uint32_t>(labels.size());
    write_gz(path(split + "-images-idx3-ubyte.gz"),
             idx_bytes(0x08, {n, 1, 1}, std::vector<std::uint8_t>(labels.size(), 128)));
    const std::string lab = path(split + "-labels-idx1-ubyte.gz");
    write_gz(lab, idx_bytes(0x08, {n}, labels));
    return lab;
  }

  fs::path dir_;
};

template <class F>
void expect_value_error(F&& f, const std::string& file, std::vector<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << needles.front();
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'" + file + "'"), std::string::npos) << "file not named: " << msg;
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << n << " not in: " << msg;
  }
}

// 3 images of 2×4 pixels with every byte distinct, including 0 and 255.
const std::vector<std::uint8_t> kPixels = {0, 255, 1, 254, 51,  102, 153, 204, 17,  34,  68, 136,
                                           3, 6,   9, 12,  100, 200, 150, 50,  128, 127, 64, 192};
const std::vector<std::uint8_t> kLabels = {7, 0, 9};

}  // namespace

TEST_F(IdxTest, ImagesPlainAndGzipReadBackExactly) {
  const auto bytes = idx_bytes(0x08, {3, 2, 4}, kPixels);
  write_plain(path("img"), bytes);
  write_gz(path("img.gz"), bytes);
  ASSERT_NE(read_bytes(path("img.gz")), bytes);  // really compressed on disk
  for (const std::string& f : {path("img"), path("img.gz")}) {
    SCOPED_TRACE(f);
    io::Images<float> im = io::read_idx_images(f);
    EXPECT_EQ(im.count, 3u);
    EXPECT_EQ(im.rows, 2u);
    EXPECT_EQ(im.cols, 4u);
    EXPECT_EQ(im.features(), 8u);
    ASSERT_EQ(im.pixels.size(), kPixels.size());
    for (std::size_t i = 0; i < kPixels.size(); ++i)
      EXPECT_EQ(im.pixels[i], float(kPixels[i]) / 255.0f) << i;
    EXPECT_EQ(im.pixels[1], 1.0f);
    EXPECT_EQ(im.image(2)[0], 100.0f / 255.0f);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(im.pixels.data()) % 64, 0u);

    io::Images<double> imd = io::read_idx_images<double>(f);
    for (std::size_t i = 0; i < kPixels.size(); ++i)
      EXPECT_EQ(imd.pixels[i], double(kPixels[i]) / 255.0) << i;
  }
}

TEST_F(IdxTest, LabelsAndGenericArraysReadBack) {
  write_plain(path("lab"), idx_bytes(0x08, {3}, kLabels));
  write_gz(path("lab.gz"), idx_bytes(0x08, {3}, kLabels));
  for (const std::string& f : {path("lab"), path("lab.gz")})
    EXPECT_EQ(io::read_idx_labels(f), (std::vector<std::int32_t>{7, 0, 9})) << f;

  write_gz(path("m.gz"), idx_bytes(0x08, {2, 3}, {1, 2, 3, 4, 5, 6}));
  io::IdxArray a = io::read_idx(path("m.gz"));
  EXPECT_EQ(a.dims, (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(a.data, (std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6}));
}

TEST_F(IdxTest, WrongMagic) {
  const std::string f = path("bad-magic");
  auto bytes = idx_bytes(0x08, {3, 2, 4}, kPixels);
  bytes[0] = 0x1f;  // not two leading zero bytes
  write_plain(f, bytes);
  expect_value_error([&] { io::read_idx_images(f); }, f, {"not an IDX file", "magic"});

  // Unsupported element type (0x0D = float32 in IDX).
  write_plain(f, idx_bytes(0x0D, {3}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  expect_value_error([&] { io::read_idx_labels(f); }, f, {"element type 0x0d", "unsigned bytes"});

  // A labels file where images are expected, and the other way round.
  write_gz(path("lab.gz"), idx_bytes(0x08, {3}, kLabels));
  expect_value_error([&] { io::read_idx_images(path("lab.gz")); }, path("lab.gz"),
                     {"0x00000801", "expected rank 3", "images"});
  write_gz(path("img.gz"), idx_bytes(0x08, {3, 2, 4}, kPixels));
  expect_value_error([&] { io::read_idx_labels(path("img.gz")); }, path("img.gz"),
                     {"0x00000803", "expected rank 1", "labels"});

  write_plain(f, {0, 0});
  expect_value_error([&] { io::read_idx(f); }, f, {"truncated", "magic"});
}

TEST_F(IdxTest, TruncatedData) {
  auto bytes = idx_bytes(0x08, {3, 2, 4}, kPixels);
  bytes.resize(bytes.size() - 5);
  write_plain(path("short"), bytes);
  write_gz(path("short.gz"), bytes);
  for (const std::string& f : {path("short"), path("short.gz")})
    expect_value_error([&] { io::read_idx_images(f); }, f, {"truncated", "24 bytes", "19"});

  // Cut inside the dimensions.
  write_plain(path("dims"), std::vector<unsigned char>(bytes.begin(), bytes.begin() + 9));
  expect_value_error([&] { io::read_idx_images(path("dims")); }, path("dims"),
                     {"truncated", "dimension 1"});
}

TEST_F(IdxTest, TruncatedGzipStream) {
  // A gzip file cut short in its compressed stream (an interrupted download).
  std::vector<std::uint8_t> many(5000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<std::uint8_t>(i * 37 % 251);
  write_gz(path("full.gz"), idx_bytes(0x08, {5000}, many));
  auto gz = read_bytes(path("full.gz"));
  gz.resize(gz.size() / 2);
  write_plain(path("cut.gz"), gz);
  expect_value_error([&] { io::read_idx_labels(path("cut.gz")); }, path("cut.gz"), {"truncated"});
}

TEST_F(IdxTest, TrailingBytesAreAnError) {
  auto bytes = idx_bytes(0x08, {3}, kLabels);
  bytes.push_back(1);
  write_gz(path("extra.gz"), bytes);
  expect_value_error([&] { io::read_idx_labels(path("extra.gz")); }, path("extra.gz"),
                     {"bytes after"});
}

TEST_F(IdxTest, MissingFile) {
  const std::string f = path("nothing-here.gz");
  expect_value_error([&] { io::read_idx(f); }, f, {"cannot open"});
}

TEST_F(IdxTest, LoadMnistLikeFindsFilesAndChecksCounts) {
  write_gz(path("train-images-idx3-ubyte.gz"), idx_bytes(0x08, {3, 2, 4}, kPixels));
  write_gz(path("train-labels-idx1-ubyte.gz"), idx_bytes(0x08, {3}, kLabels));
  // Uncompressed t10k files are found too.
  write_plain(path("t10k-images-idx3-ubyte"), idx_bytes(0x08, {1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}));
  write_plain(path("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {1}, {4}));

  io::Dataset<float> train = io::load_mnist_like(dir_.string(), "train");
  EXPECT_EQ(train.size(), 3u);
  EXPECT_EQ(train.features(), 8u);
  EXPECT_EQ(train.labels, (std::vector<std::int32_t>{7, 0, 9}));
  EXPECT_EQ(train.num_classes, 10);
  EXPECT_EQ(train.images_path, path("train-images-idx3-ubyte.gz"));
  EXPECT_EQ(train.images.pixels[1], 1.0f);

  io::Dataset<double> test = io::load_mnist_like<double>(dir_.string(), "t10k");
  EXPECT_EQ(test.size(), 1u);
  EXPECT_EQ(test.labels_path, path("t10k-labels-idx1-ubyte"));
  EXPECT_EQ(test.images.pixels[7], 8.0 / 255.0);

  // Image and label counts that differ: both files named.
  write_gz(path("train-labels-idx1-ubyte.gz"), idx_bytes(0x08, {2}, {1, 2}));
  try {
    io::load_mnist_like(dir_.string(), "train");
    ADD_FAILURE() << "count mismatch accepted";
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path("train-images-idx3-ubyte.gz")), std::string::npos) << msg;
    EXPECT_NE(msg.find(path("train-labels-idx1-ubyte.gz")), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 images"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2 labels"), std::string::npos) << msg;
  }

  // A split with no files names the directory and the file it looked for.
  try {
    io::load_mnist_like(dir_.string(), "valid");
    ADD_FAILURE() << "missing split accepted";
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir_.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("valid-images-idx3-ubyte.gz"), std::string::npos) << msg;
  }
}

TEST_F(IdxTest, LoadMnistLikeRefusesLabel255NamingFileAndIndex) {
  // A stray 255 at index 17 (and a later 200): the first is reported, not counted as a class.
  std::vector<std::uint8_t> labels(20);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::uint8_t>(i % 10);
  labels[17] = 255;
  labels[19] = 200;
  const std::string lab = write_split("t10k", labels);
  expect_value_error([&] { io::load_mnist_like(dir_.string(), "t10k"); }, lab,
                     {"load_mnist_like", "label 255", "index 17", "[0, 10)"});
  try {
    io::load_mnist_like<double>(dir_.string(), "t10k");
    ADD_FAILURE() << "label 255 accepted";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()).find("index 19"), std::string::npos) << e.what();
  }
}

TEST_F(IdxTest, LoadMnistLikeLabelEqualToClassesIsRefused) {
  const std::string lab = write_split("train", {0, 9, 10, 3});
  expect_value_error([&] { io::load_mnist_like(dir_.string(), "train"); }, lab,
                     {"label 10", "index 2", "[0, 10)"});
}

TEST_F(IdxTest, LoadMnistLikeAcceptsLabelsUpToClassesMinusOne) {
  write_split("train", {9, 0, 9});
  io::Dataset<float> ds = io::load_mnist_like(dir_.string(), "train");
  EXPECT_EQ(ds.labels, (std::vector<std::int32_t>{9, 0, 9}));
  EXPECT_EQ(ds.num_classes, 10);

  // num_classes is the count given, not max label + 1.
  write_split("train", {0, 1, 1});
  EXPECT_EQ(io::load_mnist_like(dir_.string(), "train").num_classes, 10);
}

TEST_F(IdxTest, LoadMnistLikeCustomClasses) {
  write_split("train", {2, 0, 1});
  io::Dataset<float> ds = io::load_mnist_like(dir_.string(), "train", 3);
  EXPECT_EQ(ds.num_classes, 3);
  EXPECT_EQ(ds.labels, (std::vector<std::int32_t>{2, 0, 1}));

  // 3 is fine among 10 classes but not among 3.
  const std::string lab = write_split("train", {2, 0, 3});
  EXPECT_EQ(io::load_mnist_like(dir_.string(), "train").num_classes, 10);
  expect_value_error([&] { io::load_mnist_like(dir_.string(), "train", 3); }, lab,
                     {"label 3", "index 2", "[0, 3)"});
}

TEST_F(IdxTest, LoadMnistLikeRefusesNonPositiveClasses) {
  write_split("train", {0, 1, 2});
  for (std::int32_t classes : {0, -1}) {
    SCOPED_TRACE(classes);
    expect_value_error(
        [&] { io::load_mnist_like(dir_.string(), "train", classes); }, dir_.string(),
        {"load_mnist_like", "classes must be > 0", "got " + std::to_string(classes)});
  }
}

TEST(IdxFashionMnist, InstalledDatasetLoads) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(fs::path(dir) / "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << dir << " is absent (Debian package dataset-fashion-mnist)";
  for (auto [split, n] : {std::pair{"train", 60000u}, std::pair{"t10k", 10000u}}) {
    SCOPED_TRACE(split);
    io::Dataset<float> ds = io::load_mnist_like(dir, split);
    EXPECT_EQ(ds.size(), n);
    EXPECT_EQ(ds.images.rows, 28u);
    EXPECT_EQ(ds.images.cols, 28u);
    EXPECT_EQ(ds.features(), 784u);
    ASSERT_EQ(ds.labels.size(), n);
    EXPECT_EQ(ds.num_classes, 10);
    // Fashion-MNIST is balanced: n / 10 examples of each class.
    std::array<std::size_t, 10> per_class{};
    for (std::int32_t y : ds.labels) {
      ASSERT_GE(y, 0);
      ASSERT_LT(y, 10);
      ++per_class[static_cast<std::size_t>(y)];
    }
    for (std::size_t c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], n / 10) << "class " << c;
    auto [lo, hi] = std::minmax_element(ds.images.pixels.begin(), ds.images.pixels.end());
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);
  }
}
