// The SentencePiece implementation of Tokenizer (a .model file; Llama 1/2, Mistral 7B), and
// training one.
#pragma once
#include <memory>
#include <string>

#include "solo/data/tokenizer_impl.h"

namespace solo::data {

// Loads a SentencePiece model; throws solo::Error naming `file` when it is not one.
std::unique_ptr<TokenizerImpl> load_sentencepiece(const std::string& file);

}  // namespace solo::data
