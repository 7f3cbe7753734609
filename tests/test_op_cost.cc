// The cost side of the planner: the device catalogue, FLOPs and bytes per node in closed
// form, and the property that no predicted time beats the data-sheet peaks.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"
#include "solo/planner/op_cost.h"
#include "test_support.h"

namespace solo::planner {
namespace {

using ir::Graph;
using ir::ValueId;

TEST(DeviceCatalogue, EveryEntryIsPlausibleAndFoundByName) {
  EXPECT_EQ(device_catalogue().size(), 7u);
  for (const DeviceProfile& d : device_catalogue()) {
    SCOPED_TRACE(d.name);
    EXPECT_GT(d.memory_bytes, 16e9);
    EXPECT_GT(d.matrix_flops_16bit, d.vector_flops_32bit);  // matrix units outrun f32 ALUs
    EXPECT_GT(d.memory_bandwidth, 1e12);
    EXPECT_GT(d.intra_host_link, d.inter_host_link);
    for (double eff : {d.matrix_efficiency, d.memory_efficiency, d.link_efficiency}) {
      EXPECT_GT(eff, 0.0);
      EXPECT_LE(eff, 1.0);  // predictions never beat the peaks
    }
    EXPECT_EQ(&device_profile(d.name), &d);
  }
  EXPECT_EQ(device_profile("H200").memory_bandwidth, 4.8e12);
  const std::string e = test::error_of([] { device_profile("tpu-v5"); });
  EXPECT_NE(e.find("known devices: h100, h200"), std::string::npos) << e;
}

// A GPU of an unnamed kind ("gpu" in the default inventory) is costed by its driver's name.
TEST(DeviceCatalogue, AnEntryIsFoundByTheDriversModelName) {
  auto name_of = [](const char* model) {
    const planner::DeviceProfile* p = planner::device_profile_of_model(model);
    return p ? p->name : std::string("none");
  };
  EXPECT_EQ(name_of("NVIDIA H200"), "h200");
  EXPECT_EQ(name_of("NVIDIA H100 80GB HBM3"), "h100");
  EXPECT_EQ(name_of("NVIDIA A100-SXM4-40GB"), "a100-40");
  EXPECT_EQ(name_of("NVIDIA A100-SXM4-80GB"), "a100-80");
  EXPECT_EQ(name_of("AMD Instinct MI250X"), "mi250");
  EXPECT_EQ(name_of("AMD Instinct MI300X"), "mi300x");
  EXPECT_EQ(name_of("NVIDIA GeForce RTX 4090"), "none");
  EXPECT_EQ(name_of(""), "none");
}

TEST(OpCost, GemmAndAttentionFlopsInClosedForm) {
  Graph g;
  const ValueId a = g.input({{3, 16, 32}, DType::BF16}, "a");  // [batch, M, K]
  const ValueId b = g.input({{32, 8}, DType::BF16}, "b");
  const ValueId at = g.input({{32, 16}, DType::F32}, "at");  // [K, M], transposed
  const ValueId bt = g.input({{8, 32}, DType::F32}, "bt");
  const ValueId y = ir::matmul(g, a, b);
  const ValueId yt = ir::matmul(g, at, bt, /*trans_a=*/true, /*trans_b=*/true);
  const OpCost cy = op_cost(g, g.producer(y), {1});
  EXPECT_DOUBLE_EQ(cy.flops, 2.0 * 3 * 16 * 8 * 32);
  EXPECT_EQ(cy.compute, DType::BF16);
  EXPECT_DOUBLE_EQ(cy.bytes, 2.0 * (3 * 16 * 32 + 32 * 8 + 3 * 16 * 8));
  EXPECT_DOUBLE_EQ(op_cost(g, g.producer(yt), {1}).flops, 2.0 * 16 * 8 * 32);

  // q [B, T, H, D]: forward 4 B T S H D, backward 2.5 times that, causal half of each.
  const ValueId q = g.input({{2, 64, 4, 16}, DType::BF16}, "q");
  for (bool causal : {false, true}) {
    const std::vector<ValueId> o = ir::attention(g, q, q, q, ir::kNoValue, 0.25, causal);
    const std::vector<ValueId> d =
        ir::attention_backward(g, q, q, q, ir::kNoValue, o[0], o[1], o[0], 0.25, causal);
    const double full = 4.0 * 2 * 64 * 64 * 4 * 16 / (causal ? 2 : 1);
    EXPECT_DOUBLE_EQ(op_cost(g, g.producer(o[0]), {1}).flops, full);
    EXPECT_DOUBLE_EQ(op_cost(g, g.producer(d[0]), {1}).flops, 2.5 * full);
  }
  // A sliding window W: query t sees min(t + 1, W) keys, W T - W (W - 1) / 2 pairs in all; a
  // window of at least T is plain causal.
  for (int64_t w : {1, 16, 64, 100}) {
    const std::vector<ValueId> o = ir::attention(g, q, q, q, ir::kNoValue, 0.25, true, w);
    const std::vector<ValueId> d =
        ir::attention_backward(g, q, q, q, ir::kNoValue, o[0], o[1], o[0], 0.25, true, w);
    const double pairs = w >= 64 ? 64.0 * 64 / 2 : double(w) * 64 - double(w) * double(w - 1) / 2;
    const double want = 4.0 * 2 * 4 * 16 * pairs;
    EXPECT_DOUBLE_EQ(op_cost(g, g.producer(o[0]), {1}).flops, want) << w;
    EXPECT_DOUBLE_EQ(op_cost(g, g.producer(d[0]), {1}).flops, 2.5 * want) << w;
  }
}

TEST(OpCost, CollectivesSendRingBytes) {
  Graph g;
  const ValueId x = g.input({{1024}, DType::F32}, "x");  // 4 KiB
  const double B = 4096;
  EXPECT_DOUBLE_EQ(op_cost(g, g.producer(ir::all_reduce(g, x, false, 1)), {1, 4}).bytes_sent,
                   2 * B * 3 / 4);
  EXPECT_DOUBLE_EQ(op_cost(g, g.producer(ir::all_gather(g, x, 8)), {1}).bytes_sent, B * 7);
  EXPECT_DOUBLE_EQ(op_cost(g, g.producer(ir::reduce_scatter(g, x, 4)), {1}).bytes_sent, B * 3 / 4);
  const OpCost one_rank = op_cost(g, g.producer(ir::all_reduce(g, x, false)), {1});
  EXPECT_DOUBLE_EQ(one_rank.bytes_sent, 0);
}

// Each collective kind at its link's rate for it (Open MPI's differ per kind), falling back to
// the all-reduce's; a local block copy (LocalShard) puts nothing on a link.
TEST(OpCost, EachCollectiveKindRunsAtItsOwnLinkRate) {
  Graph g;
  const ValueId x = g.input({{1024}, DType::F32}, "x");  // 4 KiB
  planner::DeviceProfile d = planner::device_profile("h100");
  d.link_efficiency = 1;
  d.collective_latency_s = 0;
  d.intra_host_link = 1e9;
  const OpCost rs = op_cost(g, g.producer(ir::reduce_scatter(g, x, 4)), {1});
  const OpCost ag = op_cost(g, g.producer(ir::all_gather(g, x, 4)), {1});
  EXPECT_DOUBLE_EQ(node_seconds(rs, d), 4096.0 * 3 / 4 / 1e9);  // no rate of its own
  d.reduce_scatter_link = 0.25e9;
  d.all_gather_link = 2e9;
  EXPECT_DOUBLE_EQ(node_seconds(rs, d), 4096.0 * 3 / 4 / 0.25e9);
  EXPECT_DOUBLE_EQ(node_seconds(ag, d), 4096.0 * 3 / 2e9);
  EXPECT_DOUBLE_EQ(node_seconds(ag, d, /*inter_host=*/true), 4096.0 * 3 / d.inter_host_link);
  const OpCost shard = op_cost(g, g.producer(ir::local_shard(g, x, 4)), {4});
  EXPECT_FALSE(shard.communication);
  EXPECT_DOUBLE_EQ(shard.bytes_sent, 0);
  EXPECT_DOUBLE_EQ(shard.bytes, 2 * 1024.0);  // its block read and written
}

// Every node of a small transformer-like step (forward, backward) on every device: its time
// is at least its FLOPs at the data-sheet peak and its bytes at the memory bandwidth.
TEST(OpCost, NoPredictionBeatsThePeaks) {
  Graph g;
  const ValueId x = g.input({{2, 128, 4, 32}, DType::BF16}, "x");
  const ValueId w = g.input({{128, 128}, DType::BF16}, "w");
  const ValueId att = ir::attention(g, x, x, x, ir::kNoValue, 0.17, true)[0];
  const ValueId h = ir::matmul(g, ir::reshape(g, att, {256, 128}), w);
  const ValueId loss = ir::sum(g, ir::mul(g, ir::silu(g, h), h));
  autograd::gradients(g, loss, {x, w});
  std::vector<ir::NodeId> all;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) all.push_back(n);
  for (const DeviceProfile& d : device_catalogue()) {
    SCOPED_TRACE(d.name);
    double total = 0, flops = 0;
    for (ir::NodeId n : all) {
      const OpCost c = op_cost(g, g.node(n), {1});
      const double s = node_seconds(c, d);
      EXPECT_GE(s, c.flops / d.peak_flops(c.compute)) << g.describe(n);
      EXPECT_GE(s, c.kernel && !c.communication ? c.bytes / d.memory_bandwidth : 0.0)
          << g.describe(n);
      total += s;
      flops += c.flops;
    }
    const StepEstimate e = estimate_step(g, all, d);
    EXPECT_DOUBLE_EQ(e.seconds, total);
    EXPECT_DOUBLE_EQ(e.flops, flops);
    EXPECT_NEAR(e.compute_bound_s + e.memory_bound_s + e.communication_s, e.seconds,
                1e-12 * e.seconds);
    EXPECT_GT(e.kernels, 10);
  }
}

// The step's timeline: an all-reduce marked to overlap runs beside the compute that does not
// read it, so the step ends at max(compute, communication) + its reader; without an
// asynchronous communicator (or unmarked) every node runs in turn. Times in closed form from
// each node's own.
TEST(Timeline, AnOverlappedAllReduceHidesUnderTheComputeThatDoesNotReadIt) {
  for (bool marked : {true, false}) {
    SCOPED_TRACE(marked ? "marked to overlap" : "not marked");
    Graph g;
    const ValueId grad = g.input({{1 << 20}, DType::F32}, "grad");
    const ValueId x = g.input({{1 << 20}, DType::F32}, "x");
    const ValueId reduced = ir::all_reduce(g, grad, true, 0, marked);
    ValueId y = x;
    for (int i = 0; i < 4; ++i) y = ir::exp(g, y);  // compute that does not read `reduced`
    const ValueId sum = ir::add(g, reduced, y);
    std::vector<ir::NodeId> schedule;
    for (ir::NodeId n = 0; n < g.num_nodes(); ++n)
      if (g.node(n).op != OpKind::Input) schedule.push_back(n);
    const DeviceProfile& h100 = device_profile("h100");
    const std::vector<int64_t> groups = {8};
    auto seconds_of = [&](ValueId v) {
      return node_seconds(op_cost(g, g.producer(v), groups), h100, false);
    };
    const double reduce = seconds_of(reduced), exp = seconds_of(y), add = seconds_of(sum);
    ASSERT_GT(reduce, 4 * exp);  // 4 MiB over NVLink outlasts four 4 MiB kernels
    const StepEstimate serial = estimate_step(g, schedule, h100, groups, {}, false);
    EXPECT_NEAR(serial.seconds, reduce + 4 * exp + add, 1e-12);
    EXPECT_NEAR(serial.hidden_s, 0, 1e-12);
    const StepEstimate overlapped = estimate_step(g, schedule, h100, groups, {}, true);
    if (marked) {
      EXPECT_NEAR(overlapped.seconds, reduce + add, 1e-12);  // the exps ran under it
      EXPECT_NEAR(overlapped.hidden_s, 4 * exp, 1e-12);
    } else {
      EXPECT_NEAR(overlapped.seconds, serial.seconds, 1e-12);
    }
  }
}

}  // namespace
}  // namespace solo::planner
