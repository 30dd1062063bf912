// The JSON files of a Hugging Face model directory (tokenizer.json,
// tokenizer_config.json), as the tokenizer and the GGUF vocabulary writer
// read them. Internal to partition/: nlohmann::json is a private dependency.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace splitlm::partition {

// The parsed file. Throws Exception(kNotFound) when it cannot be read,
// Exception(kCorrupt) naming `path` when it is not valid JSON.
nlohmann::json ReadJsonFile(const std::string& path);

// A token named in tokenizer_config.json: a string or {"content": ...};
// "" when `key` is absent or of another shape.
std::string ConfigTokenText(const nlohmann::json& config, const char* key);

}  // namespace splitlm::partition
