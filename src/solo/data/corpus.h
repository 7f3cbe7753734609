// Reading raw text corpora as documents, for tokenizer training and token-file preparation.
//
// Text files: documents are blank-line-separated paragraphs, or, in fortune files (detected by
// any line that is exactly "%"), the entries between "%" lines. Lines are joined with "\n";
// leading and trailing blank lines of a document are dropped. JSONL files: one JSON object per
// line, the document is the string in `field`. A directory means every regular file in it,
// in sorted name order (so output does not depend on the file system), skipping fortune index
// files (*.dat) and their *.u8 links.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace solo::data {

enum class CorpusFormat { Text, Jsonl };

CorpusFormat corpus_format_from_name(const std::string& name);  // "text" | "jsonl"; throws

// The files `path` stands for: itself if a file, else the directory's files as described above.
// Throws solo::Error when the path is missing or a directory has no files.
std::vector<std::string> corpus_files(const std::string& path);

// Splits one text file's contents into documents (paragraphs or fortune entries).
std::vector<std::string> split_text_documents(std::string_view contents);

// Calls `fn` for every document under `path`, file by file, in order.
void for_each_document(const std::string& path, CorpusFormat format, const std::string& jsonl_field,
                       const std::function<void(std::string_view)>& fn);

std::vector<std::string> read_documents(const std::string& path,
                                        CorpusFormat format = CorpusFormat::Text,
                                        const std::string& jsonl_field = "text");

}  // namespace solo::data
