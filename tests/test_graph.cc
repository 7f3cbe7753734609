// Graph IR: structural hash, module scopes, no-grad marking, and shape errors at the op call.
#include <gtest/gtest.h>

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {
namespace {

// A small program: y = sum((x + b) * x) over axis 1.
uint64_t program_hash(const Shape& x_shape, DType dtype, bool use_mul) {
  Graph g;
  const ValueId x = g.input({x_shape, dtype}, "x");
  const ValueId b = g.input({{x_shape[1]}, dtype}, "b");
  const ValueId s = add(g, x, b);
  const ValueId p = use_mul ? mul(g, s, x) : add(g, s, x);
  sum(g, p, {1});
  return g.structural_hash();
}

TEST(Graph, SameProgramSameHash) {
  EXPECT_EQ(program_hash({4, 8}, DType::F32, true), program_hash({4, 8}, DType::F32, true));
}

TEST(Graph, HashChangesWithOpShapeDtypeAndAttrs) {
  const uint64_t base = program_hash({4, 8}, DType::F32, true);
  EXPECT_NE(base, program_hash({4, 8}, DType::F32, false));  // op
  EXPECT_NE(base, program_hash({4, 9}, DType::F32, true));   // shape
  EXPECT_NE(base, program_hash({4, 8}, DType::F64, true));   // dtype
  Graph g1, g2;
  const ValueId x1 = g1.input({{2, 3}, DType::F32}, "x");
  const ValueId x2 = g2.input({{2, 3}, DType::F32}, "x");
  sum(g1, x1, {0});
  sum(g2, x2, {1});
  EXPECT_NE(g1.structural_hash(), g2.structural_hash());  // attribute
}

TEST(Graph, HashIgnoresNamesAndScopes) {
  Graph g1, g2;
  const ValueId a = g1.input({{2}, DType::F32}, "weight");
  add(g1, a, a);
  {
    ScopeGuard scope("model");
    const ValueId b = g2.input({{2}, DType::F32}, "other_name");
    add(g2, b, b);
  }
  EXPECT_EQ(g1.structural_hash(), g2.structural_hash());
}

TEST(Graph, NodesRecordNestedModuleScope) {
  Graph g;
  const ValueId x = g.input({{2}, DType::F32}, "x");
  ValueId y;
  {
    ScopeGuard model("model");
    ScopeGuard layer("layers.3");
    ScopeGuard mlp("mlp");
    y = add(g, x, x);
  }
  const ValueId z = add(g, y, x);
  EXPECT_EQ(g.scope_of(g.value(y).producer), "model.layers.3.mlp");
  EXPECT_EQ(g.scope_of(g.value(z).producer), "");
  EXPECT_EQ(current_scope(), "");
}

TEST(Graph, NoGradGuardMarksNodes) {
  Graph g;
  const ValueId x = g.input({{2}, DType::F32}, "x");
  ValueId y;
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(grad_enabled());
    y = add(g, x, x);
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE(g.producer(y).no_grad);
  EXPECT_FALSE(g.producer(add(g, x, x)).no_grad);
}

TEST(Graph, ShapeErrorAtOpCallNamesOpAndShapes) {
  Graph g;
  const ValueId a = g.input({{2, 3}, DType::F32}, "a");
  const ValueId b = g.input({{4, 3}, DType::F32}, "b");
  try {
    add(g, a, b);
    FAIL() << "add of [2, 3] and [4, 3] must throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("Add"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 3]"), std::string::npos) << msg;
  }
  EXPECT_EQ(g.num_nodes(), 2);  // nothing was appended
  const ValueId c = g.input({{2, 3}, DType::F64}, "c");
  EXPECT_THROW(add(g, a, c), Error);  // dtype mismatch
  EXPECT_THROW(reshape(g, a, {4, 2}), Error);
  EXPECT_THROW(sum(g, a, {2}), Error);
}

TEST(Graph, ReshapeInfersMinusOne) {
  Graph g;
  const ValueId a = g.input({{2, 3, 4}, DType::F32}, "a");
  EXPECT_EQ(g.shape(reshape(g, a, {-1, 4})), Shape({6, 4}));
  EXPECT_THROW(reshape(g, a, {-1, -1}), Error);
}

TEST(Graph, DumpDescribesNodes) {
  Graph g;
  const ValueId a = g.input({{2}, DType::F32}, "a");
  sum(g, a);
  const std::string d = g.dump();
  EXPECT_NE(d.find("Input"), std::string::npos);
  EXPECT_NE(d.find("Sum"), std::string::npos);
  EXPECT_NE(d.find("f32[2]"), std::string::npos);
}

}  // namespace
}  // namespace solo::ir
