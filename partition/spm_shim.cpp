// The only translation unit that sees libsentencepiece: a C ABI loaded with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND) by tokenizer.cpp (see tokenizer.h).
#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

extern "C" {

__attribute__((visibility("default"))) void* splitlm_spm_open(const char* path, char* err,
                                                              int err_cap) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  try {  // no exception crosses this C ABI
    auto status = sp->Load(path);
    if (status.ok()) return sp;
    std::snprintf(err, err_cap, "%s", status.ToString().c_str());
  } catch (const std::exception& e) {
    std::snprintf(err, err_cap, "%s", e.what());
  }
  delete sp;
  return nullptr;
}

__attribute__((visibility("default"))) void splitlm_spm_close(void* h) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(h);
}

__attribute__((visibility("default"))) int splitlm_spm_vocab_size(void* h) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(h)->GetPieceSize();
}

// Returns the number of ids; writes at most `cap`. Negative on failure.
__attribute__((visibility("default"))) int splitlm_spm_encode(void* h, const char* text, int len,
                                                              int* ids, int cap) {
  std::vector<int> out;
  auto status =
      static_cast<sentencepiece::SentencePieceProcessor*>(h)->Encode(std::string(text, len), &out);
  if (!status.ok()) return -1;
  for (int i = 0; i < static_cast<int>(out.size()) && i < cap; ++i) ids[i] = out[i];
  return static_cast<int>(out.size());
}

// Returns the length of the text; writes at most `cap` bytes. Negative on failure.
__attribute__((visibility("default"))) int splitlm_spm_decode(void* h, const int* ids, int n,
                                                              char* buf, int cap) {
  std::string text;
  auto status = static_cast<sentencepiece::SentencePieceProcessor*>(h)->Decode(
      std::vector<int>(ids, ids + n), &text);
  if (!status.ok()) return -1;
  // NOLINTNEXTLINE(bugprone-not-null-terminated-result): the C interface returns a length
  std::memcpy(buf, text.data(), text.size() < static_cast<size_t>(cap) ? text.size() : cap);
  return static_cast<int>(text.size());
}

// Writes the piece of `id` (at most `cap` bytes) and returns its length;
// *kind is 0 normal, 1 control, 2 unknown, 3 byte, 4 unused. Negative for a
// bad id.
__attribute__((visibility("default"))) int splitlm_spm_piece(void* h, int id, char* buf, int cap,
                                                             int* kind) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(h);
  if (id < 0 || id >= sp->GetPieceSize()) return -1;
  const std::string& p = sp->IdToPiece(id);
  *kind = sp->IsControl(id)   ? 1
          : sp->IsUnknown(id) ? 2
          : sp->IsByte(id)    ? 3
          : sp->IsUnused(id)  ? 4
                              : 0;
  // NOLINTNEXTLINE(bugprone-not-null-terminated-result): the C interface returns a length
  std::memcpy(buf, p.data(), p.size() < static_cast<size_t>(cap) ? p.size() : cap);
  return static_cast<int>(p.size());
}

// The BOS and EOS ids (-1 when the model has none).
__attribute__((visibility("default"))) int splitlm_spm_bos_id(void* h) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(h)->bos_id();
}
__attribute__((visibility("default"))) int splitlm_spm_eos_id(void* h) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(h)->eos_id();
}
}
