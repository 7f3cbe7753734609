// The safetensors file format, read and written as Hugging Face does:
//   8 bytes   little-endian u64 N, the header length
//   N bytes   JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
//             optional "__metadata__": {str: str}}, padded with spaces to a multiple of 8
//   rest      the data section; data_offsets are relative to its start.
// Reading maps the file read-only and validates the header fully, so a corrupt file gives a
// solo::Error naming the file rather than a crash.
#pragma once
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "solo/core/dtype.h"
#include "solo/core/shape.h"

namespace solo::io {

// A tensor as raw little-endian row-major bytes. When read from a file, `bytes` points into
// the file mapping (valid while the SafetensorsFile lives) and need not be aligned to the
// element size: copy it out with memcpy rather than casting the pointer.
struct RawTensor {
  DType dtype = DType::F32;
  Shape shape;
  std::span<const std::byte> bytes;
};

// "F32", "BF16", ... for a solo dtype, and back; the latter throws naming the supported ones.
const char* safetensors_dtype_name(DType t);
DType dtype_from_safetensors(const std::string& name);

// Size in bytes of a tensor of this dtype and shape; throws on a negative dim or on overflow.
size_t raw_tensor_nbytes(DType dtype, const Shape& shape);

// The tensors and metadata of a whole safetensors file held in memory; the tensors' bytes point
// into it. `where` names the file in errors. SafetensorsFile::open maps a file and parses it
// with this; on its own it lets the parser be tested and fuzzed without a file.
struct SafetensorsContents {
  std::map<std::string, RawTensor> tensors;
  std::map<std::string, std::string> metadata;
};
SafetensorsContents parse_safetensors(std::span<const std::byte> file, const std::string& where);

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, RawTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws naming the file when there is no such tensor.
  const RawTensor& tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  void unmap();

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, RawTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes `path` atomically (core/atomic_file.h). Tensors are laid out contiguously in the given
// order; the header is padded so the data section starts at a multiple of 8 bytes. An empty
// metadata map writes no "__metadata__" entry.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, RawTensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The bytes write_safetensors writes before the data section: the 8-byte length and the header.
std::string safetensors_header(const std::vector<std::pair<std::string, RawTensor>>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace solo::io
