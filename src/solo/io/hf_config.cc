#include "solo/io/hf_config.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/core/json_keys.h"
#include "solo/core/process_place.h"
#include "solo/io/file_util.h"

namespace solo::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kSupportedTypes = "llama, mistral, qwen2, qwen3, gpt2";

// Typed access to the fields of one config, with errors that name the file and the field.
class Fields {
 public:
  Fields(const json& j, std::string where, const char* family)
      : j_(j), where_(std::move(where)), family_(family) {}

  int64_t req_int(const char* name) const { return as_int(name, require(name)); }
  int64_t req_positive(const char* name) const {
    const int64_t v = req_int(name);
    SOLO_CHECK(v > 0, where_, ": field '", name, "' must be positive, got ", v);
    return v;
  }
  double req_positive_number(const char* name) const {
    const double v = as_number(name, require(name));
    SOLO_CHECK(v > 0, where_, ": field '", name, "' must be positive, got ", v);
    return v;
  }
  bool has(const char* name) const { return j_.contains(name); }
  // Optional fields: absent or null gives nothing.
  const json* find(const char* name) const {
    const auto it = j_.find(name);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  std::optional<int64_t> opt_int(const char* name) const {
    const json* v = find(name);
    return v ? std::optional<int64_t>(as_int(name, *v)) : std::nullopt;
  }
  std::optional<double> opt_number(const char* name) const {
    const json* v = find(name);
    return v ? std::optional<double>(as_number(name, *v)) : std::nullopt;
  }
  std::optional<bool> opt_bool(const char* name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    SOLO_CHECK(v->is_boolean(), wrong_type(name, "a boolean", *v));
    return v->get<bool>();
  }
  std::optional<std::string> opt_string(const char* name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    SOLO_CHECK(v->is_string(), wrong_type(name, "a string", *v));
    return v->get<std::string>();
  }
  // An integer or a list of integers (Llama 3's eos_token_id).
  std::vector<int64_t> int_list(const char* name) const {
    const json* v = find(name);
    if (!v) return {};
    if (!v->is_array()) return {as_int(name, *v)};
    std::vector<int64_t> out;
    for (const json& e : *v) {
      SOLO_CHECK(e.is_number_integer(), wrong_type(name, "an integer or a list of integers", *v));
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  const std::string& where() const { return where_; }

 private:
  const json& require(const char* name) const {
    const auto it = j_.find(name);
    SOLO_CHECK(it != j_.end() && !it->is_null(), where_, ": field '", name,
               "' is missing (required for a ", family_, " model)");
    return *it;
  }
  int64_t as_int(const char* name, const json& v) const {
    SOLO_CHECK(v.is_number_integer(), wrong_type(name, "an integer", v));
    return v.get<int64_t>();
  }
  double as_number(const char* name, const json& v) const {
    SOLO_CHECK(v.is_number(), wrong_type(name, "a number", v));
    return v.get<double>();
  }
  std::string wrong_type(const char* name, const char* want, const json& v) const {
    std::string shown = v.dump();
    if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
    return solo::detail::concat(where_, ": field '", name, "' must be ", want, ", got ",
                                v.type_name(), " ", shown);
  }

  const json& j_;
  std::string where_;
  const char* family_;
};

std::string where_of(const std::string& source) {
  return "config.json at " + source;
}

const char* causal_lm_class(const std::string& model_type);

void validate(const LlamaConfig& c, const std::string& where) {
  SOLO_CHECK(c.model_type != "gpt2" && causal_lm_class(c.model_type) != nullptr, where,
             ": model_type '", c.model_type,
             "' is not a Llama-shaped family (llama, mistral, qwen2, qwen3)");
  for (auto [name, v] : {std::pair{"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size},
                         {"num_hidden_layers", c.num_hidden_layers},
                         {"num_attention_heads", c.num_attention_heads},
                         {"num_key_value_heads", c.num_key_value_heads},
                         {"vocab_size", c.vocab_size},
                         {"max_position_embeddings", c.max_position_embeddings}})
    SOLO_CHECK(v > 0, where, ": field '", name, "' must be positive, got ", v);
  SOLO_CHECK(c.rms_norm_eps > 0, where, ": field 'rms_norm_eps' must be positive, got ",
             c.rms_norm_eps);
  SOLO_CHECK(c.rope.theta > 0, where, ": field 'rope_theta' must be positive, got ", c.rope.theta);
  if (c.rope.type != RopeType::Default)
    SOLO_CHECK(c.rope.factor > 0, where, ": rope scaling 'factor' must be positive, got ",
               c.rope.factor);
  if (c.rope.type == RopeType::Llama3 || c.rope.type == RopeType::Yarn)
    SOLO_CHECK(c.rope.original_max_position_embeddings > 0, where,
               ": rope scaling 'original_max_position_embeddings' must be positive, got ",
               c.rope.original_max_position_embeddings);
  if (c.rope.type == RopeType::Llama3)
    SOLO_CHECK(c.rope.high_freq_factor != c.rope.low_freq_factor, where,
               ": rope scaling 'high_freq_factor' must differ from 'low_freq_factor', both are ",
               c.rope.low_freq_factor);
  if (c.explicit_head_dim) {
    SOLO_CHECK(*c.explicit_head_dim > 0 && *c.explicit_head_dim % 2 == 0, where,
               ": field 'head_dim' must be positive and even (rotary pairs), got ",
               *c.explicit_head_dim);
  } else {
    SOLO_CHECK(c.hidden_size % c.num_attention_heads == 0, where, ": hidden_size ", c.hidden_size,
               " is not divisible by num_attention_heads ", c.num_attention_heads,
               "; set 'head_dim' if the heads are not hidden_size / num_attention_heads wide");
    SOLO_CHECK(c.head_dim() % 2 == 0, where,
               ": head dim hidden_size / num_attention_heads = ", c.head_dim(),
               " must be even (rotary pairs)");
  }
  SOLO_CHECK(c.attention_dropout >= 0 && c.attention_dropout < 1, where,
             ": field 'attention_dropout' must be in [0, 1), got ", c.attention_dropout);
  SOLO_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, where, ": num_attention_heads ",
             c.num_attention_heads, " is not divisible by num_key_value_heads ",
             c.num_key_value_heads);
}

// The class each model_type is run as; any other architectures entry (a classification
// head, another family) would load into the wrong maths.
const char* causal_lm_class(const std::string& model_type) {
  if (model_type == "llama") return "LlamaForCausalLM";
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "qwen3") return "Qwen3ForCausalLM";
  if (model_type == "gpt2") return "GPT2LMHeadModel";
  return nullptr;
}

void check_architectures(const json& j, const std::string& where, const std::string& type) {
  const auto it = j.find("architectures");
  if (it == j.end() || it->is_null()) return;
  SOLO_CHECK(it->is_array(), where, ": field 'architectures' must be a list of strings, got ",
             it->type_name());
  const char* want = causal_lm_class(type);
  for (const json& a : *it) {
    SOLO_CHECK(a.is_string(), where, ": field 'architectures' must be a list of strings, got ",
               it->dump());
    SOLO_CHECK(want == nullptr || a.get<std::string>() == want, where, ": architectures entry '",
               a.get<std::string>(),
               "' is not implemented (Solo implements, by model_type: llama LlamaForCausalLM, "
               "mistral MistralForCausalLM, qwen2 Qwen2ForCausalLM, qwen3 Qwen3ForCausalLM, gpt2 "
               "GPT2LMHeadModel)");
  }
}

void validate(const Gpt2Config& c, const std::string& where) {
  for (auto [name, v] : {std::pair{"n_embd", c.n_embd},
                         {"n_layer", c.n_layer},
                         {"n_head", c.n_head},
                         {"n_positions", c.n_positions},
                         {"vocab_size", c.vocab_size}})
    SOLO_CHECK(v > 0, where, ": field '", name, "' must be positive, got ", v);
  SOLO_CHECK(!c.n_inner || *c.n_inner > 0, where, ": field 'n_inner' must be positive, got ",
             c.n_inner.value_or(0));
  SOLO_CHECK(c.layer_norm_epsilon > 0, where, ": field 'layer_norm_epsilon' must be positive, got ",
             c.layer_norm_epsilon);
  SOLO_CHECK(c.n_embd % c.n_head == 0, where, ": n_embd ", c.n_embd, " is not divisible by n_head ",
             c.n_head);
}

// transformers' RotaryEmbeddingConfigMixin: rope_scaling (transformers 4) wins over
// rope_parameters (transformers 5); a rope_theta inside either wins over the top-level one.
RopeScaling parse_rope(const Fields& top, int64_t max_position_embeddings) {
  const char* key = "rope_scaling";
  const json* dict = top.find(key);
  if (!dict || (dict->is_object() && dict->empty())) {
    key = "rope_parameters";
    dict = top.find(key);
  }
  static const json kEmpty = json::object();
  if (!dict) dict = &kEmpty;
  SOLO_CHECK(dict->is_object(), top.where(), ": field '", key, "' must be an object, got ",
             dict->type_name());
  for (const auto& [k, v] : dict->items())
    SOLO_CHECK(!v.is_object(), top.where(), ": field '", key,
               "' holds per-layer rope parameters ('", k,
               "'), which a llama model does not support");
  const Fields f(*dict, top.where() + ": " + key, "rope");

  RopeScaling s;
  s.theta = f.opt_number("rope_theta").value_or(top.opt_number("rope_theta").value_or(10000.0));
  const std::string type =
      f.opt_string("rope_type").value_or(f.opt_string("type").value_or("default"));
  for (const Fields* where : {&f, &top})
    if (const auto p = where->opt_number("partial_rotary_factor"))
      SOLO_CHECK(*p == 1.0, where->where(), ": field 'partial_rotary_factor' is ", *p,
                 " but a llama model rotates the whole head (only 1 is supported)");
  const auto need = [&](const char* name) {
    const auto v = f.opt_number(name);
    SOLO_CHECK(v.has_value(), f.where(), ": field '", name,
               "' is missing (required for rope_type '", type, "')");
    return *v;
  };
  // llama3 and yarn: a top-level original_max_position_embeddings overrides, as in transformers.
  const auto original = [&] {
    if (const auto o = top.opt_int("original_max_position_embeddings")) return *o;
    return f.opt_int("original_max_position_embeddings").value_or(max_position_embeddings);
  };
  if (type == "default") return s;
  if (type == "linear") {
    s.type = RopeType::Linear;
    s.factor = need("factor");
  } else if (type == "dynamic") {
    s.type = RopeType::Dynamic;
    s.factor = need("factor");
    s.original_max_position_embeddings = max_position_embeddings;
  } else if (type == "llama3") {
    s.type = RopeType::Llama3;
    s.factor = need("factor");
    s.low_freq_factor = need("low_freq_factor");
    s.high_freq_factor = need("high_freq_factor");
    s.original_max_position_embeddings = original();
  } else if (type == "yarn") {
    s.type = RopeType::Yarn;
    s.original_max_position_embeddings = original();
    SOLO_CHECK(s.original_max_position_embeddings > 0, f.where(),
               ": field 'original_max_position_embeddings' must be positive, got ",
               s.original_max_position_embeddings);
    // A null factor is the context extension max_position_embeddings / original.
    s.factor = f.opt_number("factor").value_or(static_cast<double>(max_position_embeddings) /
                                               s.original_max_position_embeddings);
    // Zero or null betas fall back to the paper's 32 and 1 (transformers' `or`).
    s.beta_fast = f.opt_number("beta_fast").value_or(0) ? *f.opt_number("beta_fast") : 32.0;
    s.beta_slow = f.opt_number("beta_slow").value_or(0) ? *f.opt_number("beta_slow") : 1.0;
    // transformers reads a null truncate as false.
    s.truncate = dict->contains("truncate") ? f.opt_bool("truncate").value_or(false) : true;
    s.attention_factor =
        f.opt_number("attention_factor")
            .value_or(yarn_attention_factor(s.factor, f.opt_number("mscale").value_or(0),
                                            f.opt_number("mscale_all_dim").value_or(0)));
  } else {
    SOLO_FAIL(f.where(), ": rope_type '", type,
              "' is not supported (supported: ", kSupportedRopeTypes, ")");
  }
  return s;
}

// Defaults and fields differ per family as in each transformers config class: Mistral has
// 8 kv heads and a 4096 window by default, Qwen3 a head_dim of 128; Qwen2 always has q/k/v
// biases and ignores attention_bias; none but Llama reads mlp_bias.
LlamaConfig parse_llama(const Fields& f, const std::string& type) {
  LlamaConfig c;
  c.model_type = type;
  c.hidden_size = f.req_positive("hidden_size");
  c.intermediate_size = f.req_positive("intermediate_size");
  c.num_hidden_layers = f.req_positive("num_hidden_layers");
  c.num_attention_heads = f.req_positive("num_attention_heads");
  c.num_key_value_heads =
      f.opt_int("num_key_value_heads").value_or(type == "mistral" ? 8 : c.num_attention_heads);
  c.vocab_size = f.req_positive("vocab_size");
  c.max_position_embeddings = f.req_positive("max_position_embeddings");
  c.rms_norm_eps = f.req_positive_number("rms_norm_eps");
  c.rope = parse_rope(f, c.max_position_embeddings);
  c.explicit_head_dim = f.opt_int("head_dim");
  if (type == "qwen3" && !f.find("head_dim")) c.explicit_head_dim = 128;
  if (type == "llama" || type == "qwen3")
    c.attention_bias = f.opt_bool("attention_bias").value_or(false);
  if (type == "llama") c.mlp_bias = f.opt_bool("mlp_bias").value_or(false);
  c.qkv_bias = type == "qwen2";
  c.qk_norm = type == "qwen3";
  if (type == "mistral") {
    // Absent means transformers' default 4096; null means full attention.
    c.sliding_window = f.has("sliding_window") ? f.opt_int("sliding_window") : 4096;
    SOLO_CHECK(!c.sliding_window || *c.sliding_window > 0, f.where(),
               ": field 'sliding_window' must be positive or null, got ", *c.sliding_window);
  }
  if (type == "qwen2" || type == "qwen3")
    SOLO_CHECK(!f.opt_bool("use_sliding_window").value_or(false), f.where(),
               ": field 'use_sliding_window' is true but Solo has no per-layer sliding windows "
               "(max_window_layers, layer_types); set it to false to run every layer with full "
               "attention (a different model past sliding_window tokens)");
  c.attention_dropout = f.opt_number("attention_dropout").value_or(0.0);
  c.tie_word_embeddings = f.opt_bool("tie_word_embeddings").value_or(false);
  // transformers 5 writes "dtype", 4 "torch_dtype".
  c.torch_dtype = f.opt_string("torch_dtype");
  if (!c.torch_dtype) c.torch_dtype = f.opt_string("dtype");
  c.bos_token_id = f.opt_int("bos_token_id");
  c.eos_token_ids = f.int_list("eos_token_id");
  c.pad_token_id = f.opt_int("pad_token_id");
  // Solo's Llama uses SiLU ("swish" is the same function in transformers' ACT2FN); refuse a
  // config that asks for something else rather than run it wrong.
  if (const auto act = f.opt_string("hidden_act"))
    SOLO_CHECK(*act == "silu" || *act == "swish", f.where(), ": field 'hidden_act' is '", *act,
               "' but only 'silu' is supported for a ", type, " model");
  // Quantized weights need dequantization Solo does not do.
  SOLO_CHECK(!f.find("quantization_config"), f.where(),
             ": field 'quantization_config' is set but Solo loads only unquantized (f32, bf16, "
             "f16) checkpoints");
  // pretraining_tp is ignored: transformers 5 ignores it and transformers 4 only split the
  // same matmuls into slices.
  validate(c, f.where());
  return c;
}

Gpt2Config parse_gpt2(const Fields& f) {
  Gpt2Config c;
  c.n_embd = f.req_positive("n_embd");
  c.n_layer = f.req_positive("n_layer");
  c.n_head = f.req_positive("n_head");
  c.n_positions = f.req_positive("n_positions");
  c.vocab_size = f.req_positive("vocab_size");
  c.layer_norm_epsilon = f.opt_number("layer_norm_epsilon").value_or(1e-5);
  c.activation_function = f.opt_string("activation_function").value_or("gelu_new");
  c.n_inner = f.opt_int("n_inner");
  c.tie_word_embeddings = f.opt_bool("tie_word_embeddings").value_or(true);
  c.torch_dtype = f.opt_string("torch_dtype");
  c.bos_token_id = f.opt_int("bos_token_id");
  c.eos_token_id = f.opt_int("eos_token_id");
  c.pad_token_id = f.opt_int("pad_token_id");
  validate(c, f.where());
  return c;
}

template <class T>
void put_opt(json& j, const char* name, const std::optional<T>& v) {
  if (v) j[name] = *v;
}

json to_json(const LlamaConfig& c) {
  json j = {{"model_type", c.model_type},
            {"architectures", {causal_lm_class(c.model_type)}},
            {"hidden_act", "silu"},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.num_hidden_layers},
            {"num_attention_heads", c.num_attention_heads},
            {"num_key_value_heads", c.num_key_value_heads},
            {"vocab_size", c.vocab_size},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope.theta},
            {"attention_bias", c.attention_bias},
            {"mlp_bias", c.mlp_bias},
            {"attention_dropout", c.attention_dropout},
            {"tie_word_embeddings", c.tie_word_embeddings}};
  if (c.explicit_head_dim) j["head_dim"] = *c.explicit_head_dim;
  if (c.model_type == "mistral")
    j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
  if (c.model_type == "qwen2" || c.model_type == "qwen3") j["use_sliding_window"] = false;
  // The transformers-4 spelling, which both transformers 4 and 5 read.
  if (c.rope.type != RopeType::Default) {
    json r = {{"rope_type", rope_type_name(c.rope.type)}, {"factor", c.rope.factor}};
    if (c.rope.type == RopeType::Llama3 || c.rope.type == RopeType::Yarn)
      r["original_max_position_embeddings"] = c.rope.original_max_position_embeddings;
    if (c.rope.type == RopeType::Llama3) {
      r["low_freq_factor"] = c.rope.low_freq_factor;
      r["high_freq_factor"] = c.rope.high_freq_factor;
    }
    if (c.rope.type == RopeType::Yarn) {
      r["beta_fast"] = c.rope.beta_fast;
      r["beta_slow"] = c.rope.beta_slow;
      r["truncate"] = c.rope.truncate;
      r["attention_factor"] = c.rope.attention_factor;
    }
    j["rope_scaling"] = r;
  }
  put_opt(j, "torch_dtype", c.torch_dtype);
  put_opt(j, "bos_token_id", c.bos_token_id);
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  put_opt(j, "pad_token_id", c.pad_token_id);
  return j;
}

json to_json(const Gpt2Config& c) {
  json j = {{"model_type", "gpt2"},
            {"architectures", {"GPT2LMHeadModel"}},
            {"n_embd", c.n_embd},
            {"n_layer", c.n_layer},
            {"n_head", c.n_head},
            {"n_positions", c.n_positions},
            {"vocab_size", c.vocab_size},
            {"layer_norm_epsilon", c.layer_norm_epsilon},
            {"activation_function", c.activation_function},
            {"n_inner", c.n_inner ? json(*c.n_inner) : json(nullptr)},
            {"tie_word_embeddings", c.tie_word_embeddings}};
  put_opt(j, "torch_dtype", c.torch_dtype);
  put_opt(j, "bos_token_id", c.bos_token_id);
  put_opt(j, "eos_token_id", c.eos_token_id);
  put_opt(j, "pad_token_id", c.pad_token_id);
  return j;
}

}  // namespace

ModelConfig parse_hf_config(const std::string& json_text, const std::string& source) {
  const std::string where = where_of(source);
  json j;
  try {
    check_unique_json_keys(json_text, where);
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    SOLO_FAIL(where, ": not valid JSON: ", e.what());
  }
  SOLO_CHECK(j.is_object(), where, ": not a JSON object");
  const auto mt = j.find("model_type");
  SOLO_CHECK(mt != j.end(), where, ": field 'model_type' is missing (supported: ", kSupportedTypes,
             ")");
  SOLO_CHECK(mt->is_string(), where, ": field 'model_type' must be a string, got ",
             mt->type_name());
  const std::string type = mt->get<std::string>();
  check_architectures(j, where, type);
  if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3")
    return parse_llama(Fields(j, where, type.c_str()), type);
  if (type == "gpt2") return parse_gpt2(Fields(j, where, "gpt2"));
  SOLO_FAIL(where, ": model_type '", type, "' is not supported (supported: ", kSupportedTypes, ")");
}

ModelConfig load_hf_config(const std::string& path) {
  std::error_code ec;
  const std::string file =
      fs::is_directory(path, ec) ? (fs::path(path) / "config.json").string() : path;
  return parse_hf_config(detail::read_text_file(file, "config.json"), file);
}

std::string hf_config_json(const ModelConfig& config) {
  return std::visit([](const auto& c) { return to_json(c).dump(2) + "\n"; }, config);
}

void write_hf_config(const std::string& path, const ModelConfig& config) {
  if (!process_place().writes_files()) return;  // one process of the job writes
  std::error_code ec;
  const std::string file =
      fs::is_directory(path, ec) ? (fs::path(path) / "config.json").string() : path;
  std::visit([&](const auto& c) { validate(c, where_of(file)); }, config);
  const std::string text = hf_config_json(config);
  write_file_atomic(file, text);
}

}  // namespace solo::io
