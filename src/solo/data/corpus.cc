#include "solo/data/corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "solo/core/error.h"

namespace solo::data {
namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SOLO_CHECK(in, "corpus: cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  SOLO_CHECK(!in.bad(), "corpus: error reading ", path);
  return ss.str();
}

// Lines without their terminator (and without a trailing '\r', for CRLF files).
std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string_view::npos) end = s.size();
    std::string_view line = s.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t'; });
}

// Joins lines [begin, end) after dropping blank lines at both ends; "" if nothing is left.
std::string join_trimmed(const std::vector<std::string_view>& lines, size_t begin, size_t end) {
  while (begin < end && is_blank(lines[begin])) ++begin;
  while (end > begin && is_blank(lines[end - 1])) --end;
  std::string doc;
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) doc += '\n';
    doc += lines[i];
  }
  return doc;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

CorpusFormat corpus_format_from_name(const std::string& name) {
  if (name == "text") return CorpusFormat::Text;
  if (name == "jsonl") return CorpusFormat::Jsonl;
  SOLO_FAIL("corpus: unknown format '", name, "'; use text or jsonl");
}

std::vector<std::string> corpus_files(const std::string& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  SOLO_CHECK(fs::exists(st), "corpus: ", path, " does not exist");
  if (!fs::is_directory(st)) return {path};
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(path)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || ends_with(name, ".dat") || ends_with(name, ".u8")) continue;
    if (!name.empty() && name[0] == '.') continue;  // hidden files are editor/VCS leftovers
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  SOLO_CHECK(!files.empty(), "corpus: directory ", path, " has no input files");
  return files;
}

std::vector<std::string> split_text_documents(std::string_view contents) {
  auto lines = split_lines(contents);
  bool fortune = std::any_of(lines.begin(), lines.end(), [](auto l) { return l == "%"; });
  std::vector<std::string> docs;
  size_t begin = 0;
  for (size_t i = 0; i <= lines.size(); ++i) {
    bool sep = i == lines.size() || (fortune ? lines[i] == "%" : is_blank(lines[i]));
    if (!sep) continue;
    std::string doc = join_trimmed(lines, begin, i);
    if (!doc.empty()) docs.push_back(std::move(doc));
    begin = i + 1;
  }
  return docs;
}

void for_each_document(const std::string& path, CorpusFormat format, const std::string& jsonl_field,
                       const std::function<void(std::string_view)>& fn) {
  for (const auto& file : corpus_files(path)) {
    std::string contents = read_file(file);
    if (format == CorpusFormat::Text) {
      for (const auto& doc : split_text_documents(contents)) fn(doc);
      continue;
    }
    auto lines = split_lines(contents);
    for (size_t i = 0; i < lines.size(); ++i) {
      if (is_blank(lines[i])) continue;
      auto j = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
      SOLO_CHECK(!j.is_discarded(), "corpus: ", file, ":", i + 1, " is not valid JSON");
      SOLO_CHECK(j.is_object() && j.contains(jsonl_field) && j[jsonl_field].is_string(),
                 "corpus: ", file, ":", i + 1, " has no string field '", jsonl_field,
                 "'; pass --jsonl-field with the name of the text field");
      fn(j[jsonl_field].get_ref<const std::string&>());
    }
  }
}

std::vector<std::string> read_documents(const std::string& path, CorpusFormat format,
                                        const std::string& jsonl_field) {
  std::vector<std::string> docs;
  for_each_document(path, format, jsonl_field, [&](std::string_view d) { docs.emplace_back(d); });
  return docs;
}

}  // namespace solo::data
