// Traces a Llama-2-70B-shaped training step (forward + backward, seq 4096) on the meta
// backend: the parameter count is exact, no weight memory is allocated, and the process
// stays under 2 GiB of peak RSS. The model is built from tensor ops here, independently of
// the models module.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include "solo/tensor/tensor.h"

namespace solo {
namespace {

struct Config {
  int64_t hidden = 8192, layers = 80, heads = 64, kv_heads = 8, ffn = 28672, vocab = 32000,
          seq = 4096, batch = 1;
};

size_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<size_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

TEST(Llama70BMeta, TracesTrainingStepWithoutWeightMemory) {
  const Config c;
  const Device meta = meta_device();
  const int64_t head_dim = c.hidden / c.heads;
  std::vector<Tensor> params;
  auto param = [&](const Shape& s, const std::string& name) {
    Tensor t = Tensor::empty(s, DType::F32, meta).set_name(name);
    t.requires_grad_();
    params.push_back(t);
    return t;
  };

  const Tensor ids = Tensor::empty({c.batch, c.seq}, DType::I64, meta);
  const Tensor labels = Tensor::empty({c.batch * c.seq}, DType::I64, meta);
  const Tensor embed = param({c.vocab, c.hidden}, "model.embed_tokens.weight");
  Tensor x = embedding(embed, ids);  // [B, T, hidden]
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ScopeGuard scope("model.layers." + std::to_string(l));
    const Tensor h = rms_norm(x, param({c.hidden}, p + "input_layernorm.weight"), 1e-5);
    Tensor q = linear(h, param({c.hidden, c.hidden}, p + "self_attn.q_proj.weight"));
    Tensor k = linear(h, param({c.kv_heads * head_dim, c.hidden}, p + "self_attn.k_proj.weight"));
    Tensor v = linear(h, param({c.kv_heads * head_dim, c.hidden}, p + "self_attn.v_proj.weight"));
    q = rope(reshape(q, {c.batch, c.seq, c.heads, head_dim}), 10000.0);
    k = rope(reshape(k, {c.batch, c.seq, c.kv_heads, head_dim}), 10000.0);
    v = reshape(v, {c.batch, c.seq, c.kv_heads, head_dim});
    const Tensor a = reshape(scaled_dot_product_attention(q, k, v), {c.batch, c.seq, c.hidden});
    x = x + linear(a, param({c.hidden, c.hidden}, p + "self_attn.o_proj.weight"));
    const Tensor h2 = rms_norm(x, param({c.hidden}, p + "post_attention_layernorm.weight"), 1e-5);
    const Tensor gate = linear(h2, param({c.ffn, c.hidden}, p + "mlp.gate_proj.weight"));
    const Tensor up = linear(h2, param({c.ffn, c.hidden}, p + "mlp.up_proj.weight"));
    x = x + linear(silu(gate) * up, param({c.hidden, c.ffn}, p + "mlp.down_proj.weight"));
  }
  x = rms_norm(x, param({c.hidden}, "model.norm.weight"), 1e-5);
  const Tensor logits = linear(x, param({c.vocab, c.hidden}, "lm_head.weight"));
  const Tensor loss = cross_entropy(reshape(logits, {c.batch * c.seq, c.vocab}), labels);
  loss.backward();

  int64_t count = 0;
  for (const Tensor& t : params) {
    count += t.numel();
    ASSERT_TRUE(t.grad().defined()) << t.name();
    ASSERT_EQ(t.grad().shape(), t.shape()) << t.name();
  }
  EXPECT_EQ(count, 68976648192);  // 68.98e9, as Hugging Face counts Llama-2-70B (untied head)
  const int nodes = pending_graph(meta).num_nodes();
  EXPECT_GT(nodes, 80 * 30);

  sync(meta);  // runs the executor on meta: the whole memory plan, no kernel
  const size_t step_peak = last_flush_peak_bytes(meta);
  // Outputs alone are the gradients: 4 bytes per parameter; activations come on top.
  EXPECT_GE(step_peak, static_cast<size_t>(count) * 4);
  const size_t rss = peak_rss_bytes();
  std::printf("70B step graph: %d nodes, %lld params, planned peak %.1f GiB/device, RSS %.0f MiB\n",
              nodes, static_cast<long long>(count), step_peak / 1073741824.0, rss / 1048576.0);
  EXPECT_LT(rss, size_t{2} << 30);
}

}  // namespace
}  // namespace solo
