// safetensors reading and writing: byte-exact round trips, the Hugging Face layout, files from
// an independent writer, one-line errors on corrupt files, and sharded checkpoints.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "solo/core/error.h"
#include "solo/io/checkpoint.h"
#include "solo/io/safetensors.h"
#include "temp_files.h"

namespace solo::io {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("solo_io_" + std::to_string(::getpid()) + "_" +
                                         info->test_suite_name() + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i, n >>= 8) s[static_cast<size_t>(i)] = static_cast<char>(n & 0xff);
  return s;
}

// A file made by hand: length prefix, header text (unpadded unless the caller pads), data.
std::string make_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// Deterministic bytes for a tensor; bools are 0/1 as real files hold them.
std::vector<std::byte> pattern(DType dtype, const Shape& shape, uint32_t seed) {
  std::vector<std::byte> b(raw_tensor_nbytes(dtype, shape));
  uint32_t x = seed * 2654435761u + 1;
  for (auto& v : b) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<std::byte>(dtype == DType::Bool ? (x >> 31) : (x >> 24));
  }
  return b;
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

template <class T>
T load(const RawTensor& t, size_t i) {
  T v;
  std::memcpy(&v, t.bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}

// Expects SafetensorsFile::open(path) to throw a solo::Error naming the file and `what`.
void expect_open_error(const std::string& path, const std::string& what) {
  try {
    SafetensorsFile::open(path);
    ADD_FAILURE() << "no error opening " << path << " (expected '" << what << "')";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

constexpr DType kAll[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                          DType::I32, DType::I64, DType::Bool};

TEST(Safetensors, DtypeNames) {
  for (DType t : kAll) EXPECT_EQ(dtype_from_safetensors(safetensors_dtype_name(t)), t);
  EXPECT_STREQ(safetensors_dtype_name(DType::Bool), "BOOL");
  EXPECT_THROW(dtype_from_safetensors("F8_E4M3"), Error);
}

TEST(Safetensors, RoundTripEveryDtypeBitIdentical) {
  TempDir dir;
  std::vector<std::vector<std::byte>> storage;
  std::vector<std::pair<std::string, RawTensor>> tensors;
  const Shape shapes[] = {{3, 5}, {}, {0, 4}, {7}};
  uint32_t seed = 0;
  for (DType t : kAll) {
    for (const Shape& s : shapes) {
      storage.push_back(pattern(t, s, ++seed));
      tensors.push_back({std::string(safetensors_dtype_name(t)) + "/" + s.str(),
                         RawTensor{t, s, storage.back()}});
    }
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "q\"uo\\te"}};
  const std::string path = dir.file("all.safetensors");
  write_safetensors(path, tensors, meta);
  EXPECT_TRUE(solo::test::temp_files_beside(path).empty());

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (const auto& [name, want] : tensors) {
    const RawTensor& got = f.tensor(name);
    EXPECT_EQ(got.dtype, want.dtype) << name;
    EXPECT_EQ(got.shape, want.shape) << name;
    EXPECT_TRUE(same_bytes(got.bytes, want.bytes)) << name;
  }
}

TEST(Safetensors, HeaderLayout) {
  TempDir dir;
  const auto a = pattern(DType::F32, {2, 3}, 1);
  const auto b = pattern(DType::BF16, {5}, 2);
  const auto c = pattern(DType::I64, {1}, 3);
  // Names out of alphabetical order: data must follow the given order.
  const std::vector<std::pair<std::string, RawTensor>> tensors = {
      {"z", {DType::F32, {2, 3}, a}}, {"b", {DType::BF16, {5}, b}}, {"a", {DType::I64, {1}, c}}};
  const std::string path = dir.file("layout.safetensors");
  write_safetensors(path, tensors);
  const std::string raw = read_all(path);

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(raw[static_cast<size_t>(i)]);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(raw.size(), 8 + n + 24 + 10 + 8);
  EXPECT_EQ(raw.substr(0, 8 + n), safetensors_header(tensors));
  const std::string header = raw.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));  // padding is spaces only
  EXPECT_EQ(header.find("__metadata__"), std::string::npos);   // empty metadata is omitted

  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["z"]["dtype"], "F32");
  EXPECT_EQ(j["z"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(j["z"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(j["b"]["dtype"], "BF16");
  EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json({24, 34}));
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json({34, 42}));
  EXPECT_EQ(std::memcmp(raw.data() + 8 + n, a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp(raw.data() + 8 + n + 24, b.data(), b.size()), 0);
  EXPECT_EQ(std::memcmp(raw.data() + 8 + n + 34, c.data(), c.size()), 0);
}

// Bytes written by the Hugging Face `safetensors` Python package (0.8.0, safetensors.numpy.save)
// for {"w": f32 [[1, -2.5, 3.25], [0.5, 0, -1]], "h": f16 [1.5, -0.25], "ids": i64 [7, -9],
// "m": bool [true, false, true], "i": i32 42}, metadata {"format": "pt"}. Note it orders the
// data by alignment, not as we would.
constexpr const char* kHfFixtureHex =
    "38010000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074227d2c22696473"
    "223a7b226474797065223a22493634222c227368617065223a5b325d2c22646174615f6f666673657473223a"
    "5b302c31365d7d2c2277223a7b226474797065223a22463332222c227368617065223a5b322c335d2c226461"
    "74615f6f666673657473223a5b31362c34305d7d2c2269223a7b226474797065223a22493332222c22736861"
    "7065223a5b5d2c22646174615f6f666673657473223a5b34302c34345d7d2c2268223a7b226474797065223a"
    "22463136222c227368617065223a5b325d2c22646174615f6f666673657473223a5b34342c34385d7d2c226d"
    "223a7b226474797065223a22424f4f4c222c227368617065223a5b335d2c22646174615f6f66667365747322"
    "3a5b34382c35315d7d7d20200700000000000000f7ffffffffffffff0000803f000020c0000050400000003f"
    "00000000000080bf2a000000003e00b4010001";

TEST(Safetensors, ReadsFileFromHuggingFaceWriter) {
  TempDir dir;
  const std::string path = dir.file("hf.safetensors");
  const std::string bytes = from_hex(kHfFixtureHex);
  ASSERT_EQ(bytes.size(), 371u);
  write_all(path, bytes);
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(f.tensors().size(), 5u);
  const RawTensor& w = f.tensor("w");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, Shape({2, 3}));
  const float want_w[] = {1.0f, -2.5f, 3.25f, 0.5f, 0.0f, -1.0f};
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(load<float>(w, i), want_w[i]);
  const RawTensor& h = f.tensor("h");
  EXPECT_EQ(h.dtype, DType::F16);
  EXPECT_EQ(load<uint16_t>(h, 0), 0x3e00u);  // 1.5
  EXPECT_EQ(load<uint16_t>(h, 1), 0xb400u);  // -0.25
  const RawTensor& ids = f.tensor("ids");
  EXPECT_EQ(ids.dtype, DType::I64);
  EXPECT_EQ(load<int64_t>(ids, 0), 7);
  EXPECT_EQ(load<int64_t>(ids, 1), -9);
  const RawTensor& m = f.tensor("m");
  EXPECT_EQ(m.dtype, DType::Bool);
  EXPECT_EQ(load<uint8_t>(m, 0), 1);
  EXPECT_EQ(load<uint8_t>(m, 1), 0);
  EXPECT_EQ(load<uint8_t>(m, 2), 1);
  const RawTensor& i = f.tensor("i");
  EXPECT_EQ(i.dtype, DType::I32);
  EXPECT_EQ(i.shape.rank(), 0);
  EXPECT_EQ(load<int32_t>(i, 0), 42);
}

TEST(Safetensors, ReadsHandBuiltFile) {
  TempDir dir;
  // Unpadded header, a gap between tensors and an empty tensor: legal for a reader to accept.
  const std::string header = R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
                             R"("e":{"dtype":"F64","shape":[0,3],"data_offsets":[4,4]},)"
                             R"("a":{"data_offsets":[0,4],"shape":[1],"dtype":"F32"}})";
  std::string data;
  data += std::string("\x00\x00\xc0\x3f", 4);  // f32 1.5
  data += std::string(4, '\x77');              // unused gap
  data += std::string("\x80\x3f\x00\xc0", 4);  // bf16 1.0, -2.0
  const std::string path = dir.file("hand.safetensors");
  write_all(path, make_file(header, data));
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_EQ(load<float>(f.tensor("a"), 0), 1.5f);
  EXPECT_EQ(f.tensor("b").dtype, DType::BF16);
  EXPECT_EQ(load<uint16_t>(f.tensor("b"), 0), 0x3f80u);
  EXPECT_EQ(load<uint16_t>(f.tensor("b"), 1), 0xc000u);
  EXPECT_EQ(f.tensor("e").shape, Shape({0, 3}));
  EXPECT_TRUE(f.tensor("e").bytes.empty());
  EXPECT_THROW(f.tensor("nope"), Error);
}

TEST(Safetensors, ParsesBytesInMemory) {
  // What SafetensorsFile::open does after mapping the file; the fuzz target calls it directly.
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string file = make_file(header, std::string("\x00\x00\xc0\x3f", 4));
  const SafetensorsContents c =
      parse_safetensors(std::as_bytes(std::span(file.data(), file.size())), "in memory");
  EXPECT_EQ(c.metadata.at("format"), "pt");
  ASSERT_EQ(c.tensors.count("a"), 1u);
  EXPECT_EQ(load<float>(c.tensors.at("a"), 0), 1.5f);
  EXPECT_EQ(c.tensors.at("a").bytes.data(), reinterpret_cast<const std::byte*>(file.data()) + 8 +
                                                header.size());  // points into the input
  try {
    parse_safetensors(std::as_bytes(std::span(file.data(), 7)), "in memory");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in memory: file is 7 bytes"), std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, CorruptFilesGiveErrorsNamingTheFile) {
  TempDir dir;
  int k = 0;
  auto check = [&](const std::string& bytes, const std::string& what) {
    const std::string path = dir.file("bad" + std::to_string(k++) + ".safetensors");
    write_all(path, bytes);
    SCOPED_TRACE(what);
    expect_open_error(path, what);
  };
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data8(8, '\0');

  check("", "shorter than the 8-byte header length");
  check("\x01\x02\x03", "shorter than the 8-byte header length");
  check(le64(1000) + "{}", "exceeds the file size");
  check(le64(~0ull) + "{}", "exceeds the file size");
  check(make_file("", ""), "not a JSON object");
  check(make_file("{\"a\": [1, 2", ""), "not valid JSON");
  check(make_file("{\"a\":1} trailing", ""), "not valid JSON");
  check(make_file("[1,2]   ", ""), "not a JSON object");
  check(make_file("{\"a\":5}", ""), "entry is not a JSON object");
  check(make_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", data8), "missing \"dtype\"");
  check(make_file(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", data8),
        "\"dtype\" is not a string");
  check(make_file(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", data8),
        "unsupported dtype 'Q4'");
  check(make_file(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", data8),
        "unsupported dtype 'U8'");
  check(make_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", data8), "missing \"shape\"");
  check(make_file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data8),
        "\"shape\" is not an array");
  check(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
        "not a list of non-negative integers");
  check(make_file(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data8),
        "not a list of non-negative integers");
  check(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                  data8),
        "too large");
  check(make_file(R"({"a":{"dtype":"F32","shape":[2]}})", data8), "missing \"data_offsets\"");
  check(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8),
        "is not [begin, end]");
  check(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", data8),
        "is not [begin, end]");
  check(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8),
        "begin > end");
  check(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", data8), "needs 8");
  check(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data8),
        "run past the end of the data section");
  check(make_file("{" + ok_entry + R"(,"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
                  data8),
        "overlap");
  check(make_file(R"({"__metadata__":{"k":1}})", ""), "is not a string");
  check(make_file(R"({"__metadata__":[]})", ""), "\"__metadata__\" is not a JSON object");
  check(make_file("{" + ok_entry + "}", data8.substr(0, 5)), "truncated");
  // The format forbids a name given twice (a JSON parser would silently keep one).
  check(make_file("{" + ok_entry + "," + ok_entry + "}", data8), "key 'a' appears twice");
  // A name from the file is quoted with its control characters escaped.
  check(make_file(R"({"a\u001b[2Jb\n":5})", ""), "tensor 'a\\x1b[2Jb\\n'");

  // A valid file cut short anywhere fails cleanly.
  const auto a = pattern(DType::F32, {4, 4}, 9);
  const std::string good = dir.file("good.safetensors");
  write_safetensors(good, {{"w", {DType::F32, {4, 4}, a}}});
  const std::string raw = read_all(good);
  for (size_t len : {size_t{0}, size_t{7}, size_t{8}, size_t{20}, raw.size() - 1}) {
    const std::string path = dir.file("cut" + std::to_string(len) + ".safetensors");
    write_all(path, raw.substr(0, len));
    EXPECT_THROW(SafetensorsFile::open(path), Error) << len;
  }
  expect_open_error(dir.file("missing.safetensors"), "cannot open");
}

// Every single-byte corruption of a small file either still parses or gives solo::Error:
// never a crash or another exception type.
TEST(Safetensors, ByteCorruptionNeverCrashes) {
  TempDir dir;
  const auto a = pattern(DType::F16, {3}, 1);
  const auto b = pattern(DType::I32, {2}, 2);
  const std::string good = dir.file("good.safetensors");
  write_safetensors(good, {{"a", {DType::F16, {3}, a}}, {"b", {DType::I32, {2}, b}}}, {{"k", "v"}});
  const std::string raw = read_all(good);
  const std::string path = dir.file("mutant.safetensors");
  int errors = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    for (char c : {'\0', '\xff', '"', '9', '-', '}'}) {
      std::string m = raw;
      if (m[i] == c) continue;
      m[i] = c;
      write_all(path, m);
      try {
        SafetensorsFile::open(path);
      } catch (const Error&) {
        ++errors;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " = " << int(c) << ": non-solo exception " << e.what();
      }
    }
  }
  EXPECT_GT(errors, 0);
}

TEST(Safetensors, WriterRejectsBadInputAndLeavesNoFile) {
  TempDir dir;
  const auto a = pattern(DType::F32, {2}, 1);
  const std::string path = dir.file("w.safetensors");
  EXPECT_THROW(write_safetensors(path, {{"a", {DType::F32, {3}, a}}}), Error);  // size mismatch
  EXPECT_THROW(write_safetensors(path, {{"a", {DType::F32, {2}, a}}, {"a", {DType::F32, {2}, a}}}),
               Error);
  EXPECT_THROW(write_safetensors(path, {{"__metadata__", {DType::F32, {2}, a}}}), Error);
  EXPECT_THROW(write_safetensors(dir.file("no/such/dir.safetensors"), {}), Error);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(solo::test::temp_files_beside(path).empty());

  // Overwriting replaces the file whole.
  write_safetensors(path, {{"a", {DType::F32, {2}, a}}});
  write_safetensors(path, {});
  EXPECT_TRUE(SafetensorsFile::open(path).tensors().empty());
  EXPECT_EQ(read_all(path), le64(8) + "{}      ");
}

// ---- sharded checkpoints ----------------------------------------------------------------

struct Tensors {
  std::vector<std::vector<std::byte>> storage;
  std::vector<std::pair<std::string, RawTensor>> list;
  void add(const std::string& name, DType t, Shape s) {
    storage.push_back(pattern(t, s, static_cast<uint32_t>(list.size() + 1)));
    list.push_back({name, {t, std::move(s), storage.back()}});
  }
};

Tensors sample() {
  Tensors t;
  t.storage.reserve(8);
  t.add("model.embed_tokens.weight", DType::BF16, {32, 16});  // 1024 bytes
  t.add("model.layers.0.w", DType::F32, {16, 16});            // 1024
  t.add("model.layers.0.norm", DType::F32, {16});             // 64
  t.add("model.layers.1.w", DType::F32, {16, 40});            // 2560: bigger than a shard
  t.add("model.norm.weight", DType::F16, {16});               // 32
  t.add("lm_head.step", DType::I64, {});                      // 8
  return t;
}

void expect_same(const SafetensorsCheckpoint& c, const Tensors& t) {
  ASSERT_EQ(c.tensors().size(), t.list.size());
  for (const auto& [name, want] : t.list) {
    const RawTensor& got = c.tensor(name);
    EXPECT_EQ(got.dtype, want.dtype) << name;
    EXPECT_EQ(got.shape, want.shape) << name;
    EXPECT_TRUE(same_bytes(got.bytes, want.bytes)) << name;
  }
}

TEST(SafetensorsCheckpoint, ShardedWriteThenOpen) {
  TempDir dir;
  const Tensors t = sample();
  const auto written = write_sharded(dir.path().string(), t.list, 2048);
  const std::vector<std::string> want_files = {
      "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
      "model.safetensors.index.json"};
  EXPECT_EQ(written, want_files);
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors")));

  const auto index = nlohmann::json::parse(read_all(dir.file("model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"], 1024 + 1024 + 64 + 2560 + 32 + 8);
  // Greedy in the given order: 1024 + 1024 fill shard 1; the 2560-byte tensor is over the limit
  // and gets shard 3 to itself.
  const auto shard_of = [&](const char* name) {
    return index["weight_map"][name].get<std::string>();
  };
  EXPECT_EQ(shard_of("model.embed_tokens.weight"), want_files[0]);
  EXPECT_EQ(shard_of("model.layers.0.w"), want_files[0]);
  EXPECT_EQ(shard_of("model.layers.0.norm"), want_files[1]);
  EXPECT_EQ(shard_of("model.layers.1.w"), want_files[2]);
  EXPECT_EQ(shard_of("model.norm.weight"), want_files[3]);
  EXPECT_EQ(shard_of("lm_head.step"), want_files[3]);
  EXPECT_EQ(index["weight_map"].size(), t.list.size());

  const SafetensorsFile shard1 = SafetensorsFile::open(dir.file(want_files[0]));
  EXPECT_EQ(shard1.metadata().at("format"), "pt");
  EXPECT_EQ(shard1.tensors().size(), 2u);

  const SafetensorsCheckpoint c = SafetensorsCheckpoint::open(dir.path().string());
  EXPECT_EQ(c.files().size(), 4u);
  expect_same(c, t);
  EXPECT_THROW(c.tensor("nope"), Error);
}

TEST(SafetensorsCheckpoint, SingleFileWhenItFitsAndStaleFilesRemoved) {
  TempDir dir;
  const Tensors t = sample();
  write_sharded(dir.path().string(), t.list, 1024);
  EXPECT_TRUE(fs::exists(dir.file("model.safetensors.index.json")));
  const auto written = write_sharded(dir.path().string(), t.list, 1 << 20);
  EXPECT_EQ(written, std::vector<std::string>{"model.safetensors"});
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"model.safetensors"});
  const SafetensorsCheckpoint c = SafetensorsCheckpoint::open(dir.path().string());
  expect_same(c, t);
  expect_same(SafetensorsCheckpoint::open(dir.file("model.safetensors")), t);
}

TEST(SafetensorsCheckpoint, MissingShardOrTensorIsAnError) {
  TempDir dir;
  const Tensors t = sample();
  write_sharded(dir.path().string(), t.list, 2048);
  const std::string index_path = dir.file("model.safetensors.index.json");
  const std::string index_text = read_all(index_path);

  auto expect_error = [&](const std::string& what) {
    try {
      SafetensorsCheckpoint::open(dir.path().string());
      ADD_FAILURE() << "no error (expected '" << what << "')";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(index_path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };

  auto index = nlohmann::json::parse(index_text);
  index["weight_map"]["extra.weight"] = "model-00002-of-00004.safetensors";
  write_all(index_path, index.dump());
  expect_error("tensor 'extra.weight' is mapped to shard 'model-00002-of-00004.safetensors'");

  index = nlohmann::json::parse(index_text);
  index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  write_all(index_path, index.dump());
  expect_error("is not a file name inside the directory");

  write_all(index_path, "{\"weight_map\": ");
  expect_error("not valid JSON");
  write_all(index_path, "{}");
  expect_error("missing \"weight_map\"");

  write_all(index_path, index_text);
  fs::remove(dir.file("model-00002-of-00004.safetensors"));
  expect_error("shard 'model-00002-of-00004.safetensors' named in weight_map is missing");

  const fs::path empty = dir.path() / "empty";
  fs::create_directories(empty);
  EXPECT_THROW(SafetensorsCheckpoint::open(empty.string()), Error);
}

}  // namespace
}  // namespace solo::io
