#include "solo/io/hf_config.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "solo/core/error.h"
#include "solo/core/process_place.h"
#include "solo/io/file_util.h"

namespace solo::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kSupportedTypes = "llama, gpt2";

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

void validate(const LlamaConfig& c, const std::string& where) {
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
  SOLO_CHECK(c.rope_theta > 0, where, ": field 'rope_theta' must be positive, got ", c.rope_theta);
  SOLO_CHECK(c.hidden_size % c.num_attention_heads == 0, where, ": hidden_size ", c.hidden_size,
             " is not divisible by num_attention_heads ", c.num_attention_heads);
  SOLO_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, where, ": num_attention_heads ",
             c.num_attention_heads, " is not divisible by num_key_value_heads ",
             c.num_key_value_heads);
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

LlamaConfig parse_llama(const Fields& f) {
  LlamaConfig c;
  c.hidden_size = f.req_positive("hidden_size");
  c.intermediate_size = f.req_positive("intermediate_size");
  c.num_hidden_layers = f.req_positive("num_hidden_layers");
  c.num_attention_heads = f.req_positive("num_attention_heads");
  c.num_key_value_heads = f.opt_int("num_key_value_heads").value_or(c.num_attention_heads);
  c.vocab_size = f.req_positive("vocab_size");
  c.max_position_embeddings = f.req_positive("max_position_embeddings");
  c.rms_norm_eps = f.req_positive_number("rms_norm_eps");
  c.rope_theta = f.opt_number("rope_theta").value_or(10000.0);
  c.tie_word_embeddings = f.opt_bool("tie_word_embeddings").value_or(false);
  c.torch_dtype = f.opt_string("torch_dtype");
  c.bos_token_id = f.opt_int("bos_token_id");
  c.eos_token_ids = f.int_list("eos_token_id");
  c.pad_token_id = f.opt_int("pad_token_id");
  // Solo's Llama uses SiLU; refuse a config that asks for something else rather than run it wrong.
  if (const auto act = f.opt_string("hidden_act"))
    SOLO_CHECK(*act == "silu", f.where(), ": field 'hidden_act' is '", *act,
               "' but only 'silu' is supported for a llama model");
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
  json j = {{"model_type", "llama"},
            {"architectures", {"LlamaForCausalLM"}},
            {"hidden_act", "silu"},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.num_hidden_layers},
            {"num_attention_heads", c.num_attention_heads},
            {"num_key_value_heads", c.num_key_value_heads},
            {"vocab_size", c.vocab_size},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"tie_word_embeddings", c.tie_word_embeddings}};
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
  if (type == "llama") return parse_llama(Fields(j, where, "llama"));
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
  detail::write_file_atomic(file, {std::as_bytes(std::span(text))});
}

}  // namespace solo::io
