// Parameter files: writer and validating reader (the format is documented in
// wengert/nn/serialize.hpp).
#include <wengert/nn/serialize.hpp>
#include <wengert/nn/state.hpp>

#include "serialize_bytes.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <zlib.h>

#include <wengert/tape.hpp>

namespace wengert::nn {

namespace {

constexpr bool kLittleEndianHost = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
constexpr std::size_t kHeaderBytes = 4 + 4 + 4 + 8;
constexpr std::size_t kTrailerBytes = 4;

template <class T>
constexpr std::uint32_t dtype_code() {
  return std::is_same_v<T, float> ? kDtypeFloat32 : kDtypeFloat64;
}

std::uint32_t crc_update(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  while (n) {
    uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, std::size_t{1} << 30));
    crc = static_cast<std::uint32_t>(::crc32(crc, p, chunk));
    p += chunk;
    n -= chunk;
  }
  return crc;
}

// A name read from a file, for a message: control bytes (a newline, say, in a corrupt file) are
// shown as \xNN, so that every message stays one line.
std::string printable(const std::string& name) {
  std::string s;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      s += hex;
    } else {
      s += static_cast<char>(c);
    }
  }
  return s;
}

std::string prefix(const char* op, const std::string& path) {
  return std::string(op) + ": '" + path + "': ";
}

// Fault injection for the crash tests (serialize_bytes.hpp): called at each stage of a save.
void (*g_save_hook)(detail::SaveStage) = nullptr;
void hook(detail::SaveStage s) {
  if (g_save_hook) g_save_hook(s);
}

// The directory part of `path` ("." for a bare name), for the fsync after a rename.
std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Buffered writer to "<path>.tmp" that keeps a running CRC of everything written, and
// commit(): trailer, fsync, close, rename over `path`, fsync of the directory. Destroyed
// without commit() (an exception), it removes the temporary file.
class Writer {
 public:
  Writer(const char* op, const std::string& path) : op_(op), path_(path), tmp_(path + ".tmp") {
    buf_.reserve(kBuffer);  // before the file exists: a failure here leaves nothing behind
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      throw ValueError(prefix(op_, path_) + "it is a directory; " + op_ + "() writes a file");
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw ValueError(prefix(op_, path_) + "cannot open '" + tmp_ + "' for writing (" +
                       std::strerror(errno) + ")");
  }
  ~Writer() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void bytes(const void* p, std::size_t n) {
    crc_ = crc_update(crc_, static_cast<const unsigned char*>(p), n);
    raw(p, n);
  }
  template <class U>
  void uint(U v) {  // little-endian, whatever the host
    unsigned char b[sizeof(U)];
    for (std::size_t i = 0; i < sizeof(U); ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    bytes(b, sizeof(U));
  }
  template <class V>
  void values(const V* p, std::size_t n) {
    if constexpr (kLittleEndianHost) {
      bytes(p, n * sizeof(V));
    } else {
      using U = std::conditional_t<sizeof(V) == 4, std::uint32_t, std::uint64_t>;
      for (std::size_t i = 0; i < n; ++i) {
        U u;
        std::memcpy(&u, p + i, sizeof(V));
        uint(u);
      }
    }
  }
  /// Writes the CRC trailer and makes the file durable under its real name.
  void commit() {
    const std::uint32_t crc = crc_;
    unsigned char b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<unsigned char>(crc >> (8 * i));
    raw(b, 4);
    flush();
    hook(detail::SaveStage::kWritten);
    if (::fsync(fd_) != 0) fail("fsync of '" + tmp_ + "'");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      ::unlink(tmp_.c_str());
      fail("closing '" + tmp_ + "'");
    }
    hook(detail::SaveStage::kSynced);
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp_.c_str());
      errno = err;
      fail("renaming '" + tmp_ + "' to it");
    }
    hook(detail::SaveStage::kRenamed);
    // The rename is durable once the directory entry is: fsync the directory.
    const int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail("opening its directory to fsync it");
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    errno = err;
    // Some file systems cannot fsync a directory (EINVAL): the rename is as durable as they allow.
    if (rc != 0 && errno != EINVAL) fail("fsync of its directory");
  }

 private:
  static constexpr std::size_t kBuffer = std::size_t(1) << 20;

  [[noreturn]] void fail(const std::string& what) {
    throw ValueError(prefix(op_, path_) + what + " failed (" + std::strerror(errno) + ")");
  }
  void raw(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    while (n) {
      if (buf_.size() == kBuffer) flush();
      const std::size_t k = std::min(n, kBuffer - buf_.size());
      buf_.insert(buf_.end(), c, c + k);
      c += k;
      n -= k;
      if (!mid_hook_done_ && written_ + buf_.size() >= kBuffer / 2) {
        mid_hook_done_ = true;
        flush();
        hook(detail::SaveStage::kMidData);
      }
    }
  }
  void flush() {
    std::size_t off = 0;
    while (off < buf_.size()) {
      const ssize_t k = ::write(fd_, buf_.data() + off, buf_.size() - off);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) fail("writing '" + tmp_ + "'");
      off += static_cast<std::size_t>(k);
    }
    written_ += buf_.size();
    buf_.clear();
  }

  const char* op_;
  std::string path_, tmp_;
  int fd_ = -1;
  std::vector<unsigned char> buf_;
  std::size_t written_ = 0;
  bool mid_hook_done_ = false;
  std::uint32_t crc_ = static_cast<std::uint32_t>(::crc32(0L, Z_NULL, 0));
};

template <class T>
void save_impl(const std::string& path, const Parameter<T>* const* params, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!params[i])
      throw UsageError(prefix("save", path) + "parameter " + std::to_string(i) + " is null");
    if (params[i]->name().size() > std::numeric_limits<std::uint32_t>::max())
      throw ValueError(prefix("save", path) + "parameter " + std::to_string(i) +
                       "'s name is too long");
  }
  Writer w("save", path);
  w.bytes(kParamFileMagic, 4);
  w.uint(kParamFileVersion);
  w.uint(dtype_code<T>());
  w.uint(std::uint64_t{n});
  for (std::size_t i = 0; i < n; ++i) {
    const Parameter<T>& p = *params[i];
    w.uint(static_cast<std::uint32_t>(p.name().size()));
    w.bytes(p.name().data(), p.name().size());
    w.uint(static_cast<std::uint32_t>(p.shape().rank()));
    for (std::size_t d : p.shape()) w.uint(std::uint64_t{d});
    w.values(p.data(), p.size());
  }
  w.commit();
}

// Reads the whole of `path`, which must be a regular file: at most the size fstat reports, so a
// file that grows while it is read, or a device like /dev/zero, cannot make this read without
// bound. Opened non-blocking, so that a FIFO is refused instead of waiting for a writer.
std::vector<unsigned char> read_file(const std::string& path, const std::string& pre) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw ValueError(pre + "cannot open it (" + std::strerror(errno) + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    throw ValueError(pre + "cannot stat it (" + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) throw ValueError(pre + "it is a directory, not a parameter file");
  if (!S_ISREG(st.st_mode))
    throw ValueError(pre + "it is not a regular file (" +
                     (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                      : S_ISFIFO(st.st_mode)                     ? "a FIFO"
                      : S_ISSOCK(st.st_mode)                     ? "a socket"
                                                                 : "not a file") +
                     "); parameter files are regular files");
  const auto size = static_cast<std::size_t>(st.st_size);
  std::vector<unsigned char> buf;
  try {
    buf.resize(size);
  } catch (const std::bad_alloc&) {
    throw ResourceError(pre + "cannot allocate " + std::to_string(size) +
                        " bytes to read it (out of memory)");
  }
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, buf.data() + got, std::min<std::size_t>(size - got, 1 << 24));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ValueError(pre + "read error (" + std::strerror(errno) + ")");
    if (n == 0) break;  // shrank while being read: parsed as what was read (truncated)
    got += static_cast<std::size_t>(n);
  }
  buf.resize(got);
  return buf;
}

// Bounds-checked little-endian reader over the file's body (everything before the CRC).
class Reader {
 public:
  Reader(const std::string& pre, const unsigned char* data, std::size_t end)
      : pre_(pre), data_(data), end_(end) {}

  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return end_ - pos_; }

  const unsigned char* take(std::size_t n, const std::string& what) {
    if (n > remaining())
      throw ValueError(pre_ + "the file is truncated or corrupt: " + what + " needs " +
                       std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                       " but the data end at offset " + std::to_string(end_));
    const unsigned char* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  template <class U>
  U uint(const std::string& what) {
    const unsigned char* p = take(sizeof(U), what);
    U v = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) v |= static_cast<U>(p[i]) << (8 * i);
    return v;
  }

 private:
  std::string pre_;
  const unsigned char* data_;
  std::size_t end_;
  std::size_t pos_ = 0;
};

std::size_t dtype_bytes(std::uint32_t code) { return code == kDtypeFloat32 ? 4 : 8; }
bool known_dtype(std::uint32_t code) {
  return code == kDtypeFloat32 || code == kDtypeFloat64 || code == kDtypeUInt64;
}
const char* dtype_word(std::uint32_t code) {
  return code == kDtypeFloat32   ? "float32"
         : code == kDtypeFloat64 ? "float64"
         : code == kDtypeUInt64  ? "uint64"
                                 : "unknown";
}

struct Record {
  std::string name;
  std::uint32_t dtype;
  Shape shape;
  const unsigned char* data;
};

// Validates a whole file's bytes (magic, version, dtypes, structure, checksum) and returns its
// records, which point into `buf`. Version 1 has one dtype for the file (float32 or float64),
// version 2 one per record (float32, float64 or uint64). Every length is checked against the
// bytes that remain before anything is read or allocated from it. Errors are ValueErrors
// starting with `pre`.
std::vector<Record> parse_bytes_unguarded(const std::string& pre, const unsigned char* buf,
                                          std::size_t size, std::uint32_t* version_out) {
  // Header: magic, version, dtype — each checked before anything that depends on it.
  if (size == 0) throw ValueError(pre + "the file is truncated: it is empty");
  if (std::memcmp(buf, kParamFileMagic, std::min<std::size_t>(size, 4)) != 0) {
    char hex[3 * 4 + 1] = {};
    for (std::size_t i = 0; i < std::min<std::size_t>(size, 4); ++i)
      std::snprintf(hex + 3 * i, 4, "%02x ", buf[i]);
    throw ValueError(pre + "not a wengert parameter file: it starts with bytes " + hex +
                     "instead of the magic 'WGRT'");
  }
  if (size < kHeaderBytes + kTrailerBytes)
    throw ValueError(pre + "the file is truncated: " + std::to_string(size) +
                     " bytes, less than the " + std::to_string(kHeaderBytes + kTrailerBytes) +
                     "-byte header and checksum");
  Reader r(pre, buf, size - kTrailerBytes);
  r.take(4, "magic");
  const auto version = r.uint<std::uint32_t>("version");
  if (version != kParamFileVersion && version != kStateFileVersion)
    throw ValueError(pre + "unsupported format version " + std::to_string(version) +
                     "; this build reads version 1 (parameter files) and 2 (state files)");
  if (version_out) *version_out = version;
  const auto file_dtype = r.uint<std::uint32_t>("dtype");
  if (version == kParamFileVersion && file_dtype != kDtypeFloat32 && file_dtype != kDtypeFloat64)
    throw ValueError(pre + "unknown dtype code " + std::to_string(file_dtype) +
                     " (1 = float32, 2 = float64); the file is corrupt");
  if (version == kStateFileVersion && file_dtype != 0)
    throw ValueError(pre + "the file is corrupt: a version 2 file has 0 in its dtype field, not " +
                     std::to_string(file_dtype));
  const auto count = r.uint<std::uint64_t>("tensor count");
  // The smallest record: an empty name's length, (a dtype,) a rank of 0 and its one value.
  const std::size_t min_record = version == kStateFileVersion ? 4 + 4 + 4 + 4 : 4 + 4 + 4;
  if (count > r.remaining() / min_record)
    throw ValueError(pre + "the file is truncated or corrupt: the header announces " +
                     std::to_string(count) + " tensors but only " + std::to_string(r.remaining()) +
                     " bytes follow");

  // Structure: every record must fit, and the records must end exactly at the checksum. The
  // list grows as records are read, so its memory follows what the file really holds.
  std::vector<Record> records;
  for (std::size_t i = 0; i < static_cast<std::size_t>(count); ++i) {
    const std::string which = "tensor " + std::to_string(i);
    records.emplace_back();
    Record& rec = records.back();
    const auto len = r.uint<std::uint32_t>(which + "'s name length");
    const unsigned char* name = r.take(len, which + "'s name");
    rec.name.assign(reinterpret_cast<const char*>(name), len);
    const std::string named = which + " ('" + printable(rec.name) + "')";
    rec.dtype = file_dtype;
    if (version == kStateFileVersion) {
      rec.dtype = r.uint<std::uint32_t>(named + "'s dtype");
      if (!known_dtype(rec.dtype))
        throw ValueError(pre + "the file is corrupt: " + named + " has unknown dtype code " +
                         std::to_string(rec.dtype) + " (1 = float32, 2 = float64, 3 = uint64)");
    }
    const std::size_t esize = dtype_bytes(rec.dtype);
    const auto rank = r.uint<std::uint32_t>(named + "'s rank");
    if (rank > Shape::kMaxRank)
      throw ValueError(pre + "the file is corrupt: " + named + " has rank " + std::to_string(rank) +
                       ", above the maximum " + std::to_string(Shape::kMaxRank));
    // The dimensions are checked here, before a Shape is built from them: a Shape refuses
    // more than Shape::kMaxSize elements with a ShapeError, which would not name the file.
    // A zero dimension anywhere means no elements, whatever the others (as for Shape, so that
    // every parameter save() writes, [2^61, 0] included, loads).
    std::vector<std::size_t> dims(rank);
    bool empty = false;
    std::string shown = "[";
    for (std::uint32_t d = 0; d < rank; ++d) {
      const auto dim = r.uint<std::uint64_t>(named + "'s dimension " + std::to_string(d));
      dims[d] = static_cast<std::size_t>(dim);
      shown += (d ? "," : "") + std::to_string(dim);
      empty |= dim == 0;
    }
    shown += "]";
    std::uint64_t elems = 1;
    bool overflow = false;
    for (std::uint32_t d = 0; d < rank && !empty && !overflow; ++d) {
      if (elems > std::numeric_limits<std::uint64_t>::max() / esize / dims[d]) overflow = true;
      elems *= dims[d];
    }
    if (empty) elems = 0;
    if (overflow || elems > Shape::kMaxSize || elems * esize > r.remaining())
      throw ValueError(pre + "the file is truncated or corrupt: " + named + " of shape " + shown +
                       " needs " +
                       (overflow ? std::string("more") : std::to_string(elems * esize)) +
                       " bytes of data at offset " + std::to_string(r.pos()) + " but only " +
                       std::to_string(r.remaining()) + " remain before the checksum");
    rec.shape = Shape(dims);  // checked as a whole: [2^61, 0] is a valid (empty) shape
    rec.data = r.take(static_cast<std::size_t>(elems * esize), named + "'s data");
  }
  if (r.remaining() != 0)
    throw ValueError(pre + "the file is corrupt: " + std::to_string(r.remaining()) +
                     " unexpected bytes between the last tensor and the checksum");

  // Checksum over everything before the trailer.
  const unsigned char* t = buf + size - kTrailerBytes;
  const std::uint32_t stored = std::uint32_t{t[0]} | std::uint32_t{t[1]} << 8 |
                               std::uint32_t{t[2]} << 16 | std::uint32_t{t[3]} << 24;
  const std::uint32_t computed =
      crc_update(static_cast<std::uint32_t>(::crc32(0L, Z_NULL, 0)), buf, size - kTrailerBytes);
  if (stored != computed) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "checksum mismatch (stored CRC-32 %08x, computed %08x)", stored,
                  computed);
    throw ValueError(pre + "the file is corrupt: " + msg);
  }
  return records;
}

// As parse_bytes_unguarded, with running out of memory (a file of millions of tiny records)
// reported as a ResourceError naming the file.
std::vector<Record> parse_bytes(const std::string& pre, const unsigned char* buf, std::size_t size,
                                std::uint32_t* version_out = nullptr) {
  try {
    return parse_bytes_unguarded(pre, buf, size, version_out);
  } catch (const std::bad_alloc&) {
    throw ResourceError(pre + "out of memory while reading the file's structure (" +
                        std::to_string(size) + " bytes)");
  }
}

// The records of a file read as parameters of dtype T: every record must hold T.
template <class T>
std::vector<Record> parse_typed(const std::string& pre, const unsigned char* buf,
                                std::size_t size) {
  std::uint32_t version = 0;
  std::vector<Record> records = parse_bytes(pre, buf, size, &version);
  const bool v1 = version == kParamFileVersion;
  for (std::size_t i = 0; i < records.size(); ++i)
    if (records[i].dtype != dtype_code<T>()) {
      if (v1)
        throw ValueError(pre + "the file holds " + dtype_word(records[i].dtype) +
                         " tensors but the parameters are " + dtype_word(dtype_code<T>()));
      throw ValueError(pre + "tensor " + std::to_string(i) + " ('" + printable(records[i].name) +
                       "') holds " + dtype_word(records[i].dtype) +
                       " values but the parameters are " + dtype_word(dtype_code<T>()));
    }
  return records;
}

template <class V>
void copy_values(const unsigned char* src, V* dst, std::size_t n) {
  if constexpr (kLittleEndianHost) {
    if (n) std::memcpy(dst, src, n * sizeof(V));
  } else {
    using U = std::conditional_t<sizeof(V) == 4, std::uint32_t, std::uint64_t>;
    for (std::size_t k = 0; k < n; ++k) {
      U u = 0;
      for (std::size_t b = 0; b < sizeof(V); ++b)
        u |= static_cast<U>(src[k * sizeof(V) + b]) << (8 * b);
      std::memcpy(dst + k, &u, sizeof(V));
    }
  }
}

template <class T>
void load_impl(const std::string& path, const std::vector<Parameter<T>*>& params) {
  const std::string pre = prefix("load", path);
  for (std::size_t i = 0; i < params.size(); ++i)
    if (!params[i]) throw UsageError(pre + "parameter " + std::to_string(i) + " is null");
  const std::vector<unsigned char> buf = read_file(path, pre);
  const std::vector<Record> records = parse_typed<T>(pre, buf.data(), buf.size());

  // The file is sound; now it must match the parameters.
  if (records.size() != params.size())
    throw ValueError(pre + "the file holds " + std::to_string(records.size()) + " tensors but " +
                     std::to_string(params.size()) + " parameters were given");
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Parameter<T>& p = *params[i];
    if (records[i].name != p.name())
      throw ValueError(pre + "tensor " + std::to_string(i) + " is named '" +
                       printable(records[i].name) + "' in the file but parameter " +
                       std::to_string(i) + " is named '" + printable(p.name()) + "'");
    if (records[i].shape != p.shape())
      throw ValueError(pre + "tensor " + std::to_string(i) + " ('" + printable(records[i].name) +
                       "') has shape " + records[i].shape.str() +
                       " in the file but the parameter has shape " + p.shape().str());
  }

  // All checks passed: copy.
  for (std::size_t i = 0; i < records.size(); ++i)
    copy_values(records[i].data, params[i]->data(), params[i]->size());
}

template <class T>
std::vector<Parameter<T>> parameters_from(const std::string& pre, const unsigned char* data,
                                          std::size_t size) {
  const std::vector<Record> records = parse_typed<T>(pre, data, size);
  std::vector<Parameter<T>> out;
  try {
    out.reserve(records.size());
    for (const Record& rec : records) {
      out.emplace_back(rec.shape, rec.name);
      copy_values(rec.data, out.back().data(), out.back().size());
    }
  } catch (const ResourceError& e) {
    throw ResourceError(pre + e.what());
  } catch (const std::bad_alloc&) {
    throw ResourceError(pre + "out of memory while creating " + std::to_string(records.size()) +
                        " parameters");
  }
  return out;
}

template <class T>
std::vector<Parameter<T>> load_all_impl(const std::string& path) {
  const std::string pre = prefix("load_all", path);
  const std::vector<unsigned char> buf = read_file(path, pre);
  return parameters_from<T>(pre, buf.data(), buf.size());
}

StateDict state_from(const std::string& pre, const unsigned char* data, std::size_t size) {
  std::uint32_t version = 0;
  const std::vector<Record> records = parse_bytes(pre, data, size, &version);
  StateDict sd;
  try {
    for (std::size_t i = 0; i < records.size(); ++i) {
      const Record& rec = records[i];
      if (sd.contains(rec.name)) {
        // Version 1 allows repeated names (nn::load matches by position); a state dict cannot.
        if (version == kParamFileVersion)
          throw ValueError(pre + "tensor " + std::to_string(i) + " ('" + printable(rec.name) +
                           "') has the name of an earlier tensor: this parameter file matches "
                           "by position, read it with nn::load or nn::load_all");
        throw ValueError(pre + "the file is corrupt: tensor " + std::to_string(i) + " ('" +
                         printable(rec.name) + "') has the name of an earlier tensor");
      }
      const std::size_t n = rec.shape.size();
      auto put = [&](auto tag) {
        using V = decltype(tag);
        std::vector<V> v(n);
        copy_values(rec.data, v.data(), n);
        sd.set(rec.name, rec.shape, v.data());
      };
      if (rec.dtype == kDtypeFloat32)
        put(float{});
      else if (rec.dtype == kDtypeFloat64)
        put(double{});
      else
        put(std::uint64_t{});
    }
  } catch (const std::bad_alloc&) {
    throw ResourceError(pre + "out of memory while reading " + std::to_string(records.size()) +
                        " tensors");
  }
  return sd;
}

}  // namespace

namespace detail {

template <class T>
std::vector<Parameter<T>> load_all_from_bytes(const unsigned char* data, std::size_t size,
                                              const std::string& shown) {
  return parameters_from<T>(prefix("load_all", shown), data, size);
}
template std::vector<Parameter<float>> load_all_from_bytes<float>(const unsigned char*, std::size_t,
                                                                  const std::string&);
template std::vector<Parameter<double>> load_all_from_bytes<double>(const unsigned char*,
                                                                    std::size_t,
                                                                    const std::string&);

StateDict load_state_from_bytes(const unsigned char* data, std::size_t size,
                                const std::string& shown) {
  return state_from(prefix("load_state", shown), data, size);
}

void set_save_hook(void (*h)(SaveStage)) { g_save_hook = h; }

}  // namespace detail

template <class T>
void save(const std::string& path, const std::vector<const Parameter<T>*>& params) {
  save_impl<T>(path, params.data(), params.size());
}

template <class T>
void save(const std::string& path, const std::vector<Parameter<T>*>& params) {
  std::vector<const Parameter<T>*> c(params.begin(), params.end());
  save_impl<T>(path, c.data(), c.size());
}

template <class T>
void load(const std::string& path, const std::vector<Parameter<T>*>& params) {
  load_impl<T>(path, params);
}

template void save<float>(const std::string&, const std::vector<const Parameter<float>*>&);
template void save<double>(const std::string&, const std::vector<const Parameter<double>*>&);
template void save<float>(const std::string&, const std::vector<Parameter<float>*>&);
template void save<double>(const std::string&, const std::vector<Parameter<double>*>&);
template <class T>
std::vector<Parameter<T>> load_all(const std::string& path) {
  return load_all_impl<T>(path);
}

void save_state(const std::string& path, const StateDict& sd) {
  for (const auto& e : sd.entries())
    if (e.name.size() > std::numeric_limits<std::uint32_t>::max())
      throw ValueError(prefix("save_state", path) + "a name is too long");
  Writer w("save_state", path);
  w.bytes(kParamFileMagic, 4);
  w.uint(kStateFileVersion);
  w.uint(std::uint32_t{0});
  w.uint(std::uint64_t{sd.size()});
  for (const auto& e : sd.entries()) {
    w.uint(static_cast<std::uint32_t>(e.name.size()));
    w.bytes(e.name.data(), e.name.size());
    w.uint(static_cast<std::uint32_t>(e.dtype()));
    w.uint(static_cast<std::uint32_t>(e.shape.rank()));
    for (std::size_t d : e.shape) w.uint(std::uint64_t{d});
    std::visit([&](const auto& v) { w.values(v.data(), v.size()); }, e.values);
  }
  w.commit();
}

StateDict load_state(const std::string& path) {
  const std::string pre = prefix("load_state", path);
  const std::vector<unsigned char> buf = read_file(path, pre);
  return state_from(pre, buf.data(), buf.size());
}

template void load<float>(const std::string&, const std::vector<Parameter<float>*>&);
template void load<double>(const std::string&, const std::vector<Parameter<double>*>&);
template std::vector<Parameter<float>> load_all<float>(const std::string&);
template std::vector<Parameter<double>> load_all<double>(const std::string&);

}  // namespace wengert::nn
