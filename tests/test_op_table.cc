// The op table (core/op_info.h) is consistent: every op has its row, and the facts that
// depend on each other agree (a collective is priced as one, an in-place pair lies within the
// op's arity...). The graph checks each node's arity against the table as it is built, so the
// rows' arities are exercised by every test that builds a graph.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "solo/core/op_info.h"
#include "solo/ir/ops.h"
#include "solo/runtime/memory_plan.h"
#include "test_support.h"

namespace solo {
namespace {

std::vector<OpKind> all_ops() {
  std::vector<OpKind> ops;
  for (int i = 0; i < kNumOps; ++i) ops.push_back(static_cast<OpKind>(i));
  return ops;
}

TEST(OpTable, EveryOpHasItsRowUnderItsName) {
  std::set<std::string> names;
  for (OpKind op : all_ops()) {
    const OpInfo& info = op_info(op);
    EXPECT_EQ(info.op, op) << static_cast<int>(op);
    ASSERT_NE(info.name, nullptr) << static_cast<int>(op);
    EXPECT_STREQ(info.name, op_name(op));
    EXPECT_TRUE(names.insert(info.name).second) << info.name << " twice";
  }
  EXPECT_STREQ(op_name(OpKind::AdamWUpdate), "AdamWUpdate");
  EXPECT_STREQ(op_name(static_cast<OpKind>(kNumOps)), "invalid");
}

TEST(OpTable, ArityIsARange) {
  for (OpKind op : all_ops()) {
    const OpInfo& info = op_info(op);
    EXPECT_GE(info.min_inputs, 0) << info.name;
    EXPECT_TRUE(info.max_inputs == kAnyArity || info.max_inputs >= info.min_inputs) << info.name;
    EXPECT_TRUE(info.outputs == kAnyArity || info.outputs >= 1) << info.name;
  }
  EXPECT_EQ(op_info(OpKind::Input).max_inputs, 0);
}

TEST(OpTable, InplacePairsLieWithinTheArity) {
  for (OpKind op : all_ops()) {
    const OpInfo& info = op_info(op);
    std::set<int> outputs, inputs;
    for (const InplacePair& p : info.inplace) {
      if (p.output < 0 && p.input < 0) continue;  // an unused slot
      EXPECT_GE(p.output, 0) << info.name;
      EXPECT_GE(p.input, 0) << info.name;
      EXPECT_TRUE(info.outputs == kAnyArity || p.output < info.outputs) << info.name;
      // Only a position every node of the op has (optional operands come last).
      EXPECT_LT(p.input, info.min_inputs) << info.name;
      EXPECT_TRUE(outputs.insert(p.output).second) << info.name << ": output written twice";
      EXPECT_TRUE(inputs.insert(p.input).second) << info.name << ": input taken twice";
      EXPECT_EQ(info.inplace_input(p.output), p.input) << info.name;
    }
    EXPECT_EQ(info.inplace_input(-1), -1) << info.name;
  }
  const OpInfo& adamw = op_info(OpKind::AdamWUpdate);  // p' over p, m' over m, v' over v
  EXPECT_EQ(adamw.inplace_input(0), 0);
  EXPECT_EQ(adamw.inplace_input(1), 2);
  EXPECT_EQ(adamw.inplace_input(2), 3);
  EXPECT_EQ(adamw.inplace_input(3), -1);
  EXPECT_EQ(op_info(OpKind::Add).inplace_input(0), -1);
}

TEST(OpTable, CollectivesAreExactlyTheCommunicatorOps) {
  // LocalShard sends nothing, but only the executor knows the rank whose block it copies.
  const std::set<OpKind> expected = {OpKind::AllReduce, OpKind::AllGather, OpKind::ReduceScatter,
                                     OpKind::Send,      OpKind::Recv,      OpKind::LocalShard};
  for (OpKind op : all_ops()) {
    const OpInfo& info = op_info(op);
    EXPECT_EQ(info.collective, expected.count(op) == 1) << info.name;
    EXPECT_EQ(info.collective && op != OpKind::LocalShard, info.cost == OpCostClass::Collective)
        << info.name;
    // Only a collective starts on a communicator or is run for its effect alone.
    EXPECT_TRUE(!info.async_start || info.collective) << info.name;
    EXPECT_TRUE(!info.side_effect || info.collective) << info.name;
    EXPECT_FALSE(info.collective && info.moves_elements) << info.name;
  }
  EXPECT_TRUE(op_info(OpKind::AllReduce).async_start);
  EXPECT_TRUE(op_info(OpKind::Send).side_effect);
  EXPECT_TRUE(op_info(OpKind::Recv).side_effect);  // its peer's send runs: so must it
}

TEST(OpTable, OnlyInputsAndViewsCostNothing) {
  for (OpKind op : all_ops()) {
    const OpInfo& info = op_info(op);
    const bool free = op == OpKind::Input || info.view;
    EXPECT_EQ(info.cost == OpCostClass::None, free) << info.name;
    EXPECT_EQ(info.kernel(), !free && !info.collective) << info.name;
    // A view aliases its one operand.
    EXPECT_TRUE(!info.view || (info.min_inputs == 1 && info.max_inputs == 1 && info.outputs == 1))
        << info.name;
  }
  EXPECT_EQ(op_info(OpKind::MatMul).cost, OpCostClass::MatMul);
  EXPECT_EQ(op_info(OpKind::Attention).cost, OpCostClass::Attention);
  EXPECT_EQ(op_info(OpKind::AttentionBackward).cost, OpCostClass::Attention);
  EXPECT_EQ(op_info(OpKind::Exp).cost, OpCostClass::MemoryBound);
}

// The graph refuses a node whose arity is not its op's.
TEST(OpTable, TheGraphChecksArity) {
  ir::Graph g;
  const ir::ValueId x = g.input({{2}, DType::F32}, "x");
  EXPECT_NE(test::error_of([&] { g.add(OpKind::Add, {x}, g.type(x)); }).find("1 inputs"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              g.add_node(OpKind::SwigluBackward, {x, x, x}, {g.type(x)});
            }).find("1 outputs (the op has 2)"),
            std::string::npos);
  // An AllReduce bucket has one output per input.
  EXPECT_EQ(g.add_node(OpKind::AllReduce, {x, x}, {g.type(x), g.type(x)},
                       Attrs().set("average", int64_t{0}))
                .size(),
            2u);
}

// A send whose operand the requested outputs compute runs with them; one that needs more
// work is left to the caller (it requests the send's token).
TEST(OpTable, TheMemoryPlanKeepsSendsOfComputedValues) {
  ir::Graph g;
  const ir::ValueId x = g.input({{4}, DType::F32}, "x");
  const ir::ValueId y = ir::exp(g, x);
  const ir::ValueId sent = ir::send(g, y, /*peer=*/1, /*tag=*/0);
  const ir::ValueId other = g.input({{4}, DType::F32}, "other");
  const ir::ValueId unsent = ir::send(g, ir::neg(g, other), /*peer=*/1, /*tag=*/1);
  const runtime::MemoryPlan plan = runtime::plan_memory(g, {y});
  auto scheduled = [&](ir::ValueId v) {
    const ir::NodeId n = g.value(v).producer;
    return std::find(plan.schedule.begin(), plan.schedule.end(), n) != plan.schedule.end();
  };
  EXPECT_TRUE(scheduled(sent));
  EXPECT_FALSE(scheduled(unsent));
  EXPECT_FALSE(scheduled(other));
  EXPECT_EQ(plan.collective_groups, std::vector<int64_t>{0});
  EXPECT_EQ(plan.outputs, std::vector<ir::ValueId>{y});
}

}  // namespace
}  // namespace solo
