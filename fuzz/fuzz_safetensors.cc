// libFuzzer target: a safetensors file's bytes through the parser SafetensorsFile::open uses.
// A solo::Error is the expected answer to bad input; anything else (another exception, a crash,
// a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "solo/core/error.h"
#include "solo/io/safetensors.h"

using solo::io::RawTensor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  solo::io::SafetensorsContents c;
  try {
    c = solo::io::parse_safetensors(file, "fuzz input");
  } catch (const solo::Error&) {
    return 0;
  }
  // Every accepted tensor lies inside the input: touch its ends so ASan checks the spans.
  volatile std::byte sink{};
  std::vector<std::pair<std::string, RawTensor>> listed;
  for (const auto& [name, t] : c.tensors) {
    if (solo::io::raw_tensor_nbytes(t.dtype, t.shape) != t.bytes.size()) std::abort();
    if (!t.bytes.empty()) sink = t.bytes.front() ^ t.bytes.back();
    listed.emplace_back(name, t);
  }
  (void)sink;
  // What was read can be written back, and reads back the same.
  std::string again = solo::io::safetensors_header(listed, c.metadata);
  for (const auto& [name, t] : listed)
    again.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  const solo::io::SafetensorsContents r = solo::io::parse_safetensors(
      std::as_bytes(std::span(again.data(), again.size())), "rewritten fuzz input");
  if (r.metadata != c.metadata || r.tensors.size() != c.tensors.size()) std::abort();
  for (const auto& [name, t] : c.tensors) {
    const RawTensor& u = r.tensors.at(name);
    if (u.dtype != t.dtype || u.shape != t.shape) std::abort();
  }
  return 0;
}
