#include "solo/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/core/json_keys.h"
#include "solo/core/printable.h"
#include "solo/io/file_util.h"

namespace solo::io {

using nlohmann::json;

namespace {

constexpr DType kAllDTypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                                DType::I32, DType::I64, DType::Bool};
constexpr const char* kSupported = "F32, F64, BF16, F16, I32, I64, BOOL";
// The Hugging Face reader's limit; it also bounds the work a corrupt length can cause.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Unsigned JSON integer, or nothing (negative, fractional or not a number).
bool get_u64(const json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return true;
}

struct Closer {
  int fd;
  ~Closer() { ::close(fd); }
};

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::Bool:
      return "BOOL";
  }
  SOLO_FAIL("invalid dtype ", static_cast<int>(t));
}

DType dtype_from_safetensors(const std::string& name) {
  for (DType t : kAllDTypes)
    if (name == safetensors_dtype_name(t)) return t;
  SOLO_FAIL("unsupported safetensors dtype '", name, "' (supported: ", kSupported, ")");
}

size_t raw_tensor_nbytes(DType dtype, const Shape& shape) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape.dims()) {
    SOLO_CHECK(d >= 0, "negative dimension in shape ", shape.str());
    const uint64_t ud = static_cast<uint64_t>(d);
    SOLO_CHECK(ud == 0 || n <= std::numeric_limits<uint64_t>::max() / ud, "shape ", shape.str(),
               " is too large");
    n *= ud;
  }
  return n;
}

// ---- reading ----------------------------------------------------------------------------

SafetensorsContents parse_safetensors(std::span<const std::byte> file, const std::string& where) {
  const uint64_t file_size = file.size();
  SOLO_CHECK(file_size >= 8, where, ": file is ", file_size,
             " bytes, shorter than the 8-byte header length");
  const std::byte* base = file.data();

  // Assemble the length byte by byte so the format is little-endian on any host.
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | std::to_integer<uint64_t>(base[i]);
  SOLO_CHECK(header_len <= file_size - 8, where, ": header length ", header_len,
             " exceeds the file size (", file_size, " bytes); the file is truncated or corrupt");
  SOLO_CHECK(header_len <= kMaxHeaderBytes, where, ": header length ", header_len,
             " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  const std::string_view text(reinterpret_cast<const char*>(base + 8), header_len);
  SOLO_CHECK(!text.empty() && text[0] == '{', where,
             ": header is not a JSON object (it does not start with '{')");

  json header;
  try {
    check_unique_json_keys(text, where + ": header");  // the format forbids duplicate names
    header = json::parse(text);
  } catch (const json::exception& e) {
    SOLO_FAIL(where, ": header is not valid JSON: ", e.what());
  }
  SOLO_CHECK(header.is_object(), where, ": header is not a JSON object");

  SafetensorsContents f;
  const std::byte* data = base + 8 + header_len;
  const uint64_t data_size = file_size - 8 - header_len;
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      SOLO_CHECK(entry.is_object(), where, ": \"__metadata__\" is not a JSON object");
      for (const auto& [key, value] : entry.items()) {
        SOLO_CHECK(value.is_string(), where, ": \"__metadata__\" value of '", key,
                   "' is not a string");
        f.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string t = where + ": tensor '" + printable(name) + "'";
    SOLO_CHECK(entry.is_object(), t, ": entry is not a JSON object");
    const auto dt = entry.find("dtype");
    SOLO_CHECK(dt != entry.end(), t, ": missing \"dtype\"");
    SOLO_CHECK(dt->is_string(), t, ": \"dtype\" is not a string");
    RawTensor r;
    bool known = false;
    for (DType d : kAllDTypes) {
      if (dt->get<std::string>() == safetensors_dtype_name(d)) {
        r.dtype = d;
        known = true;
      }
    }
    SOLO_CHECK(known, t, ": unsupported dtype '", dt->get<std::string>(),
               "' (supported: ", kSupported, ")");

    const auto sh = entry.find("shape");
    SOLO_CHECK(sh != entry.end(), t, ": missing \"shape\"");
    SOLO_CHECK(sh->is_array(), t, ": \"shape\" is not an array");
    std::vector<int64_t> dims;
    for (const json& d : *sh) {
      uint64_t v = 0;
      SOLO_CHECK(get_u64(d, &v) && v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                 t, ": \"shape\" ", sh->dump(), " is not a list of non-negative integers");
      dims.push_back(static_cast<int64_t>(v));
    }
    r.shape = Shape(std::move(dims));
    size_t nbytes = 0;
    try {
      nbytes = raw_tensor_nbytes(r.dtype, r.shape);
    } catch (const Error& e) {
      SOLO_FAIL(t, ": ", e.what());
    }

    const auto off = entry.find("data_offsets");
    SOLO_CHECK(off != entry.end(), t, ": missing \"data_offsets\"");
    uint64_t begin = 0, end = 0;
    SOLO_CHECK(off->is_array() && off->size() == 2 && get_u64((*off)[0], &begin) &&
                   get_u64((*off)[1], &end),
               t, ": \"data_offsets\" ", off->dump(),
               " is not [begin, end] of non-negative integers");
    SOLO_CHECK(begin <= end, t, ": \"data_offsets\" [", begin, ", ", end, "] has begin > end");
    SOLO_CHECK(end - begin == nbytes, t, ": \"data_offsets\" [", begin, ", ", end, "] span ",
               end - begin, " bytes but ", safetensors_dtype_name(r.dtype), " ", r.shape.str(),
               " needs ", nbytes);
    SOLO_CHECK(end <= data_size, t, ": \"data_offsets\" [", begin, ", ", end,
               "] run past the end of the data section (", data_size,
               " bytes); the file is truncated or the offsets are wrong");
    r.bytes = std::span<const std::byte>(data + begin, nbytes);
    auto [it, inserted] = f.tensors.emplace(name, std::move(r));
    if (nbytes > 0) ranges.push_back({begin, end, &it->first});
  }

  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    SOLO_CHECK(ranges[i].begin >= ranges[i - 1].end, where, ": data of tensors '",
               *ranges[i - 1].name, "' [", ranges[i - 1].begin, ", ", ranges[i - 1].end, ") and '",
               *ranges[i].name, "' [", ranges[i].begin, ", ", ranges[i].end, ") overlap");
  }
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const std::string where = "safetensors file " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SOLO_CHECK(fd >= 0, where, ": cannot open: ", std::strerror(errno));
  Closer closer{fd};
  struct stat st {};
  SOLO_CHECK(::fstat(fd, &st) == 0, where, ": cannot stat: ", std::strerror(errno));
  SOLO_CHECK(S_ISREG(st.st_mode), where, ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  // Checked here too, as parse_safetensors does: mmap refuses an empty file with EINVAL.
  SOLO_CHECK(file_size >= 8, where, ": file is ", file_size,
             " bytes, shorter than the 8-byte header length");

  SafetensorsFile f;
  f.path_ = path;
  f.map_ = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  SOLO_CHECK(f.map_ != MAP_FAILED, where, ": mmap failed: ", std::strerror(errno));
  f.map_size_ = file_size;
  SafetensorsContents c =
      parse_safetensors({static_cast<const std::byte*>(f.map_), file_size}, where);
  f.tensors_ = std::move(c.tensors);
  f.metadata_ = std::move(c.metadata);
  return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      map_(std::exchange(o.map_, nullptr)),
      map_size_(std::exchange(o.map_size_, 0)),
      tensors_(std::move(o.tensors_)),
      metadata_(std::move(o.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  unmap();
}

void SafetensorsFile::unmap() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

const RawTensor& SafetensorsFile::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  SOLO_CHECK(it != tensors_.end(), "safetensors file ", path_, ": no tensor named '", name, "'");
  return it->second;
}

// ---- writing ----------------------------------------------------------------------------

namespace {

std::string build_header(const std::vector<std::pair<std::string, RawTensor>>& tensors,
                         const std::map<std::string, std::string>& metadata,
                         const std::string& where) {
  // Built by hand rather than as a json object so that entries keep the given order.
  std::string h = "{";
  if (!metadata.empty()) h += "\"__metadata__\":" + json(metadata).dump();
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    SOLO_CHECK(name != "__metadata__", where, ": '__metadata__' cannot be a tensor name");
    SOLO_CHECK(seen.insert(name).second, where, ": tensor name '", name, "' appears twice");
    size_t nbytes = 0;
    try {
      nbytes = raw_tensor_nbytes(t.dtype, t.shape);
    } catch (const Error& e) {
      SOLO_FAIL(where, ": tensor '", name, "': ", e.what());
    }
    SOLO_CHECK(t.bytes.size() == nbytes, where, ": tensor '", name, "' has ", t.bytes.size(),
               " bytes but ", safetensors_dtype_name(t.dtype), " ", t.shape.str(), " needs ",
               nbytes);
    if (h.size() > 1) h += ',';
    h += json(name).dump() + ":{\"dtype\":\"" + safetensors_dtype_name(t.dtype) +
         "\",\"shape\":" + json(t.shape.dims()).dump() + ",\"data_offsets\":[" +
         std::to_string(offset) + "," + std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  h += '}';
  // Pad with spaces, as Hugging Face does, so the data section starts 8-byte aligned.
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[static_cast<size_t>(i)] = static_cast<char>(n & 0xff);
  return out + h;
}

}  // namespace

std::string safetensors_header(const std::vector<std::pair<std::string, RawTensor>>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  return build_header(tensors, metadata, "safetensors header");
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, RawTensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string header = build_header(tensors, metadata, "safetensors file " + path);
  std::vector<std::span<const std::byte>> chunks;
  chunks.reserve(tensors.size() + 1);
  chunks.emplace_back(reinterpret_cast<const std::byte*>(header.data()), header.size());
  for (const auto& [name, t] : tensors) chunks.push_back(t.bytes);
  write_file_atomic(path, chunks);
}

}  // namespace solo::io
