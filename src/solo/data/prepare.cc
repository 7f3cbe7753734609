#include "solo/data/prepare.h"

#include "solo/core/error.h"
#include "solo/data/token_file.h"

namespace solo::data {

PrepareStats prepare_token_file(const Tokenizer& tok, const std::string& input,
                                const std::string& output, const PrepareOptions& opt) {
  TokenFileWriter writer(output, token_dtype_for_vocab(tok.vocab_size()));
  for_each_document(input, opt.format, opt.jsonl_field, [&](std::string_view doc) {
    writer.add_document(tok.encode(doc, opt.prepend_bos, opt.append_eos));
  });
  SOLO_CHECK(writer.num_documents() > 0, "prepare: ", input, " has no documents");
  PrepareStats stats{writer.num_documents(), writer.num_tokens()};
  writer.finish();
  return stats;
}

}  // namespace solo::data
