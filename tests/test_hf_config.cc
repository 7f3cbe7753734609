// Hugging Face config.json for Llama and GPT-2: real configs parse, defaults apply, bad configs
// give one-line errors naming the file and field, and written configs parse back the same.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "solo/core/error.h"
#include "solo/io/hf_config.h"
#include "temp_files.h"

namespace solo::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// meta-llama/Llama-2-7b-hf config.json.
constexpr const char* kLlama2_7B = R"({
  "architectures": [
    "LlamaForCausalLM"
  ],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
}
)";

// openai-community/gpt2 config.json.
constexpr const char* kGpt2 = R"({
  "activation_function": "gelu_new",
  "architectures": [
    "GPT2LMHeadModel"
  ],
  "attn_pdrop": 0.1,
  "bos_token_id": 50256,
  "embd_pdrop": 0.1,
  "eos_token_id": 50256,
  "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05,
  "model_type": "gpt2",
  "n_ctx": 1024,
  "n_embd": 768,
  "n_head": 12,
  "n_layer": 12,
  "n_positions": 1024,
  "resid_pdrop": 0.1,
  "summary_activation": null,
  "summary_first_dropout": 0.1,
  "summary_proj_to_labels": true,
  "summary_type": "cls_index",
  "summary_use_proj": true,
  "task_specific_params": {
    "text-generation": {
      "do_sample": true,
      "max_length": 50
    }
  },
  "vocab_size": 50257
}
)";

constexpr const char* kSource = "/x/config.json";

json edited(const char* text, const std::function<void(json&)>& edit) {
  json j = json::parse(text);
  edit(j);
  return j;
}

// Expects parsing to fail with a one-line solo::Error containing `what` and naming the file.
void expect_parse_error(const json& j, const std::string& what) {
  try {
    parse_hf_config(j.dump(2), kSource);
    ADD_FAILURE() << "no error (expected '" << what << "')";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("config.json at /x/config.json: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("solo_hfcfg_" + std::to_string(::getpid()) + "_" +
                                         info->test_suite_name() + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A key given twice would be read as one of its values, silently: refused, naming it.
TEST(HfConfig, RepeatedKeyIsRefused) {
  try {
    parse_hf_config(R"({"model_type": "llama", "rope_theta": 10000, "rope_theta": 500000})",
                    kSource);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("key 'rope_theta' appears twice"), std::string::npos) << msg;
    EXPECT_NE(msg.find("/x/config.json"), std::string::npos) << msg;
  }
}

TEST(HfConfig, ParsesLlama2_7B) {
  const ModelConfig mc = parse_hf_config(kLlama2_7B, kSource);
  ASSERT_TRUE(std::holds_alternative<LlamaConfig>(mc));
  const auto& c = std::get<LlamaConfig>(mc);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);  // absent: default
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "float16");
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_EQ(c.head_dim(), 128);
}

TEST(HfConfig, LlamaDefaults) {
  const json j = edited(kLlama2_7B, [](json& j) {
    for (const char* k : {"num_key_value_heads", "tie_word_embeddings", "torch_dtype",
                          "bos_token_id", "eos_token_id", "hidden_act"})
      j.erase(k);
    j["pad_token_id"] = nullptr;
  });
  const auto c = std::get<LlamaConfig>(parse_hf_config(j.dump(), kSource));
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.torch_dtype.has_value());
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_FALSE(c.pad_token_id.has_value());
}

TEST(HfConfig, Llama3GroupedQueryAndEosList) {
  const json j = edited(kLlama2_7B, [](json& j) {
    j["num_key_value_heads"] = 8;
    j["rope_theta"] = 500000.0;
    j["vocab_size"] = 128256;
    j["eos_token_id"] = {128001, 128008, 128009};
    j["torch_dtype"] = "bfloat16";
  });
  const auto c = std::get<LlamaConfig>(parse_hf_config(j.dump(), kSource));
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  // An integer is accepted where a float is expected.
  const json k = edited(kLlama2_7B, [](json& j) { j["rope_theta"] = 10000; });
  EXPECT_DOUBLE_EQ(std::get<LlamaConfig>(parse_hf_config(k.dump(), kSource)).rope.theta, 1e4);
}

TEST(HfConfig, ParsesGpt2WithDefaults) {
  const auto c = std::get<Gpt2Config>(parse_hf_config(kGpt2, kSource));
  EXPECT_EQ(c.n_embd, 768);
  EXPECT_EQ(c.n_layer, 12);
  EXPECT_EQ(c.n_head, 12);
  EXPECT_EQ(c.n_positions, 1024);
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
  EXPECT_EQ(c.activation_function, "gelu_new");
  EXPECT_TRUE(c.tie_word_embeddings);  // absent: GPT-2 ties by default
  EXPECT_FALSE(c.n_inner.has_value());
  EXPECT_EQ(c.mlp_width(), 3072);
  EXPECT_EQ(c.head_dim(), 64);
  EXPECT_EQ(c.bos_token_id, 50256);
  EXPECT_EQ(c.eos_token_id, 50256);

  const json j = edited(kGpt2, [](json& j) {
    j.erase("activation_function");
    j.erase("layer_norm_epsilon");
    j["n_inner"] = 1000;
    j["tie_word_embeddings"] = false;
  });
  const auto d = std::get<Gpt2Config>(parse_hf_config(j.dump(), kSource));
  EXPECT_EQ(d.activation_function, "gelu_new");
  EXPECT_DOUBLE_EQ(d.layer_norm_epsilon, 1e-5);
  EXPECT_EQ(d.mlp_width(), 1000);
  EXPECT_FALSE(d.tie_word_embeddings);
}

TEST(HfConfig, MissingFieldErrors) {
  try {
    parse_hf_config(edited(kLlama2_7B, [](json& j) { j.erase("hidden_size"); }).dump(), kSource);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "config.json at /x/config.json: field 'hidden_size' is missing (required for a "
                 "llama model)");
  }
  for (const char* k : {"intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "vocab_size", "max_position_embeddings", "rms_norm_eps"}) {
    SCOPED_TRACE(k);
    expect_parse_error(edited(kLlama2_7B, [&](json& j) { j.erase(k); }),
                       std::string("field '") + k + "' is missing (required for a llama model)");
  }
  for (const char* k : {"n_embd", "n_layer", "n_head", "n_positions", "vocab_size"}) {
    SCOPED_TRACE(k);
    expect_parse_error(edited(kGpt2, [&](json& j) { j.erase(k); }),
                       std::string("field '") + k + "' is missing (required for a gpt2 model)");
  }
  expect_parse_error(edited(kGpt2, [](json& j) { j["n_embd"] = nullptr; }),
                     "field 'n_embd' is missing");
}

TEST(HfConfig, WrongTypeErrors) {
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["hidden_size"] = "4096"; }),
                     "field 'hidden_size' must be an integer, got string \"4096\"");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["num_hidden_layers"] = 32.0; }),
                     "field 'num_hidden_layers' must be an integer, got number");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["rms_norm_eps"] = "1e-5"; }),
                     "field 'rms_norm_eps' must be a number");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["tie_word_embeddings"] = "false"; }),
                     "field 'tie_word_embeddings' must be a boolean");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["torch_dtype"] = 16; }),
                     "field 'torch_dtype' must be a string");
  expect_parse_error(edited(kLlama2_7B,
                            [](json& j) {
                              j["eos_token_id"] = {2, "x"};
                            }),
                     "field 'eos_token_id' must be an integer or a list of integers");
  expect_parse_error(edited(kGpt2, [](json& j) { j["activation_function"] = 1; }),
                     "field 'activation_function' must be a string");
  expect_parse_error(edited(kGpt2, [](json& j) { j["n_head"] = json::array({12}); }),
                     "field 'n_head' must be an integer, got array");
  expect_parse_error(edited(kGpt2, [](json& j) { j["model_type"] = 2; }),
                     "field 'model_type' must be a string");
}

TEST(HfConfig, UnsupportedAndInvalidConfigs) {
  expect_parse_error(
      edited(kLlama2_7B, [](json& j) { j["model_type"] = "gemma"; }),
      "model_type 'gemma' is not supported (supported: llama, mistral, qwen2, qwen3, gpt2)");
  expect_parse_error(
      edited(kLlama2_7B, [](json& j) { j.erase("model_type"); }),
      "field 'model_type' is missing (supported: llama, mistral, qwen2, qwen3, gpt2)");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["num_attention_heads"] = 30; }),
                     "hidden_size 4096 is not divisible by num_attention_heads 30");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["num_key_value_heads"] = 5; }),
                     "num_attention_heads 32 is not divisible by num_key_value_heads 5");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["num_key_value_heads"] = 0; }),
                     "field 'num_key_value_heads' must be positive, got 0");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["vocab_size"] = -1; }),
                     "field 'vocab_size' must be positive, got -1");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["hidden_act"] = "gelu"; }),
                     "field 'hidden_act' is 'gelu' but only 'silu' is supported");
  expect_parse_error(edited(kGpt2, [](json& j) { j["n_head"] = 10; }),
                     "n_embd 768 is not divisible by n_head 10");
  expect_parse_error(json::array({1, 2}), "not a JSON object");
  try {
    parse_hf_config("{\"model_type\": \"llama\",", kSource);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json at /x/config.json: not valid JSON"),
              std::string::npos)
        << e.what();
  }
}

// A config built in code with only the sizes set writes a config.json that parses back:
// rms_norm_eps defaults to transformers' 1e-6, not to a value parsing refuses.
TEST(HfConfig, SizesOnlyLlamaConfigRoundTrips) {
  LlamaConfig l;
  l.hidden_size = 64;
  l.intermediate_size = 128;
  l.num_hidden_layers = 2;
  l.num_attention_heads = 4;
  l.num_key_value_heads = 4;
  l.vocab_size = 100;
  l.max_position_embeddings = 32;
  const auto back = std::get<LlamaConfig>(parse_hf_config(hf_config_json(l), kSource));
  EXPECT_EQ(back.rms_norm_eps, 1e-6);
  EXPECT_EQ(back.hidden_size, 64);
}

TEST(HfConfig, WriteThenParseRoundTrip) {
  TempDir dir;
  LlamaConfig l = std::get<LlamaConfig>(parse_hf_config(kLlama2_7B, kSource));
  l.num_key_value_heads = 8;
  l.rope.theta = 500000.0;
  l.rms_norm_eps = 1e-6;
  l.tie_word_embeddings = true;
  l.eos_token_ids = {128001, 128009};
  l.pad_token_id = 0;
  write_hf_config(dir.path().string(), l);  // a directory: writes config.json in it
  const fs::path file = dir.path() / "config.json";
  ASSERT_TRUE(fs::exists(file));
  EXPECT_TRUE(solo::test::temp_files_beside(file).empty());
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  const json j = json::parse(text.str());
  EXPECT_EQ(j["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["hidden_size"], 4096);
  EXPECT_EQ(j["rope_theta"], 500000.0);

  const auto l2 = std::get<LlamaConfig>(load_hf_config(dir.path().string()));
  EXPECT_EQ(l2.hidden_size, l.hidden_size);
  EXPECT_EQ(l2.intermediate_size, l.intermediate_size);
  EXPECT_EQ(l2.num_hidden_layers, l.num_hidden_layers);
  EXPECT_EQ(l2.num_attention_heads, l.num_attention_heads);
  EXPECT_EQ(l2.num_key_value_heads, 8);
  EXPECT_EQ(l2.vocab_size, l.vocab_size);
  EXPECT_EQ(l2.max_position_embeddings, l.max_position_embeddings);
  EXPECT_EQ(l2.rms_norm_eps, 1e-6);  // exact: the writer prints doubles round-trippably
  EXPECT_EQ(l2.rope.theta, 500000.0);
  EXPECT_TRUE(l2.tie_word_embeddings);
  EXPECT_EQ(l2.torch_dtype, "float16");
  EXPECT_EQ(l2.bos_token_id, 1);
  EXPECT_EQ(l2.eos_token_ids, l.eos_token_ids);
  EXPECT_EQ(l2.pad_token_id, 0);

  Gpt2Config g = std::get<Gpt2Config>(parse_hf_config(kGpt2, kSource));
  g.n_inner = 2048;
  g.layer_norm_epsilon = 1e-6;
  const std::string gfile = (dir.path() / "gpt2.json").string();
  write_hf_config(gfile, g);
  const auto g2 = std::get<Gpt2Config>(load_hf_config(gfile));
  EXPECT_EQ(json::parse(hf_config_json(g))["architectures"], json::array({"GPT2LMHeadModel"}));
  EXPECT_EQ(g2.n_embd, g.n_embd);
  EXPECT_EQ(g2.n_layer, g.n_layer);
  EXPECT_EQ(g2.n_head, g.n_head);
  EXPECT_EQ(g2.n_positions, g.n_positions);
  EXPECT_EQ(g2.vocab_size, g.vocab_size);
  EXPECT_EQ(g2.layer_norm_epsilon, 1e-6);
  EXPECT_EQ(g2.activation_function, "gelu_new");
  EXPECT_EQ(g2.n_inner, 2048);
  EXPECT_TRUE(g2.tie_word_embeddings);
  EXPECT_EQ(g2.bos_token_id, 50256);
  EXPECT_EQ(g2.eos_token_id, 50256);

  // Invalid configs are refused before anything is written.
  g.n_head = 7;
  EXPECT_THROW(write_hf_config((dir.path() / "bad.json").string(), g), Error);
  EXPECT_FALSE(fs::exists(dir.path() / "bad.json"));
}

// meta-llama/Llama-3.1-8B's rope fields, in the transformers-4 spelling it ships with.
TEST(HfConfig, RopeScalingTransformers4Spelling) {
  const json j = edited(kLlama2_7B, [](json& j) {
    j["rope_theta"] = 500000.0;
    j["rope_scaling"] = {{"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
  });
  const auto c = std::get<LlamaConfig>(parse_hf_config(j.dump(), kSource));
  EXPECT_EQ(c.rope, (RopeScaling{.type = RopeType::Llama3,
                                 .theta = 500000.0,
                                 .factor = 8.0,
                                 .original_max_position_embeddings = 8192,
                                 .low_freq_factor = 1.0,
                                 .high_freq_factor = 4.0}));
  // The legacy "type" key; dynamic grows past max_position_embeddings.
  const json k = edited(kLlama2_7B, [](json& j) {
    j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2}};
  });
  const auto d = std::get<LlamaConfig>(parse_hf_config(k.dump(), kSource));
  EXPECT_EQ(d.rope.type, RopeType::Dynamic);
  EXPECT_EQ(d.rope.factor, 2.0);
  EXPECT_EQ(d.rope.original_max_position_embeddings, 4096);
}

TEST(HfConfig, RopeParametersTransformers5Spelling) {
  // No top-level rope_theta: the one inside rope_parameters must be used, not 10000.
  const json j = edited(kLlama2_7B, [](json& j) {
    j["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "default"}};
  });
  const auto c = std::get<LlamaConfig>(parse_hf_config(j.dump(), kSource));
  EXPECT_EQ(c.rope, RopeScaling{.theta = 500000.0});
  const json y = edited(kLlama2_7B, [](json& j) {
    j["max_position_embeddings"] = 32768;
    j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "yarn"},
                            {"factor", 4.0},     {"original_max_position_embeddings", 8192},
                            {"mscale", 0.707},   {"mscale_all_dim", 1.0},
                            {"beta_fast", 16},   {"truncate", false}};
  });
  const auto r = std::get<LlamaConfig>(parse_hf_config(y.dump(), kSource)).rope;
  EXPECT_EQ(r.type, RopeType::Yarn);
  EXPECT_EQ(r.theta, 1e6);
  EXPECT_EQ(r.original_max_position_embeddings, 8192);
  EXPECT_EQ(r.beta_fast, 16.0);
  EXPECT_EQ(r.beta_slow, 1.0);  // absent: the paper's default
  EXPECT_FALSE(r.truncate);
  EXPECT_NEAR(r.attention_factor, 0.964326914892074, 1e-15);  // transformers' value
  // An explicit attention_factor wins; a null factor is max_position / original.
  const json z = edited(y.dump().c_str(), [](json& j) {
    j["rope_parameters"]["attention_factor"] = 1.5;
    j["rope_parameters"]["factor"] = nullptr;
  });
  const auto q = std::get<LlamaConfig>(parse_hf_config(z.dump(), kSource)).rope;
  EXPECT_EQ(q.attention_factor, 1.5);
  EXPECT_EQ(q.factor, 4.0);
  // rope_scaling wins over rope_parameters, as in transformers.
  const json w = edited(kLlama2_7B, [](json& j) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
    j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 3.0}};
  });
  EXPECT_EQ(std::get<LlamaConfig>(parse_hf_config(w.dump(), kSource)).rope.factor, 2.0);
}

TEST(HfConfig, RopeErrorsNameTheField) {
  expect_parse_error(edited(kLlama2_7B,
                            [](json& j) {
                              j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
                            }),
                     "rope_scaling: rope_type 'longrope' is not supported (supported: default, "
                     "linear, dynamic, llama3, yarn)");
  expect_parse_error(
      edited(kLlama2_7B,
             [](json& j) {
               j["rope_parameters"] = {{"rope_type", "linear"}};
             }),
      "rope_parameters: field 'factor' is missing (required for rope_type 'linear')");
  expect_parse_error(edited(kLlama2_7B,
                            [](json& j) {
                              j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
                            }),
                     "field 'low_freq_factor' is missing (required for rope_type 'llama3')");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["partial_rotary_factor"] = 0.5; }),
                     "field 'partial_rotary_factor' is 0.5");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["rope_scaling"] = "linear"; }),
                     "field 'rope_scaling' must be an object");
  expect_parse_error(edited(kLlama2_7B,
                            [](json& j) {
                              j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -1.0}};
                            }),
                     "rope scaling 'factor' must be positive, got -1");
  expect_parse_error(
      edited(kLlama2_7B,
             [](json& j) {
               j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}}};
             }),
      "per-layer rope parameters ('full_attention')");
}

TEST(HfConfig, HeadDimBiasesAndRefusedFields) {
  const json j = edited(kLlama2_7B, [](json& j) {
    j["head_dim"] = 256;
    j["attention_bias"] = true;
    j["mlp_bias"] = true;
    j["hidden_act"] = "swish";
    j.erase("torch_dtype");
    j["dtype"] = "bfloat16";
  });
  const auto c = std::get<LlamaConfig>(parse_hf_config(j.dump(), kSource));
  EXPECT_EQ(c.head_dim(), 256);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.mlp_bias);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  // With an explicit head_dim, hidden_size need not divide into the heads.
  const json odd = edited(j.dump().c_str(), [](json& j) {
    j["num_attention_heads"] = 48;  // 4096 / 48 is not whole
    j["num_key_value_heads"] = 16;
  });
  EXPECT_EQ(std::get<LlamaConfig>(parse_hf_config(odd.dump(), kSource)).head_dim(), 256);

  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["head_dim"] = 7; }),
                     "field 'head_dim' must be positive and even");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["attention_dropout"] = 1.5; }),
                     "field 'attention_dropout' must be in [0, 1), got 1.5");
  expect_parse_error(edited(kLlama2_7B,
                            [](json& j) {
                              j["quantization_config"] = {{"quant_method", "gptq"}};
                            }),
                     "field 'quantization_config' is set");
  expect_parse_error(
      edited(kLlama2_7B, [](json& j) { j["architectures"] = {"LlamaForSequenceClassification"}; }),
      "architectures entry 'LlamaForSequenceClassification' is not implemented "
      "(Solo implements, by model_type: llama LlamaForCausalLM, mistral MistralForCausalLM, "
      "qwen2 Qwen2ForCausalLM, qwen3 Qwen3ForCausalLM, gpt2 GPT2LMHeadModel)");
  expect_parse_error(edited(kGpt2, [](json& j) { j["architectures"] = {"GPT2Model"}; }),
                     "architectures entry 'GPT2Model' is not implemented");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["architectures"] = "LlamaForCausalLM"; }),
                     "field 'architectures' must be a list of strings");
}

// The Llama-shaped families with their transformers defaults.
TEST(HfConfig, MistralQwen2Qwen3) {
  const auto family = [](const char* type, const std::function<void(json&)>& edit) {
    const json j = edited(kLlama2_7B, [&](json& j) {
      j["model_type"] = type;
      j.erase("architectures");
      edit(j);
    });
    return std::get<LlamaConfig>(parse_hf_config(j.dump(), kSource));
  };
  const auto m = family("mistral", [](json& j) {
    j.erase("num_key_value_heads");
    j["mlp_bias"] = true;  // not a MistralConfig field: ignored, as transformers does
  });
  EXPECT_EQ(m.model_type, "mistral");
  EXPECT_EQ(m.num_key_value_heads, 8);
  EXPECT_EQ(m.sliding_window, 4096);
  EXPECT_FALSE(m.mlp_bias);
  EXPECT_FALSE(family("mistral", [](json& j) { j["sliding_window"] = nullptr; }).sliding_window);
  EXPECT_EQ(json::parse(hf_config_json(m))["architectures"], json::array({"MistralForCausalLM"}));
  EXPECT_EQ(std::get<LlamaConfig>(parse_hf_config(hf_config_json(m), kSource)).sliding_window,
            4096);

  const auto q2 = family("qwen2", [](json& j) { j["attention_bias"] = false; });
  EXPECT_TRUE(q2.qkv_bias);
  EXPECT_FALSE(q2.attention_bias);
  EXPECT_FALSE(q2.qk_norm);
  EXPECT_FALSE(q2.sliding_window);
  const auto q3 = family("qwen3", [](json& j) { j["attention_bias"] = true; });
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_TRUE(q3.attention_bias);
  EXPECT_FALSE(q3.qkv_bias);
  EXPECT_EQ(q3.head_dim(), 128);  // Qwen3Config's default, not hidden / heads
  const auto back = std::get<LlamaConfig>(parse_hf_config(hf_config_json(q3), kSource));
  EXPECT_TRUE(back.qk_norm && back.attention_bias);
  EXPECT_EQ(back.model_type, "qwen3");

  expect_parse_error(
      edited(kLlama2_7B,
             [](json& j) {
               j["model_type"] = "qwen2";
               j["architectures"] = {"Qwen2ForCausalLM"};
               j["use_sliding_window"] = true;
             }),
      "field 'use_sliding_window' is true but Solo has no per-layer sliding windows");
  expect_parse_error(edited(kLlama2_7B, [](json& j) { j["model_type"] = "qwen3"; }),
                     "architectures entry 'LlamaForCausalLM' is not implemented");
}

TEST(HfConfig, RopeHeadDimAndBiasesRoundTrip) {
  for (const RopeScaling& rope :
       {RopeScaling{.theta = 500000}, RopeScaling{.type = RopeType::Linear, .factor = 2},
        RopeScaling{
            .type = RopeType::Dynamic, .factor = 3, .original_max_position_embeddings = 4096},
        RopeScaling{.type = RopeType::Llama3,
        .theta = 500000,
        .factor = 8,
        .original_max_position_embeddings = 8192,
        .low_freq_factor = 2,
        .high_freq_factor = 5},
        RopeScaling{.type = RopeType::Yarn,
        .factor = 4,
        .original_max_position_embeddings = 1024,
        .beta_fast = 16,
        .beta_slow = 2,
        .truncate = false,
        .attention_factor = 1.2}}) {
    LlamaConfig l = std::get<LlamaConfig>(parse_hf_config(kLlama2_7B, kSource));
    l.rope = rope;
    l.explicit_head_dim = 96;
    l.attention_bias = true;
    l.mlp_bias = true;
    const auto back = std::get<LlamaConfig>(parse_hf_config(hf_config_json(l), kSource));
    EXPECT_EQ(back.rope, rope) << hf_config_json(l);
    EXPECT_EQ(back.head_dim(), 96);
    EXPECT_TRUE(back.attention_bias);
    EXPECT_TRUE(back.mlp_bias);
  }
}

TEST(HfConfig, LoadMissingFileNamesIt) {
  try {
    load_hf_config("/nonexistent/solo/config.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json at /nonexistent/solo/config.json"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace solo::io
