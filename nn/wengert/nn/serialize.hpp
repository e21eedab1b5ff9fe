// wengert — saving and loading Parameters (checkpoints).
//
// File format, version 1 ("WGRT"). Every integer is unsigned little-endian; there is no
// padding anywhere:
//
//   offset  size       field
//   0       4          magic: the bytes 'W' 'G' 'R' 'T'
//   4       4          format version (uint32) = 1
//   8       4          dtype code (uint32): 1 = float32, 2 = float64 (IEEE 754), for all tensors
//   12      8          tensor count N (uint64)
//   20      …          N tensor records, in the order of the parameter list given to save():
//                        name length L (uint32), then L bytes of name (UTF-8, no terminator)
//                        rank R (uint32, ≤ 6)
//                        R dimensions (uint64 each), row-major, outermost first
//                        the values: product(dims) elements of the dtype, row-major,
//                        little-endian (a rank-0 tensor holds one element)
//   end − 4 4          CRC-32 (uint32) of every preceding byte of the file: the zlib /
//                      ISO-HDLC CRC-32 (polynomial 0x04C11DB7 reflected, init and xorout
//                      0xFFFFFFFF), the same as `crc32` in zlib, gzip and Python's zlib.crc32
//
// A reader in numpy, for reference: check the magic, read the header with
// struct.unpack('<4sIIQ'), then per tensor '<I', the name, '<I', '<{R}Q', and
// np.frombuffer(..., dtype='<f4' or '<f8', count=prod(dims)).
//
// save() writes "<path>.tmp", fsyncs it, renames it over `path` and fsyncs the directory, so an
// interrupted save (a crash, a SIGKILL, a power cut) never leaves a half-written file under the
// real name: `path` holds the old file or the new one. load() reads and validates the whole file —
// magic, version, dtype, structure, checksum, then that every tensor matches its parameter —
// before it writes into any parameter: on any error the parameters are left untouched.
//
// Matching is by position: tensor i of the file is loaded into params[i], and its name and
// shape must equal that parameter's name() and shape(); the counts must be equal. (Models give
// their parameters unique names, so a reordered or renamed model fails loudly.)
//
// Every error is a wengert::ValueError whose message starts with the operation and the file
// ("load: 'ckpt.wgrt': ...") and says what is wrong: the file cannot be opened or written; it
// is a directory, or not a regular file (a device, a FIFO: only regular files are read, and
// never more bytes than their size); it is not a wengert file (wrong magic); it has an unsupported
// format version; its dtype is not the parameters' dtype; it is truncated; it is corrupt (checksum
// mismatch, or bytes after the checksum; a dimension too large for the data, however large); or a
// tensor's count, name or shape does not match the parameters. (Memory that cannot be allocated for
// what a sound file holds is a ResourceError, also naming the file.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wengert {

template <class T>
class Parameter;

namespace nn {

/// Magic, version and dtype codes of the parameter file format (see the top of this header).
inline constexpr char kParamFileMagic[4] = {'W', 'G', 'R', 'T'};
inline constexpr std::uint32_t kParamFileVersion = 1;
inline constexpr std::uint32_t kDtypeFloat32 = 1;
inline constexpr std::uint32_t kDtypeFloat64 = 2;
/// Version 2 (state files: per-tensor dtypes, uint64 among them) is described in state.hpp.
inline constexpr std::uint32_t kStateFileVersion = 2;
inline constexpr std::uint32_t kDtypeUInt64 = 3;

/// Writes the values of `params` (names, shapes, data) to `path`, replacing it.
template <class T>
void save(const std::string& path, const std::vector<Parameter<T>*>& params);
template <class T>
void save(const std::string& path, const std::vector<const Parameter<T>*>& params);

/// Reads `path` into `params` (values only; gradients are untouched). All-or-nothing.
template <class T>
void load(const std::string& path, const std::vector<Parameter<T>*>& params);

/// Reads every tensor of `path` as a new Parameter with the file's name, shape and values — a
/// checkpoint inspected without a model (e.g. to rebuild the model it was saved from). Same
/// validation and errors as load() (messages start "load_all: '<path>': ...").
template <class T>
std::vector<Parameter<T>> load_all(const std::string& path);

extern template void save<float>(const std::string&, const std::vector<const Parameter<float>*>&);
extern template void save<double>(const std::string&, const std::vector<const Parameter<double>*>&);
extern template void save<float>(const std::string&, const std::vector<Parameter<float>*>&);
extern template void save<double>(const std::string&, const std::vector<Parameter<double>*>&);
extern template void load<float>(const std::string&, const std::vector<Parameter<float>*>&);
extern template void load<double>(const std::string&, const std::vector<Parameter<double>*>&);
extern template std::vector<Parameter<float>> load_all<float>(const std::string&);
extern template std::vector<Parameter<double>> load_all<double>(const std::string&);

}  // namespace nn
}  // namespace wengert
