// Tests for nn/wengert/nn/serialize.hpp: bit-exact round trips (float and double, special
// values, every rank), the byte layout the header documents, and each documented error —
// with the file named in the message and the parameters left untouched.
#include <wengert/nn/serialize.hpp>

#include <wengert/tape.hpp>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

using namespace wengert;
namespace fs = std::filesystem;

namespace {

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
std::uint32_t le32(const std::vector<unsigned char>& b, std::size_t at) {
  return std::uint32_t{b[at]} | std::uint32_t{b[at + 1]} << 8 | std::uint32_t{b[at + 2]} << 16 |
         std::uint32_t{b[at + 3]} << 24;
}
std::uint64_t le64(const std::vector<unsigned char>& b, std::size_t at) {
  return std::uint64_t{le32(b, at)} | std::uint64_t{le32(b, at + 4)} << 32;
}
void put_le32(std::vector<unsigned char>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<unsigned char>(v >> (8 * i));
}
// Rewrites the CRC trailer so that a deliberate edit is not caught by the checksum instead.
void fix_crc(std::vector<unsigned char>& b) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, b.data(), static_cast<uInt>(b.size() - 4));
  put_le32(b, b.size() - 4, static_cast<std::uint32_t>(crc));
}

class SerializeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("wengert_test_serialize_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// Expects `f` to throw ValueError whose message contains the file and every one of `needles`.
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

// A model-like set of parameters of every rank, with awkward values.
template <class T>
struct Params {
  Parameter<T> w{Shape{3, 5}, "fc0.W"};
  Parameter<T> b{Shape{5}, "fc0.b"};
  Parameter<T> s{Shape{}, "scale"};
  Parameter<T> k{Shape{2, 1, 3}, "conv.k"};
  Parameter<T> e{Shape{0, 4}, "empty"};
  Parameter<T> u{Shape{2}, ""};  // unnamed

  std::vector<Parameter<T>*> list() { return {&w, &b, &s, &k, &e, &u}; }

  void fill(unsigned salt) {
    for (Parameter<T>* p : list())
      for (std::size_t i = 0; i < p->size(); ++i)
        p->data()[i] = T(std::sin(double(i * 7 + salt)) * std::pow(10.0, double(i % 5) - 2));
    using L = std::numeric_limits<T>;
    w.data()[0] = L::denorm_min();
    w.data()[1] = -T(0);
    w.data()[2] = L::infinity();
    w.data()[3] = -L::infinity();
    w.data()[4] = L::max();
    w.data()[5] = L::quiet_NaN();
    w.data()[6] = L::epsilon();
    s.data()[0] = T(3.25) + T(salt);
  }
};

template <class T>
class SerializeTyped : public SerializeTest {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SerializeTyped, Types);

}  // namespace

TYPED_TEST(SerializeTyped, RoundTripIsBitExact) {
  using T = TypeParam;
  Params<T> a, b;
  a.fill(1);
  b.fill(99);  // different contents, same names and shapes
  const std::string f = this->path("ckpt.wgrt");
  nn::save(f, a.list());
  nn::load(f, b.list());
  auto la = a.list(), lb = b.list();
  for (std::size_t i = 0; i < la.size(); ++i)  // (an empty tensor's data() is null)
    if (la[i]->size()) {
      EXPECT_EQ(std::memcmp(la[i]->data(), lb[i]->data(), la[i]->size() * sizeof(T)), 0)
          << "tensor " << i << " '" << la[i]->name() << "'";
    }
  EXPECT_FALSE(fs::exists(f + ".tmp"));

  // Saving through const pointers writes the same bytes.
  const std::string g = this->path("const.wgrt");
  std::vector<const Parameter<T>*> cl(la.begin(), la.end());
  nn::save(g, cl);
  EXPECT_EQ(read_bytes(f), read_bytes(g));
}

TYPED_TEST(SerializeTyped, LoadAllReadsEveryTensorWithoutAModel) {
  using T = TypeParam;
  Params<T> a;
  a.fill(3);
  const std::string f = this->path("all.wgrt");
  nn::save(f, a.list());
  const std::vector<Parameter<T>> all = nn::load_all<T>(f);
  auto la = a.list();
  ASSERT_EQ(all.size(), la.size());
  for (std::size_t i = 0; i < la.size(); ++i) {
    EXPECT_EQ(all[i].name(), la[i]->name());
    EXPECT_EQ(all[i].shape(), la[i]->shape());
    if (la[i]->size()) {
      EXPECT_EQ(std::memcmp(all[i].data(), la[i]->data(), la[i]->size() * sizeof(T)), 0)
          << "tensor " << i;
    }
  }
  // Validated like load: a flipped byte fails the checksum, naming load_all and the file.
  auto bytes = read_bytes(f);
  bytes[bytes.size() / 2] ^= 0x40;
  write_bytes(f, bytes);
  try {
    nn::load_all<T>(f);
    FAIL() << "no error for a corrupt file";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("load_all: '" + f + "'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
}

TYPED_TEST(SerializeTyped, ByteLayoutIsAsDocumented) {
  using T = TypeParam;
  Parameter<T> w(Shape{2, 3}, "W"), b(Shape{3}, "bias");
  for (std::size_t i = 0; i < 6; ++i) w.data()[i] = T(i) + T(0.5);
  for (std::size_t i = 0; i < 3; ++i) b.data()[i] = -T(i);
  const std::string f = this->path("layout.wgrt");
  nn::save(f, std::vector<Parameter<T>*>{&w, &b});
  const auto bytes = read_bytes(f);

  const std::size_t expected_size =
      20 + (4 + 1 + 4 + 2 * 8 + 6 * sizeof(T)) + (4 + 4 + 4 + 1 * 8 + 3 * sizeof(T)) + 4;
  ASSERT_EQ(bytes.size(), expected_size);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 4), "WGRT");
  EXPECT_EQ(le32(bytes, 4), 1u);                                    // version
  EXPECT_EQ(le32(bytes, 8), (std::is_same_v<T, float> ? 1u : 2u));  // dtype code
  EXPECT_EQ(le64(bytes, 12), 2u);                                   // tensor count
  std::size_t at = 20;
  EXPECT_EQ(le32(bytes, at), 1u);  // name length
  EXPECT_EQ(bytes[at + 4], 'W');
  at += 5;
  EXPECT_EQ(le32(bytes, at), 2u);  // rank
  EXPECT_EQ(le64(bytes, at + 4), 2u);
  EXPECT_EQ(le64(bytes, at + 12), 3u);
  at += 20;
  for (std::size_t i = 0; i < 6; ++i) {
    T v;
    std::memcpy(&v, bytes.data() + at + i * sizeof(T), sizeof(T));
    EXPECT_EQ(v, w.data()[i]);
  }
  at += 6 * sizeof(T);
  EXPECT_EQ(le32(bytes, at), 4u);
  EXPECT_EQ(std::string(bytes.begin() + at + 4, bytes.begin() + at + 8), "bias");
  // The trailer is zlib's CRC-32 of everything before it.
  uLong crc = crc32(crc32(0L, Z_NULL, 0), bytes.data(), static_cast<uInt>(bytes.size() - 4));
  EXPECT_EQ(le32(bytes, bytes.size() - 4), static_cast<std::uint32_t>(crc));
}

TEST_F(SerializeTest, SaveReplacesAnExistingFile) {
  Parameter<float> p(Shape{2}, "p");
  p.data()[0] = 1;
  const std::string f = path("x.wgrt");
  write_bytes(f, std::vector<unsigned char>(1000, 7));
  nn::save(f, std::vector<Parameter<float>*>{&p});
  p.data()[0] = 5;
  nn::load(f, std::vector<Parameter<float>*>{&p});
  EXPECT_EQ(p.data()[0], 1.0f);
}

TEST_F(SerializeTest, WrongMagic) {
  Params<float> a;
  a.fill(1);
  const std::string f = path("magic.wgrt");
  nn::save(f, a.list());
  auto bytes = read_bytes(f);
  bytes[0] = 'X';
  fix_crc(bytes);
  write_bytes(f, bytes);
  expect_value_error([&] { nn::load(f, a.list()); }, f, {"not a wengert parameter file", "WGRT"});
  // A file too short to hold even the magic, and an empty one.
  write_bytes(f, {'W', 'G'});
  expect_value_error([&] { nn::load(f, a.list()); }, f, {"truncated"});
  write_bytes(f, {});
  expect_value_error([&] { nn::load(f, a.list()); }, f, {"truncated", "empty"});
}

TEST_F(SerializeTest, WrongVersion) {
  Params<float> a;
  a.fill(1);
  const std::string f = path("version.wgrt");
  nn::save(f, a.list());
  auto bytes = read_bytes(f);
  put_le32(bytes, 4, 7);
  fix_crc(bytes);
  write_bytes(f, bytes);
  expect_value_error([&] { nn::load(f, a.list()); }, f, {"format version 7", "reads version 1"});
}

TEST_F(SerializeTest, WrongDtype) {
  Params<float> a;
  Params<double> d;
  a.fill(1);
  const std::string f = path("dtype.wgrt");
  nn::save(f, a.list());
  expect_value_error([&] { nn::load(f, d.list()); }, f, {"float32", "float64"});
  auto bytes = read_bytes(f);
  put_le32(bytes, 8, 5);
  fix_crc(bytes);
  write_bytes(f, bytes);
  expect_value_error([&] { nn::load(f, a.list()); }, f, {"unknown dtype code 5"});
}

TEST_F(SerializeTest, TruncatedFile) {
  Params<double> a, b;
  a.fill(1);
  b.fill(2);
  const std::string f = path("trunc.wgrt");
  nn::save(f, a.list());
  const auto full = read_bytes(f);
  // Cut inside the data, inside the header, inside a name, and just before the checksum's end.
  for (std::size_t keep :
       {full.size() - 30, std::size_t{10}, std::size_t{23}, std::size_t{27}, full.size() - 1}) {
    write_bytes(f, std::vector<unsigned char>(full.begin(), full.begin() + keep));
    SCOPED_TRACE("kept " + std::to_string(keep) + " of " + std::to_string(full.size()));
    expect_value_error([&] { nn::load(f, b.list()); }, f, {"truncated"});
    EXPECT_EQ(b.s.data()[0], 3.25 + 2) << "parameters must be untouched on error";
  }
}

TEST_F(SerializeTest, FlippedByteFailsTheChecksum) {
  Params<float> a, b;
  a.fill(1);
  b.fill(2);
  const std::string f = path("flip.wgrt");
  nn::save(f, a.list());
  const auto good = read_bytes(f);
  // One flipped bit in the data, in a name, and in the stored checksum itself.
  const std::size_t data_byte = 20 + 4 + 5 + 4 + 16 + 9;  // inside fc0.W's values
  const std::size_t name_byte = 20 + 4 + 2;               // the 'c' of "fc0.W"
  for (std::size_t at : {data_byte, name_byte, good.size() - 2}) {
    auto bytes = good;
    bytes[at] ^= 0x10;
    write_bytes(f, bytes);
    SCOPED_TRACE("flipped byte " + std::to_string(at));
    expect_value_error([&] { nn::load(f, b.list()); }, f, {"checksum mismatch", "corrupt"});
    EXPECT_EQ(b.s.data()[0], 3.25f + 2) << "parameters must be untouched on error";
  }
  write_bytes(f, good);
  nn::load(f, b.list());
  EXPECT_EQ(b.s.data()[0], 3.25f + 1);
}

TEST_F(SerializeTest, BytesAfterTheLastTensorAreCorrupt) {
  Parameter<float> p(Shape{2}, "p");
  const std::string f = path("extra.wgrt");
  nn::save(f, std::vector<Parameter<float>*>{&p});
  auto bytes = read_bytes(f);
  bytes.insert(bytes.end() - 4, {1, 2, 3});
  fix_crc(bytes);
  write_bytes(f, bytes);
  expect_value_error([&] { nn::load(f, std::vector<Parameter<float>*>{&p}); }, f,
                     {"corrupt", "3 unexpected bytes"});
}

TEST_F(SerializeTest, ShapeMismatchNamesTensorAndBothShapes) {
  Params<float> a;
  a.fill(1);
  const std::string f = path("shape.wgrt");
  nn::save(f, a.list());
  Params<float> b;
  b.fill(2);
  b.b = Parameter<float>(Shape{6}, "fc0.b");
  expect_value_error([&] { nn::load(f, b.list()); }, f, {"fc0.b", "[5]", "[6]", "shape"});
  // All-or-nothing: fc0.W comes before the mismatch and must not have been loaded.
  EXPECT_EQ(b.s.data()[0], 3.25f + 2);
  EXPECT_NE(std::memcmp(a.w.data(), b.w.data(), a.w.size() * sizeof(float)), 0);
}

TEST_F(SerializeTest, NameAndCountMismatch) {
  Params<float> a;
  a.fill(1);
  const std::string f = path("names.wgrt");
  nn::save(f, a.list());
  Params<float> b;
  b.k.set_name("conv.kernel");
  expect_value_error([&] { nn::load(f, b.list()); }, f, {"conv.k", "conv.kernel"});
  auto fewer = a.list();
  fewer.pop_back();
  expect_value_error([&] { nn::load(f, fewer); }, f, {"6 tensors", "5 parameters"});
  // Swapped order is a name mismatch, not a silent mix-up.
  auto swapped = a.list();
  std::swap(swapped[0], swapped[1]);
  expect_value_error([&] { nn::load(f, swapped); }, f, {"fc0.W", "fc0.b"});
}

TEST_F(SerializeTest, MissingFileAndUnwritablePath) {
  Parameter<float> p(Shape{1}, "p");
  std::vector<Parameter<float>*> ps{&p};
  const std::string missing = path("nope.wgrt");
  expect_value_error([&] { nn::load(missing, ps); }, missing, {"cannot open"});
  const std::string bad = path("no/such/dir/x.wgrt");
  expect_value_error([&] { nn::save(bad, ps); }, bad, {"cannot open"});
}

TEST_F(SerializeTest, CorruptHeaderCountIsCaughtBeforeAllocating) {
  Parameter<float> p(Shape{1}, "p");
  std::vector<Parameter<float>*> ps{&p};
  const std::string f = path("count.wgrt");
  nn::save(f, ps);
  auto bytes = read_bytes(f);
  for (int i = 12; i < 20; ++i) bytes[i] = 0xff;  // 2^64 − 1 tensors
  fix_crc(bytes);
  write_bytes(f, bytes);
  expect_value_error([&] { nn::load(f, ps); }, f, {"truncated or corrupt", "tensors"});
}

// A dimension of 2^61 in a file with a valid CRC used to escape as a ShapeError from Shape,
// without the file's name; a corrupt file is a ValueError naming the file (load and load_all).
TEST_F(SerializeTest, AHugeDimensionWithAValidChecksumIsAValueErrorNamingTheFile) {
  Parameter<float> p(Shape{1, 1}, "p");
  std::vector<Parameter<float>*> ps{&p};
  const std::string f = path("huge_dim.wgrt");
  nn::save(f, ps);
  auto bytes = read_bytes(f);
  // Header (20) + name length (4) + "p" (1) + rank (4): dimension 0 starts at offset 29.
  ASSERT_EQ(le64(bytes, 29), 1u);
  for (int i = 0; i < 8; ++i) bytes[29 + i] = static_cast<unsigned char>((1ull << 61) >> (8 * i));
  fix_crc(bytes);
  write_bytes(f, bytes);
  for (int which = 0; which < 2; ++which) {
    try {
      if (which == 0)
        nn::load(f, ps);
      else
        nn::load_all<float>(f);
      ADD_FAILURE() << "loaded";
    } catch (const ValueError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("'" + f + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("tensor 0 ('p') of shape [2305843009213693952,1]"), std::string::npos)
          << msg;
      EXPECT_NE(msg.find("truncated or corrupt"), std::string::npos) << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a ValueError: " << e.what();
    }
  }
}

// load of a directory said "read error"; save into one said the rename failed.
TEST_F(SerializeTest, ADirectoryIsNamedAsSuch) {
  Parameter<float> p(Shape{2}, "p");
  std::vector<Parameter<float>*> ps{&p};
  const std::string d = path("a_dir");
  fs::create_directories(d);
  expect_value_error([&] { nn::load(d, ps); }, d, {"load: ", "it is a directory"});
  expect_value_error([&] { nn::load_all<float>(d); }, d, {"load_all: ", "it is a directory"});
  expect_value_error([&] { nn::save(d, ps); }, d, {"save: ", "it is a directory"});
  EXPECT_TRUE(fs::is_directory(d));
  EXPECT_FALSE(fs::exists(d + ".tmp"));
}

// load("/dev/zero") read without bound until memory ran out; a FIFO would block forever.
// Only regular files are read, and only as many bytes as their size.
TEST_F(SerializeTest, DevicesAndFifosAreRefusedWithoutReading) {
  Parameter<float> p(Shape{2}, "p");
  std::vector<Parameter<float>*> ps{&p};
  expect_value_error([&] { nn::load("/dev/zero", ps); }, "/dev/zero",
                     {"not a regular file (a device)"});
  expect_value_error([&] { nn::load_all<double>("/dev/zero"); }, "/dev/zero",
                     {"not a regular file (a device)"});
  const std::string fifo = path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_value_error([&] { nn::load(fifo, ps); }, fifo, {"not a regular file (a FIFO)"});
}

// Found by fuzz_load: a huge dimension followed by a zero one (no elements at all) was refused
// with a ShapeError while the shape was built one dimension at a time. Such a parameter is
// valid, saves, and must load.
TEST_F(SerializeTest, AnEmptyParameterWithAHugeDimensionRoundTrips) {
  Parameter<double> p(Shape{std::size_t{1} << 61, 0, 3}, "empty");
  std::vector<Parameter<double>*> ps{&p};
  const std::string f = path("empty_huge.wgrt");
  nn::save(f, ps);
  nn::load(f, ps);
  const auto all = nn::load_all<double>(f);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].shape(), p.shape());
  EXPECT_EQ(all[0].size(), 0u);
}

// Found by fuzz_load: a name with a newline (from a corrupt file, or a parameter's own name)
// made a message of two lines. Control bytes are shown as \xNN.
TEST_F(SerializeTest, NamesWithControlBytesKeepMessagesOnOneLine) {
  Parameter<float> p(Shape{1}, "a\nb\x7f");
  Parameter<float> q(Shape{1}, "c\td");
  const std::string f = path("names.wgrt");
  nn::save(f, std::vector<Parameter<float>*>{&p});
  try {
    nn::load(f, std::vector<Parameter<float>*>{&q});
    ADD_FAILURE() << "loaded";
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\t'), std::string::npos) << msg;
    EXPECT_NE(msg.find("named 'a\\x0ab\\x7f' in the file but parameter 0 is named 'c\\x09d'"),
              std::string::npos)
        << msg;
  }
}
