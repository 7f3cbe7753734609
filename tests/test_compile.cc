// The compile layer: plan specs, the data-parallel pass on a small step graph (every marked
// gradient averaged exactly once, bucketed, before anything reads it), and compiling many
// plans of the 58M Llama step at once on threads giving the programs compiled one by one.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "solo/autograd/autograd.h"
#include "solo/compile/data_parallel.h"
#include "solo/compile/model_search.h"
#include "solo/compile/pipeline.h"
#include "solo/compile/program.h"
#include "solo/compile/recompute.h"
#include "solo/compile/search.h"
#include "solo/compile/splitter.h"
#include "solo/compile/zero.h"
#include "solo/core/error.h"
#include "solo/core/hash.h"
#include "solo/ir/ops.h"
#include "solo/models/gpt2.h"
#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"
#include "solo/planner/op_cost.h"
#include "solo/tensor/tensor.h"
#include "test_support.h"

namespace solo {
namespace {

using compile::PlanSpec;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PlanSpec, ParsesEveryKeyAndRefusesBadOnes) {
  const PlanSpec p = compile::parse_plan_spec("dp=4,zero=3,recompute=block,low_prec=1");
  EXPECT_EQ(p.dp, 4);
  EXPECT_EQ(p.zero, 3);
  EXPECT_TRUE(p.recompute);
  EXPECT_TRUE(p.low_prec);
  EXPECT_EQ(p.tp, 1);
  EXPECT_EQ(p.pp, 1);
  EXPECT_EQ(compile::parse_plan_spec("tp=2,pp=2").devices(), 4);
  EXPECT_NE(error_of([] { compile::parse_plan_spec("dp=four"); }).find("dp=four"),
            std::string::npos);
  EXPECT_NE(error_of([] { compile::parse_plan_spec("zero=4"); }).find("0 to 3"), std::string::npos);
  EXPECT_NE(error_of([] { compile::parse_plan_spec("dq=2"); }).find("unknown key 'dq'"),
            std::string::npos);
  EXPECT_NE(error_of([] { compile::parse_plan_spec("recompute=all"); }).find("none, block"),
            std::string::npos);
}

TEST(PlanSpec, RunnablePlansAreCheckedAgainstTheFlavor) {
  EXPECT_NO_THROW(compile::check_runnable(compile::parse_plan_spec("dp=2"), 2));
  EXPECT_NE(error_of([] {
              compile::check_runnable(compile::parse_plan_spec("dp=4"), 2);
            }).find("flavor has 2"),
            std::string::npos);
  for (const char* zero : {"dp=2,zero=1", "dp=2,zero=2", "dp=2,zero=3", "dp=2,zero=3,low_prec=1"})
    EXPECT_NO_THROW(compile::check_runnable(compile::parse_plan_spec(zero), 2)) << zero;
  EXPECT_NO_THROW(compile::check_runnable(compile::parse_plan_spec("dp=2,recompute=block"), 2));
  EXPECT_NE(error_of([] {
              compile::check_runnable(compile::parse_plan_spec("dp=2,zero=1,low_prec=1"), 2);
            }).find("set zero=3 or low_prec=0"),
            std::string::npos);
  EXPECT_NO_THROW(compile::check_runnable(compile::parse_plan_spec("dp=1,tp=2"), 2));
  EXPECT_NO_THROW(compile::check_runnable(compile::parse_plan_spec("dp=2,tp=2,zero=1"), 4));
  EXPECT_NO_THROW(compile::check_runnable(compile::parse_plan_spec("dp=2,tp=2,pp=2"), 8));
  EXPECT_NE(error_of([] {
              compile::check_runnable(compile::parse_plan_spec("pp=2,micro=4"), 2);
            }).find("micro-batches are not executable yet; use micro=1"),
            std::string::npos);
}

// A two-layer MLP step: x [8, 16] -> W1 [16, 32] -> relu-free silu -> W2 [32, 4] -> mean.
struct MlpStep {
  ir::Graph g;
  std::vector<ir::ValueId> weights, grads;
  ir::ValueId loss = ir::kNoValue, sum_of_grads = ir::kNoValue;
};

MlpStep mlp_step() {
  MlpStep s;
  ir::Graph& g = s.g;
  const ir::ValueId x = g.input({{8, 16}, DType::F32}, "x", /*batch=*/true);
  s.weights = {g.input({{16, 32}, DType::F32}, "w1"), g.input({{32, 4}, DType::F32}, "w2")};
  const ir::ValueId h = ir::silu(g, ir::matmul(g, x, s.weights[0]));
  s.loss = ir::mean(g, ir::matmul(g, h, s.weights[1]));
  s.grads = autograd::gradients(g, s.loss, s.weights);
  for (ir::ValueId v : s.grads) g.mark_gradient(v);
  // Something that reads the gradients after backward, as an optimizer would.
  s.sum_of_grads = ir::add(g, ir::sum(g, s.grads[0]), ir::sum(g, s.grads[1]));
  return s;
}

std::vector<ir::NodeId> nodes_of(const ir::Graph& g, OpKind op) {
  std::vector<ir::NodeId> out;
  for (int n = 0; n < g.num_nodes(); ++n)
    if (g.node(n).op == op) out.push_back(n);
  return out;
}

TEST(DataParallelPass, SplitsTheBatchRowsAndSumsEveryMarkedGradientOnceBeforeItIsRead) {
  const MlpStep s = mlp_step();
  ASSERT_TRUE(nodes_of(s.g, OpKind::AllReduce).empty());
  for (size_t bucket_bytes : {size_t{1}, compile::kGradientBucketBytes}) {
    std::vector<ir::ValueId> map;
    compile::DataParallelStats stats;
    const ir::Graph dp = compile::data_parallel(s.g, {}, 2, map, bucket_bytes, &stats);
    EXPECT_EQ(stats.gathered, 0);
    // The batch input holds this rank's 4 of the 8 rows, bound from the whole batch.
    const ir::Node& x = dp.producer(map[0]);
    EXPECT_EQ(dp.type(map[0]).shape, Shape({4, 16}));
    EXPECT_EQ(x.attrs.i(compile::kRowShardsAttr), 2);
    const std::vector<ir::NodeId> reductions = nodes_of(dp, OpKind::AllReduce);
    // One bucket per gradient when any gradient fills a bucket, else one for both.
    ASSERT_EQ(reductions.size(), bucket_bytes == 1 ? 2u : 1u);
    std::unordered_map<ir::ValueId, int> reduced_from;  // the copy's grad value -> times
    for (ir::NodeId n : reductions) {
      const ir::Node& node = dp.node(n);
      EXPECT_EQ(node.attrs.i("average"), 0);  // each rank's rows give a part of the sum
      EXPECT_EQ(node.attrs.i("group"), 0);
      EXPECT_TRUE(node.no_grad);
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        ++reduced_from[node.inputs[k]];
        EXPECT_EQ(dp.type(node.outputs[k]).shape, dp.type(node.inputs[k]).shape);
      }
    }
    for (size_t i = 0; i < s.grads.size(); ++i) {
      const ir::ValueId summed = map[static_cast<size_t>(s.grads[i])];
      EXPECT_EQ(dp.type(summed).shape, s.g.type(s.grads[i]).shape);
      const ir::Node& producer = dp.producer(summed);
      ASSERT_EQ(producer.op, OpKind::AllReduce) << "gradient " << i << " is not summed";
      const ir::ValueId raw = producer.inputs[static_cast<size_t>(dp.value(summed).index)];
      EXPECT_EQ(reduced_from[raw], 1);
      // Nothing but the reduction reads the raw gradient; the reader after backward reads
      // the sum, and the reduction comes after the raw gradient's producer.
      for (int n = 0; n < dp.num_nodes(); ++n)
        for (ir::ValueId in : dp.node(n).inputs) {
          if (in == raw) {
            EXPECT_EQ(dp.node(n).op, OpKind::AllReduce);
          }
        }
      EXPECT_LT(dp.value(raw).producer, dp.value(summed).producer);
    }
  }
}

TEST(DataParallelPass, RequestedOutputsAreWholeOnEveryRank) {
  MlpStep s = mlp_step();
  // A scalar computed from the weights alone is the same on every rank.
  const ir::ValueId weight_only = ir::sum(s.g, s.weights[0]);
  std::vector<ir::ValueId> map;
  const ir::Graph dp =
      compile::data_parallel(s.g, {s.loss, s.sum_of_grads, weight_only, s.loss}, 2, map);
  // The mean over this rank's rows, halved, summed over the two ranks: the batch's mean.
  const ir::Node& loss = dp.producer(map[static_cast<size_t>(s.loss)]);
  ASSERT_EQ(loss.op, OpKind::AllReduce);
  EXPECT_EQ(loss.attrs.i("average"), 0);
  ASSERT_EQ(loss.inputs.size(), 1u);  // the loss requested twice is summed once
  const ir::Node& half = dp.producer(loss.inputs[0]);
  ASSERT_EQ(half.op, OpKind::MulScalar);
  EXPECT_EQ(half.attrs.f("value"), 0.5);
  EXPECT_EQ(dp.producer(half.inputs[0]).op, OpKind::Mean);
  // Computed from summed gradients, or from no batch: not reduced again.
  EXPECT_EQ(dp.producer(map[static_cast<size_t>(s.sum_of_grads)]).op, OpKind::Add);
  EXPECT_EQ(dp.producer(map[static_cast<size_t>(weight_only)]).op, OpKind::Sum);
}

TEST(DataParallelPass, RefusesABatchThatDoesNotSplitEvenly) {
  const MlpStep s = mlp_step();  // 8 rows
  std::vector<ir::ValueId> map;
  EXPECT_NE(error_of([&] { compile::data_parallel(s.g, {}, 3, map); })
                .find("has 8 rows, which do not split evenly over 3 data-parallel ranks; use a "
                      "batch size that is a multiple of 3"),
            std::string::npos);
}

TEST(DataParallelPass, OneRankIsTheStepItself) {
  const MlpStep s = mlp_step();
  const compile::Program p = compile::compile(s.g, {s.loss, s.sum_of_grads}, {}, PlanSpec{});
  EXPECT_EQ(p.graph->structural_hash(), s.g.structural_hash());
  EXPECT_TRUE(nodes_of(*p.graph, OpKind::AllReduce).empty());
  const compile::Program two =
      compile::compile(s.g, {s.loss, s.sum_of_grads}, {}, compile::parse_plan_spec("dp=2"));
  EXPECT_EQ(nodes_of(*two.graph, OpKind::AllReduce).size(), 2u);  // the gradients, the loss
  EXPECT_NE(two.graph->structural_hash(), s.g.structural_hash());
}

uint64_t program_hash(const compile::Program& p) {
  uint64_t h = p.graph->structural_hash();
  for (ir::NodeId n : p.memory.schedule) h = hash_mix(h, static_cast<uint64_t>(n));
  for (int64_t o : p.memory.offset) h = hash_mix(h, static_cast<uint64_t>(o));
  h = hash_mix(h, p.memory.arena_bytes);
  h = hash_mix(h, p.memory.output_bytes);
  return h;
}

// The steady (second) step of the 58M Llama of bench_llama_step, traced on the meta backend
// (shapes only), with its requested outputs: the loss, the AdamW updates and the gradients.
struct LlamaStep {
  std::shared_ptr<const ir::Graph> graph;
  std::vector<ir::ValueId> outputs;
};

// What a training step requests: the loss and the AdamW updates.
std::vector<ir::ValueId> requested_outputs(const ir::Graph& g) {
  std::vector<ir::ValueId> outputs;
  for (int n = 0; n < g.num_nodes(); ++n)
    if (g.node(n).op == OpKind::AdamWUpdate || g.node(n).op == OpKind::CrossEntropy)
      for (ir::ValueId v : g.node(n).outputs) outputs.push_back(v);
  return outputs;
}

LlamaStep llama_steady_step(int layers = 8, int64_t batch = 8) {
  io::LlamaConfig c;
  c.hidden_size = 512;
  c.intermediate_size = 1376;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.vocab_size = 32000;
  c.max_position_embeddings = 256;
  const Device meta = meta_device();
  models::LlamaForCausalLM model(c, 1, meta);
  optim::AdamW opt(model.parameters(), {.lr = 1e-4});
  Tensor ids = Tensor::empty({batch, 256}, DType::I64, meta);
  ids.as_batch();
  for (int step = 0; step < 2; ++step) {  // the second step is the steady one
    const Tensor loss = model.forward(ids, {}, ids).loss;
    loss.backward();
    opt.step();
    opt.zero_grad();
    sync(meta);
  }
  LlamaStep s;
  s.graph = last_flush_graph(meta);
  s.outputs = requested_outputs(*s.graph);
  for (ir::ValueId v : s.graph->gradients()) s.outputs.push_back(v);
  return s;
}

TEST(Compile, PlansOfTheLlamaStepCompileOnEightThreadsAsOneByOne) {
  const LlamaStep s = llama_steady_step();
  const std::shared_ptr<const ir::Graph> step = s.graph;
  ASSERT_FALSE(step->gradients().empty());
  const std::vector<ir::ValueId>& outputs = s.outputs;
  std::vector<std::pair<PlanSpec, compile::CompileOptions>> plans;
  for (int dp : {1, 2, 4, 8})
    for (bool async : {false, true}) plans.push_back({PlanSpec{.dp = dp}, {async}});
  for (int zero : {1, 2, 3}) plans.push_back({PlanSpec{.dp = 4, .zero = zero}, {}});
  std::vector<uint64_t> one_by_one, threaded(plans.size());
  for (const auto& [plan, options] : plans)
    one_by_one.push_back(program_hash(compile::compile(*step, outputs, {}, plan, options)));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < plans.size(); ++i)
    threads.emplace_back([&, i] {
      threaded[i] =
          program_hash(compile::compile(*step, outputs, {}, plans[i].first, plans[i].second));
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(threaded, one_by_one);
  // One rank runs the step as it is; each degree splits the rows its own way.
  for (size_t i : {2u, 4u, 6u}) EXPECT_NE(one_by_one[i - 2], one_by_one[i]);
  EXPECT_EQ(one_by_one[0], one_by_one[1]);  // nothing to overlap on one rank
}

// Every op of the Llama step has a rule for this rank's rows: nothing is gathered, and the
// loss and logits cover only this rank's tokens.
TEST(DataParallelPass, TheLlamaStepRunsOnEachRanksRowsAlone) {
  const LlamaStep s = llama_steady_step();
  for (int dp : {2, 4, 8}) {
    const compile::Program p = compile::compile(*s.graph, s.outputs, {}, PlanSpec{.dp = dp});
    EXPECT_EQ(p.batch_gathers, 0) << "dp=" << dp;
    EXPECT_TRUE(nodes_of(*p.graph, OpKind::AllGather).empty());
    const std::vector<ir::NodeId> losses = nodes_of(*p.graph, OpKind::CrossEntropy);
    ASSERT_EQ(losses.size(), 1u);
    EXPECT_EQ(p.graph->shape(p.graph->node(losses[0]).inputs[0]), Shape({8 * 256 / dp, 32000}));
  }
}

// GPT-2 too: its learned positions broadcast over the rows, its tied embedding's gradient
// sums a lookup's and a matmul's partial sums, and an attention mask pads the rows.
TEST(DataParallelPass, TheGpt2StepRunsOnEachRanksRowsAlone) {
  io::Gpt2Config c;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_positions = 32;
  c.vocab_size = 100;
  const Device meta = meta_device();
  models::Gpt2LMHeadModel model(c, 1, meta);
  optim::AdamW opt(model.parameters(), {.lr = 1e-4});
  Tensor ids = Tensor::empty({4, 32}, DType::I64, meta),
         mask = Tensor::empty({4, 32}, DType::I64, meta);
  ids.as_batch();
  mask.as_batch();
  model.forward(ids, mask, ids).loss.backward();
  opt.step();
  sync(meta);
  const std::shared_ptr<const ir::Graph> step = last_flush_graph(meta);
  const std::vector<ir::ValueId> outputs = requested_outputs(*step);
  for (int dp : {2, 4}) {
    const compile::Program p = compile::compile(*step, outputs, {}, PlanSpec{.dp = dp});
    EXPECT_EQ(p.batch_gathers, 0) << "dp=" << dp;
    EXPECT_TRUE(nodes_of(*p.graph, OpKind::AllGather).empty());
  }
}

TEST(Search, CandidatesAreEveryDpTimesTpOfTheFlavor) {
  using compile::candidate_plans;
  EXPECT_EQ(candidate_plans({.devices = 1}).size(), 2u);  // recomputation or not
  // tp 1, 2 and 4; ZeRO 0-3 where dp > 1; recomputation or not; then pp=2 (over dp=2 or
  // tp=2) and pp=4.
  EXPECT_EQ(candidate_plans({.devices = 4}).size(), 8u + 8u + 2u + (8u + 2u) + 2u);
  EXPECT_EQ(candidate_plans({.devices = 4, .pipeline = false}).size(), 8u + 8u + 2u);
  for (const PlanSpec& p : candidate_plans({.devices = 4, .devices_per_host = 2}))
    EXPECT_LE(p.tp, 2) << p.str();  // tensor parallelism stays within a host
  const std::vector<PlanSpec> mixed = candidate_plans({.devices = 4, .mixed_precision = true});
  // + low-precision sharding under zero=3
  ASSERT_EQ(mixed.size(), 10u + 10u + 2u + (10u + 2u) + 2u);
  for (const PlanSpec& p : mixed) {
    EXPECT_EQ(p.devices(), 4) << p.str();
    EXPECT_TRUE(!p.low_prec || p.zero == 3) << p.str();
    EXPECT_NO_THROW(compile::check_runnable(p, 4)) << p.str();  // dp x tp x pp all run
  }
}

// tp must divide the heads and every matmul weight: the 58M Llama (8 heads, FFN 1376, vocab
// 32000) splits over 2, 4 and 8 ranks, not over 3 or 16, and says why.
TEST(Search, TensorParallelismNeedsShapesItDivides) {
  const LlamaStep s = llama_steady_step();
  for (int tp : {2, 4, 8}) EXPECT_EQ(compile::tensor_parallel_reason(*s.graph, tp), "") << tp;
  EXPECT_EQ(compile::tensor_parallel_reason(*s.graph, 3),
            "tp=3 does not divide the weight [512, 512] of model.layers.0.self_attn.q_proj");
  EXPECT_EQ(compile::tensor_parallel_reason(*s.graph, 16),
            "tp=16 does not divide the 8 heads of model.layers.0.self_attn");
}

// Tensor-parallel candidates are compiled and costed, but a training run chooses among what
// its runtime executes; a faster candidate set aside is named in the log.
// Tensor-parallel candidates are compiled, costed and chosen like any other now that the
// runtime runs them: nothing is set aside, and no fitting candidate beats the chosen one.
TEST(Search, TensorParallelCandidatesAreCostedAndChosenLikeAnyOther) {
  const LlamaStep s = llama_steady_step();
  compile::SearchOptions o;
  o.devices = 4;
  o.steady = true;
  o.profile = compile::assumed_cpu_profile();
  const compile::SearchResult r = compile::search_plans(*s.graph, s.outputs, {}, o);
  ASSERT_GE(r.chosen, 0);
  int tensor_parallel = 0;
  for (const compile::Candidate& c : r.candidates) {
    EXPECT_TRUE(c.not_runnable.empty()) << c.plan.str();
    if (!c.fits) continue;
    EXPECT_GE(c.step_seconds, r.best().step_seconds * 0.98) << c.plan.str();
    if (c.plan.tp == 1) continue;
    EXPECT_GT(c.step_seconds, 0);
    ++tensor_parallel;
  }
  // tp=2 (dp=2: ZeRO 0-3), tp=4 and tp=2 x pp=2, with recomputation or not
  EXPECT_EQ(tensor_parallel, 8 + 2 + 2);
  EXPECT_EQ(r.set_aside, -1);
  EXPECT_EQ(r.report().find("Set aside"), std::string::npos);
}

// Devices a byte smaller than plain DP's peak: DP is dropped with its reason, a sharded plan
// is chosen, its peak fits; compiling on one thread or eight gives the same search.
TEST(Search, DropsWhatDoesNotFitAndChoosesTheSameOnAnyThreadCount) {
  const LlamaStep s = llama_steady_step();
  compile::SearchOptions o;
  o.devices = 4;
  o.profile = compile::assumed_cpu_profile();
  const compile::SearchResult free = compile::search_plans(*s.graph, s.outputs, {}, o);
  ASSERT_GE(free.chosen, 0);
  const size_t dp_peak = free.candidates[0].peak_bytes;
  ASSERT_EQ(free.candidates[0].plan, PlanSpec{.dp = 4});
  o.device_memory = dp_peak - 1;
  o.threads = 1;
  const compile::SearchResult one = compile::search_plans(*s.graph, s.outputs, {}, o);
  o.threads = 8;
  const compile::SearchResult eight = compile::search_plans(*s.graph, s.outputs, {}, o);
  ASSERT_GE(one.chosen, 0);
  EXPECT_EQ(one.chosen, eight.chosen);
  EXPECT_GE(one.best().plan.zero, 1);
  EXPECT_LE(one.best().peak_bytes, o.device_memory);
  EXPECT_FALSE(one.candidates[0].fits);
  EXPECT_NE(one.candidates[0].dropped.find("MiB of the device's"), std::string::npos);
  for (size_t i = 0; i < one.candidates.size(); ++i) {
    const compile::Candidate &a = one.candidates[i], &b = eight.candidates[i];
    EXPECT_EQ(a.fits, b.fits);
    EXPECT_EQ(a.peak_bytes, b.peak_bytes);
    EXPECT_EQ(a.step_seconds, b.step_seconds);
    EXPECT_EQ(a.fits, a.dropped.empty()) << a.plan.str();  // a dropped one says why
    EXPECT_EQ(a.fits, a.peak_bytes <= o.device_memory) << a.plan.str();
  }
  std::printf("%s%s", one.report().c_str(), one.table().c_str());
}

// Per rank on 4 ranks, what the 58M Llama's steady step holds from one step to the next:
// each stage holds less than the one before, and ZeRO-3 at most 0.3x of what DP holds.
TEST(Zero, ResidentBytesOnFourRanksShrinkStageByStage) {
  const LlamaStep s = llama_steady_step();
  std::vector<size_t> resident;
  for (int zero : {0, 1, 2, 3}) {
    const ir::Graph g = compile::with_state_as_blocks(*s.graph, 4, zero);
    const compile::Program p = compile::compile(g, s.outputs, {}, PlanSpec{.dp = 4, .zero = zero});
    resident.push_back(p.resident.total());
    std::printf("zero=%d: parameters %.1f MiB, gradients %.1f MiB, optimizer %.1f MiB\n", zero,
                static_cast<double>(p.resident.parameters) / (1 << 20),
                static_cast<double>(p.resident.gradients) / (1 << 20),
                static_cast<double>(p.resident.optimizer_states) / (1 << 20));
  }
  for (size_t z = 1; z < resident.size(); ++z) EXPECT_LT(resident[z], resident[z - 1]) << z;
  EXPECT_LE(static_cast<double>(resident[3]), 0.3 * static_cast<double>(resident[0]));
}

// ZeRO-3 on the MLP step whose weights are blocks: each weight is gathered before its first
// reader in the forward and again before its first reader in the backward (w2 is read by
// both; w1 only by the forward, since x needs no gradient), the update runs on blocks, and
// the new weights and moments stay blocks.
// ZeRO-3 prefetch on the 58M Llama step: the gathers of layer k's parameters in the forward
// are started before layer k-1 computes (one block ahead), marked to overlap; the memory plan
// keeps the gathered parameters live from there (a valid plan) and stays below DP's peak.
TEST(Zero, Stage3GathersRunOneBlockAheadOfTheirLayer) {
  const LlamaStep s = llama_steady_step();
  const ir::Graph steady = compile::with_state_as_blocks(*s.graph, 4, 3);
  const compile::Program p = compile::compile(steady, s.outputs, {}, PlanSpec{.dp = 4, .zero = 3},
                                              {.async_collectives = true});
  const ir::Graph& g = *p.graph;
  runtime::check_memory_plan(g, p.memory);
  auto layer_of = [&](ir::NodeId n) {  // k of "model.layers.k...", or -1
    const std::string& scope = g.scope_of(n);
    const std::string prefix = "model.layers.";
    if (scope.compare(0, prefix.size(), prefix) != 0) return -1;
    return std::stoi(scope.substr(prefix.size()));
  };
  int checked = 0;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    const int k = layer_of(n);
    if (node.op != OpKind::AllGather || node.no_grad || k < 1) continue;
    EXPECT_EQ(node.attrs.i_or(ir::kOverlapAttr, 0), 1) << g.describe(n);
    // The previous layer's first matmul comes after the gather.
    bool ahead = false;
    for (ir::NodeId m = n + 1; m < g.num_nodes() && !ahead; ++m)
      ahead = g.node(m).op == OpKind::MatMul && layer_of(m) == k - 1 && !g.node(m).no_grad;
    EXPECT_TRUE(ahead) << g.describe(n);
    ++checked;
  }
  EXPECT_EQ(checked, 7 * 9);  // layers 1-7, nine weights each
  const compile::Program dp = compile::compile(*s.graph, s.outputs, {}, PlanSpec{.dp = 4});
  std::printf("peak per rank: DP %.1f MiB, ZeRO-3 with prefetch %.1f MiB\n",
              static_cast<double>(dp.memory.peak_bytes()) / (1 << 20),
              static_cast<double>(p.memory.peak_bytes()) / (1 << 20));
  EXPECT_LT(p.memory.peak_bytes(), dp.memory.peak_bytes());
}

TEST(Zero, Stage3GathersEachWeightOncePerPhase) {
  ir::Graph g;
  const ir::ValueId x = g.input({{8, 16}, DType::F32}, "x", /*batch=*/true);
  const std::vector<ir::ValueId> w = {g.input({{16, 32}, DType::F32}, "w1", false, 2),
                                      g.input({{32, 4}, DType::F32}, "w2", false, 2)};
  const ir::ValueId loss = ir::mean(g, ir::matmul(g, ir::silu(g, ir::matmul(g, x, w[0])), w[1]));
  const std::vector<ir::ValueId> grads = autograd::gradients(g, loss, w);
  std::vector<ir::ValueId> outputs = {loss};
  {
    ir::NoGradGuard no_grad;
    const ir::ValueId lr = ir::full(g, {}, DType::F32, 0.1);
    for (size_t i = 0; i < w.size(); ++i) {
      g.mark_gradient(grads[i]);
      const ir::ValueId zeros = ir::full(g, g.shape(w[i]), DType::F32, 0.0);
      for (ir::ValueId v :
           ir::adamw_update(g, w[i], grads[i], zeros, zeros, lr, lr, lr, 0.9, 0.99, 1e-8, 0))
        outputs.push_back(v);
    }
  }
  const compile::Program p = compile::compile(g, outputs, {}, PlanSpec{.dp = 2, .zero = 3});
  const ir::Graph& out = *p.graph;
  std::map<std::string, std::vector<bool>> gathers;  // weight -> phases (no_grad) of its gathers
  for (ir::NodeId n : p.memory.schedule) {  // what runs (a dead gather may stay in the graph)
    if (out.node(n).op != OpKind::AllGather) continue;
    const ir::Node& input = out.producer(out.node(n).inputs[0]);
    ASSERT_EQ(input.op, OpKind::Input);
    gathers[input.name].push_back(out.node(n).no_grad);
  }
  EXPECT_EQ(gathers["w1"], std::vector<bool>{false});
  EXPECT_EQ(gathers["w2"], (std::vector<bool>{false, true}));
  EXPECT_EQ(nodes_of(out, OpKind::ReduceScatter).size(), 2u);
  std::vector<int64_t> updated;  // elements each update writes: half of w1's 512, of w2's 128
  for (ir::NodeId n : nodes_of(out, OpKind::AdamWUpdate))
    updated.push_back(out.shape(out.node(n).outputs[0]).numel());
  EXPECT_EQ(updated, (std::vector<int64_t>{256, 64}));
  for (size_t k = 1; k < outputs.size(); ++k) EXPECT_EQ(p.shards_of(p.local(outputs[k])), 2) << k;
  EXPECT_EQ(p.shards_of(p.local(loss)), 1);
}

TEST(Recompute, BlocksAreScopesEndingInANumber) {
  EXPECT_EQ(compile::block_of_scope("model.layers.3.mlp.up_proj"), "model.layers.3");
  EXPECT_EQ(compile::block_of_scope("model.layers.12"), "model.layers.12");
  EXPECT_EQ(compile::block_of_scope("h.0.attn.3x"), "h.0");
  EXPECT_EQ(compile::block_of_scope("model.norm"), "");
  EXPECT_EQ(compile::block_of_scope(""), "");
}

// The 58M Llama's step with its layers replayed in the backward: each layer's forward runs
// twice (once marked as backward), nothing else is replayed, and the activations the plan
// holds at its peak shrink.
TEST(Recompute, LayersAreReplayedInTheBackwardAndThePeakShrinks) {
  const LlamaStep s = llama_steady_step();
  const compile::Program plain = compile::compile(*s.graph, s.outputs, {}, PlanSpec{});
  const compile::Program again =
      compile::compile(*s.graph, s.outputs, {}, compile::parse_plan_spec("recompute=block"));
  auto count = [](const compile::Program& p, OpKind op, bool no_grad) {
    int n = 0;
    for (ir::NodeId id : p.memory.schedule)
      n += p.graph->node(id).op == op && p.graph->node(id).no_grad == no_grad;
    return n;
  };
  // 8 layers: one forward attention each, and one more replayed per layer.
  EXPECT_EQ(count(plain, OpKind::Attention, false), 8);
  EXPECT_EQ(count(plain, OpKind::Attention, true), 0);
  EXPECT_EQ(count(again, OpKind::Attention, false), 8);
  EXPECT_EQ(count(again, OpKind::Attention, true), 8);
  // The lm_head and the loss are outside every layer: not replayed.
  EXPECT_EQ(count(again, OpKind::CrossEntropy, true), 0);
  std::printf("arena: %.1f MiB plain, %.1f MiB with recomputation\n",
              static_cast<double>(plain.memory.arena_bytes) / (1 << 20),
              static_cast<double>(again.memory.arena_bytes) / (1 << 20));
  EXPECT_LT(again.memory.arena_bytes, plain.memory.arena_bytes * 3 / 4);
}

// The 58M Llama step cut into pipeline stages: each layer, each AdamW update and the loss run
// on one stage; the stage holding the LM head (five layers' FLOPs) gets fewer layers; every
// send has its receive on the peer, with the same tag, type and place in the order, so the
// stages cannot wait on each other in a cycle; each stage ends with the loss.
TEST(PipelinePass, TheLlamaStepCutsIntoStagesThatSendEachOtherWhatTheyRead) {
  const LlamaStep s = llama_steady_step();
  const int updates = static_cast<int>(nodes_of(*s.graph, OpKind::AdamWUpdate).size());
  ir::ValueId loss = ir::kNoValue;
  for (ir::NodeId n : nodes_of(*s.graph, OpKind::CrossEntropy)) loss = s.graph->node(n).outputs[0];
  for (const PlanSpec& plan : {PlanSpec{.pp = 2}, PlanSpec{.pp = 4}, PlanSpec{.dp = 2, .pp = 2}}) {
    SCOPED_TRACE(plan.str());
    std::vector<compile::Program> stages;
    for (int k = 0; k < plan.pp; ++k)
      stages.push_back(compile::compile(*s.graph, s.outputs, {}, plan, {.stage = k}));
    int attention = 0, adamw = 0;
    std::vector<int> layers;
    auto type_of = [](const ir::Graph& g, ir::ValueId v) {
      return g.shape(v).str() + dtype_name(g.dtype(v));
    };
    // (from, to) -> the (tag, type) of each transfer, as the sender and the receiver see it.
    std::map<std::pair<int, int>, std::vector<std::pair<int64_t, std::string>>> sent, received;
    for (int k = 0; k < plan.pp; ++k) {
      const ir::Graph& g = *stages[k].graph;
      layers.push_back(0);
      int64_t last_tag = -1;
      for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
        const ir::Node& node = g.node(n);
        layers.back() += node.op == OpKind::Attention && !node.no_grad;
        adamw += node.op == OpKind::AdamWUpdate;
        if (node.op != OpKind::Send && node.op != OpKind::Recv) continue;
        const int64_t tag = node.attrs.i("tag");
        EXPECT_GT(tag, last_tag) << "stage " << k << " transfers out of order";
        last_tag = tag;
        EXPECT_EQ(node.attrs.i("group"), compile::kPipelineGroup);
        const int peer = static_cast<int>(node.attrs.i("peer"));
        if (node.op == OpKind::Send)
          sent[{k, peer}].push_back({tag, type_of(g, node.inputs[0])});
        else
          received[{peer, k}].push_back({tag, type_of(g, node.outputs[0])});
      }
      attention += layers.back();
      EXPECT_GE(layers.back(), 1) << "stage " << k;
      EXPECT_EQ(stages[k].sends.size(), [&] {
        size_t n = 0;
        for (const auto& [route, list] : sent)
          if (route.first == k) n += list.size();
        return n;
      }());
      EXPECT_NE(stages[k].local(loss), ir::kNoValue) << "stage " << k << " has no loss";
      EXPECT_EQ(stages[k].transfers, stages[0].transfers);
    }
    EXPECT_EQ(attention, 8);
    EXPECT_EQ(adamw, updates);
    EXPECT_EQ(sent, received);
    EXPECT_FALSE(sent.empty());
    if (plan.pp == 2) {
      EXPECT_GT(layers[0], layers[1]) << "the LM head's stage has fewer layers";
    }
    // The state lives on one stage: local there, another stage's everywhere else.
    for (ir::ValueId v : s.outputs) {
      if (v == loss) continue;
      int holders = 0;
      for (int k = 0; k < plan.pp; ++k) {
        const auto it = stages[k].output_stage.find(v);
        ASSERT_NE(it, stages[k].output_stage.end()) << "v" << v << " on stage " << k;
        EXPECT_EQ(it->second.stage == k, stages[k].local(v) != ir::kNoValue);
        EXPECT_EQ(it->second.stage, stages[0].output_stage.at(v).stage);
        holders += stages[k].local(v) != ir::kNoValue;
      }
      EXPECT_EQ(holders, 1) << "v" << v;
    }
  }
  EXPECT_NE(error_of([&] {
              compile::compile(*s.graph, s.outputs, {}, PlanSpec{.pp = 9});
            }).find("needs at least as many blocks"),
            std::string::npos);
}
}  // namespace

// Tensor parallelism over two ranks finds Megatron-LM's layout in the Llama step by itself:
// q, k, v, gate, up and the LM head split along their output axis, o and down along their
// input axis, two all-reduces of the residual stream per layer in the forward and two in the
// backward, and the moments and updates of every split weight kept as this rank's block.
TEST(TensorParallelPass, TheLlamaStepSplitsItsWeightsAsMegatronDoes) {
  const LlamaStep s = llama_steady_step();
  const int layers = 8;
  // A later step: the split state is bound as the blocks the plan left.
  const compile::Program p =
      compile::compile(*s.graph, s.outputs, {}, PlanSpec{.tp = 2}, {.state_as_blocks = true});
  const ir::Graph& g = *p.graph;
  std::map<int64_t, int> split_inputs;  // axis -> inputs bound as blocks along it
  int residual_sums = 0, row_sums = 0;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.op == OpKind::Input && node.attrs.has(compile::kSplitAxisAttr))
      ++split_inputs[node.attrs.i(compile::kSplitAxisAttr)];
    if (node.op == OpKind::AllReduce && node.attrs.i_or("group", 0) == 1) {
      const Shape& shape = g.shape(node.inputs[0]);
      residual_sums += shape == Shape({8, 256, 512});
      row_sums += shape == Shape({8 * 256});  // the rows' target logits
      EXPECT_TRUE(shape == Shape({8, 256, 512}) || shape == Shape({8 * 256})) << shape.str();
    }
  }
  // Each weight with its two moments: 5 column-parallel per layer, the head and the
  // embedding (vocab-parallel), 2 row-parallel.
  EXPECT_EQ(split_inputs[0], 3 * (5 * layers + 2));
  EXPECT_EQ(split_inputs[1], 3 * 2 * layers);
  // Two per layer forward and two backward, the embedding's partial lookup and the head's
  // input gradient (its contraction runs over the split vocabulary), as in Megatron.
  EXPECT_EQ(residual_sums, 4 * layers + 2);
  EXPECT_EQ(row_sums, 1);
  // Updates, moments and gradients of the split weights, the head's and embedding's too.
  EXPECT_EQ(p.output_axes.size(), static_cast<size_t>(4 * (7 * layers + 2)));
  // Attention runs on this rank's 4 of the 8 heads.
  const std::vector<ir::NodeId> attention = nodes_of(g, OpKind::Attention);
  ASSERT_EQ(attention.size(), static_cast<size_t>(layers));
  EXPECT_EQ(g.shape(g.node(attention[0]).inputs[0]), Shape({8, 256, 4, 64}));
  // The loss and the embedding are vocabulary-parallel: nothing is gathered, no rank holds a
  // value of the logits' whole [B, T, V] (nor their [B T, V] rows), and the rows' logsumexps
  // are what crosses ranks: one gather of [1, B T] per rank.
  EXPECT_EQ(p.tp_gathers, 0);
  const int64_t rows = 8 * 256, vocab = 32000;
  int lse_gathers = 0;
  for (ir::ValueId v = 0; v < g.num_values(); ++v) {
    EXPECT_NE(g.shape(v), Shape({8, 256, vocab}));
    EXPECT_NE(g.shape(v), Shape({rows, vocab}));
  }
  for (ir::NodeId n : nodes_of(g, OpKind::AllGather)) {
    EXPECT_EQ(g.shape(g.node(n).inputs[0]), Shape({1, rows}));
    ++lse_gathers;
  }
  EXPECT_EQ(lse_gathers, 1);
  const std::vector<ir::NodeId> losses = nodes_of(g, OpKind::VocabShardCrossEntropy);
  ASSERT_EQ(losses.size(), 1u);
  EXPECT_EQ(g.shape(g.node(losses[0]).inputs[0]), Shape({rows, vocab / 2}));
  ASSERT_EQ(nodes_of(g, OpKind::VocabShardCrossEntropyBackward).size(), 1u);
  EXPECT_TRUE(nodes_of(g, OpKind::CrossEntropy).empty());
  // The embedding's weight is bound as its half of the vocabulary, looked up by both ranks'
  // kernels and its gradient made as that half.
  const std::vector<ir::NodeId> lookups = nodes_of(g, OpKind::VocabShardEmbedding);
  ASSERT_EQ(lookups.size(), 1u);
  const ir::Node& weight = g.producer(g.node(lookups[0]).inputs[0]);
  EXPECT_EQ(weight.op, OpKind::Input);
  EXPECT_EQ(weight.attrs.i(compile::kSplitAxisAttr), 0);
  EXPECT_EQ(g.shape(weight.outputs[0]), Shape({vocab / 2, 512}));
  const std::vector<ir::NodeId> grads = nodes_of(g, OpKind::VocabShardEmbeddingBackward);
  ASSERT_EQ(grads.size(), 1u);
  EXPECT_EQ(g.shape(g.node(grads[0]).outputs[0]), Shape({vocab / 2, 512}));
  EXPECT_TRUE(nodes_of(g, OpKind::Embedding).empty());
  // Each rank holds half of every matmul and embedding weight with its moments, and the
  // whole norms (read by no matmul).
  size_t expected = 0;
  for (ir::NodeId n : nodes_of(*s.graph, OpKind::AdamWUpdate)) {
    const ir::ValueId w = s.graph->node(n).inputs[0];
    const size_t bytes = s.graph->type(w).bytes();
    expected += 3 * (s.graph->shape(w).rank() == 2 ? bytes / 2 : bytes);
  }
  EXPECT_EQ(p.resident.parameters + p.resident.optimizer_states, expected);
  // The first step binds the whole tensors: each rank cuts out its blocks (a LocalShard over
  // the tensor-parallel group each), moving the row-parallel ones' input axis to the front for
  // it and back (two permutes each); every other count is the same.
  const compile::Program first = compile::compile(*s.graph, s.outputs, {}, PlanSpec{.tp = 2});
  int cuts = 0, whole_inputs = 0, blocks = 0;
  for (ir::NodeId n = 0; n < first.graph->num_nodes(); ++n) {
    const ir::Node& node = first.graph->node(n);
    cuts += node.op == OpKind::LocalShard && node.attrs.i("group") == 1;
    whole_inputs += node.op == OpKind::Input;
    blocks += node.op == OpKind::Input && node.attrs.has(compile::kSplitAxisAttr);
  }
  int later_cuts = 0;
  for (ir::NodeId n : nodes_of(g, OpKind::LocalShard))
    later_cuts += g.node(n).attrs.i("group") == 1;
  // Every 2-D weight with its moments: 7 per layer, the head and the embedding.
  EXPECT_EQ(cuts, later_cuts + 3 * (7 * layers + 2));
  EXPECT_EQ(blocks, 0);
  EXPECT_EQ(whole_inputs, static_cast<int>(nodes_of(g, OpKind::Input).size()));
  EXPECT_EQ(nodes_of(*first.graph, OpKind::Permute).size(),
            nodes_of(g, OpKind::Permute).size() + 2 * 3 * 2 * layers);
  EXPECT_EQ(first.output_axes.size(), p.output_axes.size());
  EXPECT_EQ(first.resident.total(), p.resident.total());
}

// GPT-2 ties its embedding to the LM head: the lookup, which reads wte first, places it
// along the vocabulary, and the head's matmul reads that same block (its output axis), so the
// logits are vocabulary blocks, nothing is gathered and wte's gradient (the lookup's block
// plus the head's) is a block too.
TEST(TensorParallelPass, GPT2sTiedEmbeddingIsSplitOnceAlongTheVocabulary) {
  io::Gpt2Config c;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_positions = 32;
  c.vocab_size = 100;
  const Device meta = meta_device();
  models::Gpt2LMHeadModel model(c, 1, meta);
  optim::AdamW opt(model.parameters(), {.lr = 1e-4});
  Tensor ids = Tensor::empty({4, 32}, DType::I64, meta);
  ids.as_batch();
  model.forward(ids, Tensor(), ids).loss.backward();
  opt.step();
  sync(meta);
  const std::shared_ptr<const ir::Graph> step = last_flush_graph(meta);
  const compile::Program p = compile::compile(*step, requested_outputs(*step), {},
                                              PlanSpec{.tp = 2}, {.state_as_blocks = true});
  const ir::Graph& g = *p.graph;
  // What is gathered is GPT-2's own (its fused qkv and [in, out] weights have no
  // tensor-parallel rule yet) and the rows' logsumexps: nothing of the vocabulary's size.
  for (ir::NodeId n : nodes_of(g, OpKind::AllGather))
    for (int64_t d : g.shape(g.node(n).outputs[0]).dims()) EXPECT_NE(d % 50, 0) << g.describe(n);
  for (ir::ValueId v = 0; v < g.num_values(); ++v) {
    EXPECT_NE(g.shape(v), Shape({4, 32, 100}));
    EXPECT_NE(g.shape(v), Shape({4 * 32, 100}));
  }
  const std::vector<ir::NodeId> lookups = nodes_of(g, OpKind::VocabShardEmbedding);
  ASSERT_FALSE(lookups.empty());
  const ir::ValueId wte = g.node(lookups[0]).inputs[0];
  EXPECT_EQ(g.shape(wte), Shape({50, 64}));
  EXPECT_EQ(g.producer(wte).attrs.i(compile::kSplitAxisAttr), 0);
  int head_reads = 0;  // the head reads the lookup's block itself (or its low-precision copy)
  for (ir::NodeId n : nodes_of(g, OpKind::MatMul))
    head_reads += g.node(n).inputs[1] == wte && g.shape(g.node(n).outputs[0]).dims().back() == 50;
  EXPECT_GE(head_reads, 1);
  EXPECT_EQ(nodes_of(g, OpKind::VocabShardCrossEntropy).size(), 1u);
  // wte's update and moments are this rank's half, requested outputs kept as blocks, and so
  // is its marked gradient.
  int vocab_blocks = 0;
  for (const auto& [v, axis] : p.output_axes)
    vocab_blocks += g.shape(v) == Shape({50, 64}) && axis == 0;
  EXPECT_EQ(vocab_blocks, 3);
  int vocab_gradients = 0;
  for (ir::ValueId v : g.gradients()) vocab_gradients += g.shape(v) == Shape({50, 64});
  EXPECT_EQ(vocab_gradients, 1);
}

// DP x TP: the data-parallel pass runs on the tensor-parallel graph, each rank reading its
// rows and summing its blocks of the gradients over its data-parallel group (group 0).
TEST(TensorParallelPass, DataParallelismRunsOnTheTensorParallelGraph) {
  const LlamaStep s = llama_steady_step();
  const compile::Program tp =
      compile::compile(*s.graph, s.outputs, {}, PlanSpec{.tp = 2}, {.state_as_blocks = true});
  const compile::Program both =
      compile::compile(*s.graph, s.outputs, {}, PlanSpec{.dp = 2, .tp = 2});
  EXPECT_EQ(both.batch_gathers, 0);
  size_t summed = 0;
  for (ir::NodeId n : nodes_of(*both.graph, OpKind::AllReduce)) {
    const ir::Node& node = both.graph->node(n);
    if (node.attrs.i_or("group", 0) != 0) continue;
    for (ir::ValueId v : node.inputs) summed += both.graph->type(v).bytes();
  }
  size_t gradients = 0;
  for (ir::ValueId v : tp.graph->gradients()) gradients += tp.graph->type(v).bytes();
  EXPECT_GT(gradients, 0u);
  EXPECT_GE(summed, gradients);  // every gradient block, plus the loss's sum and count
  EXPECT_LT(summed, gradients + 64);
  // The vocabulary-parallel loss runs on this rank's rows of its half of the vocabulary.
  const std::vector<ir::NodeId> losses = nodes_of(*both.graph, OpKind::VocabShardCrossEntropy);
  ASSERT_EQ(losses.size(), 1u);
  EXPECT_EQ(both.graph->shape(both.graph->node(losses[0]).inputs[0]),
            Shape({8 * 256 / 2, 32000 / 2}));
  // ZeRO shards the tensor-parallel blocks further over the data-parallel ranks.
  const compile::Program zero =
      compile::compile(*s.graph, s.outputs, {}, PlanSpec{.dp = 2, .tp = 2, .zero = 1});
  EXPECT_LT(zero.resident.optimizer_states, both.resident.optimizer_states * 0.51);
  // A step after the first under ZeRO-3 reads each weight and moment as a flat ZeRO block of
  // its tensor-parallel block: the inputs keep the split they are blocks of.
  auto split_inputs = [](const ir::Graph& g) {
    std::map<int64_t, int> count;  // axis -> inputs bound as blocks along it
    for (ir::NodeId n = 0; n < g.num_nodes(); ++n)
      if (g.node(n).op == OpKind::Input && g.node(n).attrs.has(compile::kSplitAxisAttr))
        ++count[g.node(n).attrs.i(compile::kSplitAxisAttr)];
    return count;
  };
  const compile::Program steady = compile::compile(
      *s.graph, s.outputs, {}, PlanSpec{.dp = 2, .tp = 2, .zero = 3}, {.state_as_blocks = true});
  int sharded_splits = 0;
  for (ir::NodeId n = 0; n < steady.graph->num_nodes(); ++n) {
    const ir::Node& node = steady.graph->node(n);
    sharded_splits += node.op == OpKind::Input && node.attrs.i_or("shards", 1) == 2 &&
                      node.attrs.has(compile::kSplitAxisAttr);
  }
  EXPECT_EQ(split_inputs(*steady.graph), split_inputs(*tp.graph));
  EXPECT_EQ(sharded_splits, split_inputs(*tp.graph)[0] + split_inputs(*tp.graph)[1]);
}
// The search of a model it can trace at any depth compiles each plan at 1 and 2 blocks and
// reads the 8-block step off the line through them: the resident bytes and FLOPs equal those
// of the 8-block program compiled whole, and so does the peak of every plan whose gradients
// are not all-reduced in 25 MiB buckets (ZeRO 2 and 3 reduce each alone; tensor parallelism
// sums none). Buckets hold a number of blocks' gradients that changes with depth; this model's
// blocks (12 MiB of gradients, under a bucket) are the worst case, where the line lies up to
// 10% above the peak (never below: a chosen plan must fit) and 1% off the time. A large
// model's blocks fill many buckets each, and the error vanishes.
TEST(ModelSearch, TwoDepthsGiveTheWholeModelsPeakAndFlopsExactly) {
  const compile::StepTracer trace = [](int layers, int64_t batch) {
    const LlamaStep s = llama_steady_step(layers, batch);
    return compile::TracedStep{s.graph, requested_outputs(*s.graph)};
  };
  const LlamaStep whole = llama_steady_step(8, 8);
  const std::vector<ir::ValueId> outputs = requested_outputs(*whole.graph);
  for (const PlanSpec& plan :
       {PlanSpec{.dp = 4}, PlanSpec{.dp = 4, .zero = 1}, PlanSpec{.dp = 4, .zero = 2},
        PlanSpec{.dp = 4, .zero = 3, .recompute = true}, PlanSpec{.dp = 2, .tp = 2},
        PlanSpec{.dp = 2, .tp = 2, .zero = 3}, PlanSpec{.tp = 4, .recompute = true}}) {
    compile::ModelSearchOptions o;
    o.layers = 8;
    o.batch = 8;
    o.search.devices = plan.devices();
    o.search.profile = compile::assumed_cpu_profile();
    o.search.plans = {plan};
    const compile::SearchResult r = compile::search_model(trace, o);
    ASSERT_EQ(r.candidates.size(), 1u);
    const compile::Candidate& c = r.candidates[0];
    ASSERT_TRUE(c.fits) << plan.str() << ": " << c.dropped;
    const compile::Program p =
        compile::compile(*whole.graph, outputs, {}, plan, {.state_as_blocks = true});
    const size_t peak = compile::input_bytes(*p.graph) + p.memory.peak_bytes();
    const bool buckets = plan.dp > 1 && plan.zero < 2;
    if (buckets) {
      EXPECT_GE(c.peak_bytes, peak) << plan.str();
      EXPECT_LE(static_cast<double>(c.peak_bytes), 1.1 * static_cast<double>(peak)) << plan.str();
    } else {
      EXPECT_EQ(c.peak_bytes, peak) << plan.str();
    }
    EXPECT_EQ(c.resident.parameters, p.resident.parameters) << plan.str();
    EXPECT_EQ(c.resident.optimizer_states, p.resident.optimizer_states) << plan.str();
    const planner::StepEstimate e = planner::estimate_step(
        *p.graph, p.memory.schedule, compile::assumed_cpu_profile(), {plan.dp, plan.tp});
    EXPECT_NEAR(c.flops, e.flops, e.flops * 1e-12) << plan.str();
    EXPECT_NEAR(c.step_seconds, e.seconds, e.seconds * (buckets ? 0.01 : 1e-9)) << plan.str();
  }
}

// Candidates of a model: pipeline stages divide the blocks and micro-batches feed them.
TEST(ModelSearch, CandidatesAddPipelineStagesAndMicroBatches) {
  const std::vector<PlanSpec> plans = compile::model_candidate_plans(
      {.flavor = {.devices = 8, .devices_per_host = 4}, .layers = 6, .batch = 16});
  std::set<int> stages;
  for (const PlanSpec& p : plans) {
    EXPECT_EQ(p.devices(), 8) << p.spec();
    EXPECT_EQ(6 % p.pp, 0) << p.spec();
    EXPECT_LE(p.tp, 4) << p.spec();
    EXPECT_GE(p.micro_batches, p.pp) << p.spec();
    EXPECT_EQ(16 % (p.dp * p.micro_batches), 0) << p.spec();
    stages.insert(p.pp);
  }
  EXPECT_EQ(stages, std::set<int>({1, 2}));  // 4 and 8 do not divide 6 blocks
}

// No candidate is predicted faster than its device can be: on every catalogue device, each
// fitting candidate's FLOPs over its predicted time stay under the device's peak for the
// step's dtype, and its bytes sent under the link's rate.
TEST(Search, NoPredictionExceedsAPeakOnAnyCatalogueDevice) {
  const LlamaStep s = llama_steady_step();
  for (const planner::DeviceProfile& device : planner::device_catalogue()) {
    compile::SearchOptions o;
    o.devices = 8;
    o.steady = true;
    o.profile = device;
    o.device_memory = static_cast<size_t>(device.memory_bytes);
    o.runnable_only = false;
    const compile::SearchResult r = compile::search_plans(*s.graph, s.outputs, {}, o);
    int costed = 0;
    for (const compile::Candidate& c : r.candidates) {
      if (!c.fits) continue;
      ++costed;
      EXPECT_LE(c.flops / c.step_seconds, device.peak_flops(DType::F32))
          << device.name << " " << c.plan.str();
      EXPECT_LE(c.comm_bytes / c.step_seconds, device.intra_host_link)
          << device.name << " " << c.plan.str();
    }
    EXPECT_GT(costed, 0) << device.name;
  }
}

}  // namespace solo
