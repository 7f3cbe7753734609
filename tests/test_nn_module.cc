// nn::Module: dotted parameter names, module scopes on graph nodes, state dicts with
// strict checking, train/eval, and Linear against a hand computation.
#include <gtest/gtest.h>

#include "solo/core/error.h"
#include "solo/nn/module.h"

namespace solo::nn {
namespace {

class Block : public Module {
 public:
  Block() {
    norm = register_module("norm", std::make_shared<RMSNorm>(4, 1e-6));
    proj = register_module("proj", std::make_shared<Linear>(4, 3, true, 7));
  }
  Tensor forward(const Tensor& x) {
    ScopeGuard scope(scope_name());
    return proj->forward(norm->forward(x));
  }
  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<Linear> proj;
};

class Net : public Module {
 public:
  Net() { block = register_module("layers.0", std::make_shared<Block>()); }
  std::shared_ptr<Block> block;
};

TEST(Module, NamesParametersByDottedPath) {
  Net net;
  std::vector<std::string> names;
  for (auto& [name, t] : net.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"layers.0.norm.weight", "layers.0.proj.weight",
                                             "layers.0.proj.bias"}));
  EXPECT_EQ(net.num_parameters(), 4 + 12 + 3);
  for (Tensor* t : net.parameters()) EXPECT_TRUE(t->requires_grad());
}

TEST(Module, ForwardRecordsModuleScopes) {
  Net net;
  const Tensor x = Tensor::randn({2, 4}, 1.0, 3);
  const Tensor y = net.block->forward(x);
  const ir::Graph& g = pending_graph();
  bool saw_proj = false;
  for (int n = 0; n < g.num_nodes(); ++n) saw_proj |= g.scope_of(n) == "layers.0.proj";
  EXPECT_TRUE(saw_proj);
  sync();
}

TEST(Module, LinearComputesXWTransposePlusBias) {
  Linear lin(2, 2, true, 1);
  lin.weight.assign_(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}));
  lin.bias.assign_(Tensor::from_vector(std::vector<float>{10, 20}, {2}));
  const Tensor x = Tensor::from_vector(std::vector<float>{1, 1}, {1, 2});
  EXPECT_EQ(lin.forward(x).to_vector(), std::vector<float>({13, 27}));
}

TEST(Module, StateDictRoundTripAndStrictErrors) {
  Net a, b;
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.block->proj->weight.to_vector(), a.block->proj->weight.to_vector());
  auto state = a.state_dict();
  state.erase("layers.0.proj.bias");
  EXPECT_THROW(b.load_state_dict(state), Error);
  b.load_state_dict(state, /*strict=*/false);  // missing names are skipped
  state = a.state_dict();
  state["layers.0.extra"] = Tensor::zeros({1});
  EXPECT_THROW(b.load_state_dict(state), Error);
  state = a.state_dict();
  state["layers.0.proj.weight"] = Tensor::zeros({4, 3});
  try {
    b.load_state_dict(state);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.proj.weight"), std::string::npos) << e.what();
  }
}

TEST(Module, TrainEvalPropagates) {
  Net net;
  net.eval();
  EXPECT_FALSE(net.block->proj->is_training());
  net.train();
  EXPECT_TRUE(net.block->norm->is_training());
}

}  // namespace
}  // namespace solo::nn
