// Writes a seed corpus for fuzz_protocol: one valid message of every type,
// each with a payload where it has one, in the fuzzer's input layout
// (2-byte header length, header frame, payload frame).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "transport/protocol.h"

using namespace splitlm::transport;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  Hello hello;
  hello.codecs = {Codec::kF32, Codec::kInt8};
  hello.num_layers = 12;
  hello.layer_end = 12;
  hello.layer_decode_us = {1.0f, 2.0f};
  hello.agent = "seed";
  Forward fwd;
  fwd.count = 2;
  fwd.tensor = {Codec::kInt8, 2, 8, 2 * (4 + 8)};
  ForwardResult res;
  res.tokens = {1, 2, 3};
  res.logprobs = {{1, -0.5f}};
  std::vector<std::pair<Message, std::string>> seeds = {
      {hello, ""},
      {OpenSession{1, 3, Codec::kF16, false}, ""},
      {CloseSession{1}, ""},
      {fwd, std::string(24, '\1')},
      {res, ""},
      {Error{ErrorCode::kBusy, "busy", 1, 2}, ""},
      {Ping{1, 64}, std::string(64, 'p')},
      {Pong{1}, ""},
      {Heartbeat{}, ""},
  };
  int n = 0;
  for (const auto& [msg, payload] : seeds) {
    const std::string header = EncodeMessage(msg);
    std::string input;
    input.push_back(static_cast<char>(header.size() >> 8));
    input.push_back(static_cast<char>(header.size() & 0xff));
    input += header + payload;
    std::ofstream(std::string(argv[1]) + "/seed-" + std::to_string(n++) + ".bin", std::ios::binary)
        << input;
  }
  return 0;
}
