// Golden tests against Hugging Face transformers (tests/reference/make_golden.py wrote the
// files): a tiny Llama and a tiny GPT-2 give the reference logits and loss on a padded
// batch, every parameter gradient, and the losses of 10 AdamW steps. The checkpoints that
// transformers' save_pretrained wrote (an independent writer) load and give the same logits,
// and our save_pretrained round trip is bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "op_check.h"
#include "solo/backend/backend.h"
#include "solo/core/error.h"
#include "solo/io/safetensors.h"
#include "solo/models/gpt2.h"
#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"

namespace solo {
namespace {

namespace fs = std::filesystem;

// SOLO_SOURCE_DIR in the environment overrides the build-time path (a build run elsewhere).
const std::string kGolden =
    std::string(std::getenv("SOLO_SOURCE_DIR") ? std::getenv("SOLO_SOURCE_DIR") : SOLO_SOURCE_DIR) +
    "/tests/golden/";

std::vector<double> values(const io::RawTensor& raw) {
  std::vector<double> out(static_cast<size_t>(raw.shape.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (raw.dtype == DType::F32) {
      float f;
      std::memcpy(&f, raw.bytes.data() + 4 * i, 4);
      out[i] = f;
    } else if (raw.dtype == DType::F64) {
      std::memcpy(&out[i], raw.bytes.data() + 8 * i, 8);
    } else {
      int64_t v;
      std::memcpy(&v, raw.bytes.data() + 8 * i, 8);
      out[i] = static_cast<double>(v);
    }
  }
  return out;
}

Tensor tensor(const io::RawTensor& raw, const Device& d) {
  std::vector<unsigned char> bytes(raw.bytes.size());
  std::memcpy(bytes.data(), raw.bytes.data(), bytes.size());
  return Tensor::from_data(bytes.data(), raw.shape, raw.dtype, d);
}

// |got - want| <= atol + rtol * |want| everywhere; reports the worst element.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double rtol,
                  double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double excess = std::abs(got[i] - want[i]) - (atol + rtol * std::abs(want[i]));
    if (excess > worst) worst = excess, at = i;
  }
  EXPECT_LE(worst, 0.0) << what << ": element " << at << " is " << got[at] << ", reference "
                        << want[at] << " (rtol " << rtol << ", atol " << atol << ")";
}

template <class Model>
class GoldenModel : public ::testing::Test {
 public:
  static std::string name() {
    return std::is_same_v<Model, models::LlamaForCausalLM> ? "llama_tiny" : "gpt2_tiny";
  }
  void SetUp() override {
    golden_ = std::make_unique<io::SafetensorsFile>(
        io::SafetensorsFile::open(kGolden + name() + ".safetensors"));
    ASSERT_EQ(golden_->metadata().at("format_version"), "1");
  }
  // The model as transformers saved it (config.json + model.safetensors), and the batch, on d.
  std::shared_ptr<Model> load(const Device& d = {}) {
    ids_ = tensor(golden_->tensor("input_ids"), d);
    mask_ = tensor(golden_->tensor("attention_mask"), d);
    labels_ = tensor(golden_->tensor("labels"), d);
    return Model::from_pretrained(kGolden + name() + "_hf", d);
  }
  std::vector<double> ref(const std::string& t) { return values(golden_->tensor(t)); }

  std::unique_ptr<io::SafetensorsFile> golden_;

 public:
  Tensor ids_, mask_, labels_;
};

using Models = ::testing::Types<models::LlamaForCausalLM, models::Gpt2LMHeadModel>;
TYPED_TEST_SUITE(GoldenModel, Models);

// The bodies take the device so the same checks run on cpu and, when present, cuda.
template <class Fixture>
void check_logits(Fixture& f, const Device& d) {
  auto model = f.load(d);
  const auto out = model->forward(f.ids_, f.mask_, f.labels_);
  expect_close(out.logits.to_vector(), f.ref("logits"), 1e-4, 1e-5, "logits");
  expect_close(out.loss.to_vector(), f.ref("loss"), 1e-5, 0, "loss");
}

template <class Fixture>
void check_gradients(Fixture& f, const Device& d) {
  auto model = f.load(d);
  model->forward(f.ids_, f.mask_, f.labels_).loss.backward();
  int checked = 0;
  for (auto& [name, p] : model->named_parameters()) {
    ASSERT_TRUE(p->grad().defined()) << name;
    const std::vector<double> want = f.ref("grad." + name);
    double scale = 0;
    for (double w : want) scale = std::max(scale, std::abs(w));
    // Relative to the tensor's largest gradient: fp32 sums over the batch cancel.
    expect_close(p->grad().to_vector(), want, 1e-4, 1e-5 * scale, "grad." + name);
    ++checked;
  }
  EXPECT_GT(checked, 10);
}

template <class Fixture>
void check_adamw(Fixture& f, const Device& d) {
  auto model = f.load(d);
  optim::AdamW opt(model->parameters(),
                   {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
  std::vector<float> losses;
  for (int step = 0; step < 10; ++step) {
    opt.zero_grad();
    const Tensor loss = model->forward(f.ids_, f.mask_, f.labels_).loss;
    loss.backward();
    opt.step();  // flushes: the loss is computed with the step
    losses.push_back(static_cast<float>(loss.item()));
  }
  expect_close(losses, f.ref("adamw_losses"), 1e-4, 0, "AdamW losses");
}

TYPED_TEST(GoldenModel, LogitsAndLossMatchTransformers) {
  check_logits(*this, cpu_device());
}
TYPED_TEST(GoldenModel, EveryGradientMatchesTransformers) {
  check_gradients(*this, cpu_device());
}
TYPED_TEST(GoldenModel, TenAdamWStepsMatchTransformers) {
  check_adamw(*this, cpu_device());
}

TYPED_TEST(GoldenModel, CudaMatchesTransformers) {
  if (!test::backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  check_logits(*this, Device{"cuda"});
  check_gradients(*this, Device{"cuda"});
  check_adamw(*this, Device{"cuda"});
}

TYPED_TEST(GoldenModel, SavePretrainedRoundTripIsBitIdentical) {
  auto model = this->load();
  const fs::path dir = fs::temp_directory_path() / ("solo_roundtrip_" + this->name());
  fs::remove_all(dir);
  model->save_pretrained(dir.string());
  auto again = TypeParam::from_pretrained(dir.string());
  auto a = model->named_parameters(), b = again->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    std::vector<unsigned char> x(static_cast<size_t>(a[i].second->numel()) * 4), y(x.size());
    a[i].second->copy_to_host(x.data());
    b[i].second->copy_to_host(y.data());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << a[i].first;
  }
  fs::remove_all(dir);
}

// Llama variants (make_golden.py VARIANTS): each rope type, an explicit head_dim, biases with
// tied embeddings; the dynamic and llama3 configs use the transformers-4 spelling of the rope
// fields, the others the transformers-5 one. Then the Llama-shaped families Mistral, Qwen2
// (q/k/v biases) and Qwen3 (q/k norms). Same checks and tolerances as llama_tiny.
class GoldenLlamaVariant : public ::testing::TestWithParam<std::string> {
 public:
  void SetUp() override {
    golden_ = std::make_unique<io::SafetensorsFile>(
        io::SafetensorsFile::open(kGolden + GetParam() + ".safetensors"));
    ASSERT_EQ(golden_->metadata().at("format_version"), "1");
  }
  std::shared_ptr<models::LlamaForCausalLM> load(const Device& d = {}) {
    ids_ = tensor(golden_->tensor("input_ids"), d);
    mask_ = tensor(golden_->tensor("attention_mask"), d);
    labels_ = tensor(golden_->tensor("labels"), d);
    return models::LlamaForCausalLM::from_pretrained(kGolden + GetParam() + "_hf", d);
  }
  std::vector<double> ref(const std::string& t) { return values(golden_->tensor(t)); }

  std::unique_ptr<io::SafetensorsFile> golden_;
  Tensor ids_, mask_, labels_;
};

TEST_P(GoldenLlamaVariant, LogitsAndLossMatchTransformers) {
  check_logits(*this, cpu_device());
}
TEST_P(GoldenLlamaVariant, EveryGradientMatchesTransformers) {
  check_gradients(*this, cpu_device());
}
TEST_P(GoldenLlamaVariant, TenAdamWStepsMatchTransformers) {
  check_adamw(*this, cpu_device());
}
TEST_P(GoldenLlamaVariant, CudaMatchesTransformers) {
  if (!test::backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  check_logits(*this, Device{"cuda"});
  check_gradients(*this, Device{"cuda"});
  check_adamw(*this, Device{"cuda"});
}
// The config Solo writes (transformers-4 rope spelling) describes the same model.
TEST_P(GoldenLlamaVariant, SavePretrainedRoundTripKeepsTheConfig) {
  auto model = this->load();
  const fs::path dir = fs::temp_directory_path() / ("solo_roundtrip_" + GetParam());
  fs::remove_all(dir);
  model->save_pretrained(dir.string());
  auto again = models::LlamaForCausalLM::from_pretrained(dir.string());
  EXPECT_EQ(again->config().rope, model->config().rope);
  EXPECT_EQ(again->config().head_dim(), model->config().head_dim());
  EXPECT_EQ(again->config().attention_bias, model->config().attention_bias);
  EXPECT_EQ(again->config().mlp_bias, model->config().mlp_bias);
  const auto a = model->forward(ids_, mask_).logits.to_vector();
  const auto b = again->forward(ids_, mask_).logits.to_vector();
  EXPECT_EQ(a, b);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Variants, GoldenLlamaVariant,
                         ::testing::Values("llama_rope_linear", "llama_rope_dynamic",
                                           "llama_rope_llama3", "llama_rope_yarn",
                                           "llama_bias_head_dim", "mistral_tiny", "qwen2_tiny",
                                           "qwen3_tiny"));

// A copy of a golden checkpoint whose config.json is edited, in a fresh temporary directory.
fs::path edited_checkpoint(const std::string& name,
                           const std::function<void(std::string&)>& edit_config) {
  const fs::path dir = fs::temp_directory_path() / ("solo_edited_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(kGolden + name + "_hf/model.safetensors", dir / "model.safetensors");
  std::ifstream in(kGolden + name + "_hf/config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  edit_config(text);
  std::ofstream(dir / "config.json") << text;
  return dir;
}

std::string load_error(const fs::path& dir) {
  try {
    models::LlamaForCausalLM::from_pretrained(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void replace(std::string& text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
}

TEST(GoldenLlamaCheckpoint, UnusedTensorIsRefusedNamingIt) {
  // A checkpoint with biases read under a config without them would silently drop them.
  const fs::path dir = edited_checkpoint("llama_bias_head_dim", [](std::string& t) {
    replace(t, "\"attention_bias\": true", "\"attention_bias\": false");
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("has a tensor 'model.layers.0.self_attn."), std::string::npos) << msg;
  EXPECT_NE(msg.find(".bias' that the model does not use"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  fs::remove_all(dir);
}

// A weight stored as integers (same bytes, I32 for F32) would be read as nonsense floats:
// refused, naming the file and the tensor.
TEST(GoldenLlamaCheckpoint, NonFloatWeightIsRefusedNamingFileAndTensor) {
  const fs::path dir = edited_checkpoint("llama_rope_linear", [](std::string&) {});
  const std::string weights = (dir / "model.safetensors").string();
  const std::string tensor = "model.layers.0.mlp.up_proj.weight";
  std::vector<std::vector<std::byte>> kept;
  std::vector<std::pair<std::string, io::RawTensor>> tensors;
  {
    const auto file = io::SafetensorsFile::open(weights);
    ASSERT_TRUE(file.contains(tensor));
    kept.reserve(file.tensors().size());
    for (const auto& [name, raw] : file.tensors()) {
      kept.emplace_back(raw.bytes.begin(), raw.bytes.end());
      io::RawTensor copy{raw.dtype, raw.shape, kept.back()};
      if (name == tensor) {
        ASSERT_EQ(raw.dtype, DType::F32);
        copy.dtype = DType::I32;
      }
      tensors.emplace_back(name, copy);
    }
  }
  io::write_safetensors(weights, tensors);
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find(weights), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor '" + tensor + "' is stored as i32, not a float type"),
            std::string::npos)
      << msg;
  fs::remove_all(dir);
}

TEST(GoldenLlamaCheckpoint, UnknownArchitectureIsRefusedNamingIt) {
  const fs::path dir = edited_checkpoint("llama_rope_linear", [](std::string& t) {
    replace(t, "\"LlamaForCausalLM\"", "\"LlamaForSequenceClassification\"");
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("architectures entry 'LlamaForSequenceClassification' is not implemented"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("LlamaForCausalLM"), std::string::npos) << msg;
  fs::remove_all(dir);
}

// mistral_tiny's window (6) is shorter than its batch (16 tokens), so the golden checks above
// train past the window. Without the window (sliding_window null) the same weights give other
// logits; a window of at least the batch length is full causal attention.
TEST(GoldenLlamaCheckpoint, SlidingWindowMattersPastTheWindow) {
  const io::SafetensorsFile golden =
      io::SafetensorsFile::open(kGolden + "mistral_tiny.safetensors");
  const Tensor ids = tensor(golden.tensor("input_ids"), {});
  const Tensor mask = tensor(golden.tensor("attention_mask"), {});
  auto logits_with = [&](const std::string& window) {
    const fs::path dir = edited_checkpoint("mistral_tiny", [&](std::string& t) {
      replace(t, "\"sliding_window\": 6", "\"sliding_window\": " + window);
    });
    auto model = models::LlamaForCausalLM::from_pretrained(dir.string());
    model->eval();
    std::vector<float> out = model->forward(ids, mask).logits.to_vector();
    fs::remove_all(dir);
    return out;
  };
  const std::vector<float> full = logits_with("null"), wide = logits_with("16");
  EXPECT_EQ(full, wide);
  const std::vector<double> want = values(golden.tensor("logits"));
  ASSERT_EQ(full.size(), want.size());
  double most = 0;
  for (size_t i = 0; i < want.size(); ++i) most = std::max(most, std::abs(full[i] - want[i]));
  EXPECT_GT(most, 0.1) << "the window does not change the golden logits";
}

// Greedy generation re-runs the growing prefix: every prefix of row 0 (no padding), shorter
// and longer than the window, gives transformers' logits at its last position.
TEST(GoldenLlamaCheckpoint, PrefixesPastTheSlidingWindowMatchTransformers) {
  const io::SafetensorsFile golden =
      io::SafetensorsFile::open(kGolden + "mistral_tiny.safetensors");
  const std::vector<double> ids = values(golden.tensor("input_ids"));
  const std::vector<double> want = values(golden.tensor("logits"));  // [2, 16, V]
  auto model = models::LlamaForCausalLM::from_pretrained(kGolden + "mistral_tiny_hf");
  model->eval();
  ASSERT_EQ(model->config().sliding_window, 6);
  const int64_t T = 16, V = model->config().vocab_size;
  NoGradGuard no_grad;
  for (int64_t t = 1; t <= T; ++t) {
    SCOPED_TRACE(t);
    const std::vector<int64_t> prefix(ids.begin(), ids.begin() + t);
    const Tensor logits = model->forward(Tensor::from_vector(prefix, {1, t})).logits;
    const std::vector<float> last = slice(logits, 1, t - 1, t).to_vector();
    const auto at = want.begin() + (t - 1) * V;
    expect_close(last, std::vector<double>(at, at + V), 1e-4, 1e-5, "last logits");
  }
}

TEST(GoldenLlamaCheckpoint, UnknownRopeTypeIsRefusedNamingIt) {
  const fs::path dir = edited_checkpoint("llama_rope_linear", [](std::string& t) {
    replace(t, "\"rope_type\": \"linear\"", "\"rope_type\": \"longrope\"");
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("rope_type 'longrope' is not supported"), std::string::npos) << msg;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace solo
