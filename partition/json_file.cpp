#include "partition/json_file.h"

#include <fstream>
#include <sstream>

#include "transport/error.h"

namespace splitlm::partition {

nlohmann::json ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Exception(Exception::kNotFound, path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw Exception(Exception::kCorrupt, path + ": not valid JSON (" + e.what() + ")");
  }
}

std::string ConfigTokenText(const nlohmann::json& config, const char* key) {
  if (!config.contains(key)) return "";
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return "";
}

}  // namespace splitlm::partition
