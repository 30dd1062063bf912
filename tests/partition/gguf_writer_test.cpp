// The GGUF writer: what it writes parses back with every value, alignment and
// padding as written; re-writing llama.cpp's own file gives its bytes; and a
// failure leaves no file behind.
#include "partition/gguf_writer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using testing::TempDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

GgufValue Scalar(GgufType t, int64_t i = 0, double r = 0, std::string s = {}) {
  GgufValue v;
  v.type = t;
  v.integer = i;
  v.real = r;
  v.text = std::move(s);
  return v;
}

TEST(GgufWriter, EveryValueTypeAlignmentAndPaddingReadBack) {
  TempDir dir;
  const std::string path = dir.Sub("all.gguf");
  const std::vector<std::pair<std::string, GgufValue>> kvs = {
      {"u8", Scalar(GgufType::kUint8, 200)},
      {"i8", Scalar(GgufType::kInt8, -100)},
      {"u16", Scalar(GgufType::kUint16, 60000)},
      {"i16", Scalar(GgufType::kInt16, -30000)},
      {"u32", Scalar(GgufType::kUint32, 4000000000)},
      {"i32", Scalar(GgufType::kInt32, -2000000000)},
      {"u64", Scalar(GgufType::kUint64, int64_t{1} << 60)},
      {"i64", Scalar(GgufType::kInt64, -(int64_t{1} << 60))},
      {"f32", Scalar(GgufType::kFloat32, 0, 0.25)},
      {"f64", Scalar(GgufType::kFloat64, 0, 1e300)},
      {"bool", Scalar(GgufType::kBool, 1)},
      {"str", Scalar(GgufType::kString, 0, 0, "h\xc3\xa9llo")},
      {"general.alignment", Scalar(GgufType::kUint32, 64)}};
  GgufValue strings = GgufArray(GgufType::kString);
  strings.texts = {"a", "", "\xe2\x96\x81the"};
  GgufValue floats = GgufArray(GgufType::kFloat32);
  floats.reals = {-1.5, 0.0, 3.25};
  GgufValue ints = GgufArray(GgufType::kInt32);
  ints.integers = {1, -2, 3};
  {
    GgufWriter w(path);
    for (const auto& [k, v] : kvs) w.AddKeyValue(k, v);
    w.AddKeyValue("strings", strings);
    w.AddKeyValue("floats", floats);
    w.AddKeyValue("ints", ints);
    w.AddTensor("a", {3}, 0);  // 12 bytes: padded to 64
    w.AddTensor("b", {32, 2}, 8);
    const std::vector<uint8_t> data(12 + 2 * 34, 0xAB);
    w.WriteTensorData(data.data(), 5);  // in pieces across the tensor boundary
    w.WriteTensorData(data.data() + 5, data.size() - 5);
    w.Commit();
  }
  const std::string bytes = ReadAll(path);
  const GgufHeader h =
      ParseGgufHeader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
  ASSERT_EQ(3u, h.version);
  ASSERT_EQ(64u, h.alignment);
  for (const auto& [k, v] : kvs) {
    const GgufValue& got = h.metadata.at(k);
    EXPECT_EQ(v.type, got.type) << k;
    EXPECT_EQ(v.integer, got.integer) << k;
    EXPECT_EQ(v.real, got.real) << k;
    EXPECT_EQ(v.text, got.text) << k;
  }
  EXPECT_EQ(strings.texts, h.metadata.at("strings").texts);
  EXPECT_EQ(floats.reals, h.metadata.at("floats").reals);
  EXPECT_EQ(ints.integers, h.metadata.at("ints").integers);
  EXPECT_EQ(GgufType::kInt32, h.metadata.at("ints").element_type);
  std::vector<std::string> order;
  for (const auto& [k, v] : kvs) order.push_back(k);
  order.insert(order.end(), {"strings", "floats", "ints"});
  EXPECT_EQ(order, h.key_order);
  ASSERT_EQ(2u, h.tensors.size());
  EXPECT_EQ(0u, h.data_start % 64);
  EXPECT_EQ(h.data_start, h.tensors[0].offset);
  EXPECT_EQ(h.data_start + 64, h.tensors[1].offset);
  EXPECT_EQ(h.tensors[1].offset + 128, bytes.size());  // the last tensor is padded too
  for (uint64_t i = h.data_start + 12; i < h.data_start + 64; ++i) ASSERT_EQ(0, bytes[i]) << i;
  for (uint64_t i = h.tensors[1].offset + 68; i < bytes.size(); ++i) ASSERT_EQ(0, bytes[i]) << i;
}

TEST(GgufWriter, RewritesLlamaCppsFileByteForByte) {
  const auto shared = testing::SharedDir();
  if (!shared) GTEST_SKIP() << "../shared (with gguf/) not found: set SPLITLM_SHARED";
  for (const char* name :
       {"synthk-q4_k_m.gguf", "stories260K-f32.gguf", "llama-2-tiny-random.gguf"}) {
    const std::string src_path = *shared + "/gguf/" + name;
    const auto src = GgufFile::Open(src_path);
    TempDir dir;
    {
      GgufWriter w(dir.Sub("copy.gguf"));
      for (const auto& k : src->header().key_order) w.AddKeyValue(k, src->header().metadata.at(k));
      for (const auto& t : src->header().tensors) w.AddTensor(t.name, t.dims, t.type);
      for (const auto& t : src->header().tensors) w.WriteTensorData(src->data(t), t.bytes);
      w.Commit();
    }
    EXPECT_TRUE(ReadAll(src_path) == ReadAll(dir.Sub("copy.gguf"))) << name;
  }
}

bool NothingBesides(const TempDir& dir) { return std::filesystem::is_empty(dir.path()); }

TEST(GgufWriter, IncompleteDataLeavesNoFile) {
  TempDir dir;
  try {
    GgufWriter w(dir.Sub("x.gguf"));
    w.AddTensor("t", {4}, 0);
    const float v[2] = {1, 2};
    w.WriteTensorData(reinterpret_cast<const uint8_t*>(v), 8);
    w.Commit();
    FAIL();
  } catch (const Exception& e) {
    EXPECT_EQ(dir.Sub("x.gguf") + ": tensor \"t\" got 8 of its 16 bytes", e.what());
  }
  EXPECT_TRUE(NothingBesides(dir));
}

TEST(GgufWriter, BadKeysAndTensorsAreErrors) {
  TempDir dir;
  GgufWriter w(dir.Sub("x.gguf"));
  w.AddKeyValue("k", Scalar(GgufType::kUint8, 1));
  EXPECT_THROW(w.AddKeyValue("k", Scalar(GgufType::kUint8, 1)), Exception);
  EXPECT_THROW(w.AddKeyValue("general.alignment", Scalar(GgufType::kUint64, 64)), Exception);
  EXPECT_THROW(w.AddKeyValue("general.alignment", Scalar(GgufType::kUint32, 48)), Exception);
  EXPECT_THROW(w.AddTensor("q", {33}, 8), Exception);  // not a whole Q8_0 block
  EXPECT_THROW(w.AddTensor("q", {32, 0}, 8), Exception);
  EXPECT_THROW(w.AddTensor("q", {1, 1, 1, 1, 1}, 0), Exception);
  w.AddTensor("t", {1}, 0);
  EXPECT_THROW(w.AddTensor("t", {1}, 0), Exception);
  const uint8_t bytes[8] = {};
  EXPECT_THROW(w.WriteTensorData(bytes, 8), Exception);  // 4 more than "t" holds
}

}  // namespace
}  // namespace splitlm::partition
