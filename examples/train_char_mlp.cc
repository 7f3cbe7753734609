// A character-level language model (an MLP over the previous `context` characters) trained
// with SGD on a plain-text corpus. The demo of the lazy tensor stack until the Llama example
// lands: every step is captured as one graph (forward, backward, update) and flushed once.
//   ./build/examples/train_char_mlp [corpus_dir] [steps]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "solo/core/error.h"
#include "solo/tensor/tensor.h"

namespace fs = std::filesystem;
using namespace solo;

namespace {

// Concatenated text of every plain file in dir (fortune files; .dat/.u8 indexes skipped).
std::string read_corpus(const fs::path& dir) {
  SOLO_CHECK(fs::is_directory(dir), "corpus directory ", dir.string(),
             " does not exist; install Debian's 'fortunes' package (scripts/setup.sh) or pass a "
             "directory");
  std::string text;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() != ".dat" && e.path().extension() != ".u8")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str();
  }
  SOLO_CHECK(text.size() > 10000, "corpus in ", dir.string(), " is too small (", text.size(),
             " bytes)");
  return text;
}

}  // namespace

int main(int argc, char** argv) try {
  const fs::path corpus_dir = argc > 1 ? argv[1] : "/usr/share/games/fortunes";
  const int steps = argc > 2 ? std::stoi(argv[2]) : 300;
  const int64_t context = 8, vocab = 128, embed_dim = 32, hidden = 256, batch = 256;
  const double lr = 0.5;

  const std::string text = read_corpus(corpus_dir);
  std::printf("[info] corpus: %zu characters from %s\n", text.size(), corpus_dir.c_str());

  // Parameters.
  Tensor emb = Tensor::randn({vocab, embed_dim}, 0.5, 1).set_name("emb");
  Tensor w1 = Tensor::randn({hidden, context * embed_dim},
                            1.0 / std::sqrt(static_cast<double>(context * embed_dim)), 2)
                  .set_name("w1");
  Tensor b1 = Tensor::zeros({hidden}).set_name("b1");
  Tensor w2 = Tensor::randn({vocab, hidden}, 1.0 / std::sqrt(static_cast<double>(hidden)), 3)
                  .set_name("w2");
  Tensor b2 = Tensor::zeros({vocab}).set_name("b2");
  std::vector<Tensor*> params = {&emb, &w1, &b1, &w2, &b2};
  for (Tensor* p : params) p->requires_grad_();

  uint64_t rng = 12345;
  auto next = [&rng] {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return rng >> 33;
  };
  std::vector<int64_t> ids(static_cast<size_t>(batch * context)),
      targets(static_cast<size_t>(batch));
  double first = 0, last = 0;
  for (int step = 1; step <= steps; ++step) {
    for (int64_t b = 0; b < batch; ++b) {  // random windows of the corpus
      const size_t start = next() % (text.size() - static_cast<size_t>(context) - 1);
      for (int64_t t = 0; t < context; ++t)
        ids[static_cast<size_t>(b * context + t)] =
            static_cast<unsigned char>(text[start + static_cast<size_t>(t)]) % vocab;
      targets[static_cast<size_t>(b)] =
          static_cast<unsigned char>(text[start + static_cast<size_t>(context)]) % vocab;
    }
    const Tensor x = Tensor::from_vector(ids, {batch, context});
    const Tensor y = Tensor::from_vector(targets, {batch});

    const Tensor h = reshape(embedding(emb, x), {batch, context * embed_dim});
    const Tensor logits = linear(gelu(linear(h, w1, b1)), w2, b2);
    const Tensor loss = cross_entropy(logits, y);
    loss.backward();
    {
      NoGradGuard no_grad;
      for (Tensor* p : params) {
        p->assign_(*p - p->grad() * lr);
        p->zero_grad();
      }
    }
    const double l = loss.item();  // flushes the whole step graph once
    if (step == 1) first = l;
    last = l;
    if (step == 1 || step % 25 == 0)
      std::printf("| INFO | [Step %d/%d] | Loss: %.4f\n", step, steps, l);
  }
  std::printf("[info] loss %.3f -> %.3f over %d steps\n", first, last, steps);
  return last < first ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
