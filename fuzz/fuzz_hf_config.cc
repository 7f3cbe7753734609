// libFuzzer target: config.json text through parse_hf_config. A solo::Error is the expected
// answer to bad input; anything else (another exception, a crash, a sanitizer report) is a
// finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "solo/core/error.h"
#include "solo/io/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  solo::io::ModelConfig config;
  try {
    config = solo::io::parse_hf_config(text, "fuzz input");
  } catch (const solo::Error&) {
    return 0;
  }
  // An accepted config can be written out and parsed again; a failure here escapes as a
  // solo::Error and is reported.
  solo::io::parse_hf_config(solo::io::hf_config_json(config), "rewritten fuzz input");
  return 0;
}
