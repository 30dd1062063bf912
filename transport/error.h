// The one exception type of every splitlm library, with a code a caller can
// switch on (as KJ's kj::Exception::Type and leveldb's Status codes).
//
// It lives here because transport is the lowest layer: partition links it,
// and everything above links both. The header is self-contained (no link
// needed beyond the include path), knows nothing of the wire, and its type is
// in namespace splitlm so that every library's code names it `Exception`.
// (transport::Error is a different thing: the wire message a worker answers
// a bad request with; see protocol.h.)
#pragma once

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <stdexcept>
#include <string>

namespace splitlm {

// Thrown for faults: bad input from a user (flags, configs, files, prompts),
// a resource that is not there, a peer that cannot be had when the caller
// asked to fail rather than fall back, a broken invariant. Expected outcomes
// (a timeout, a peer that does not answer, a full queue) are return values,
// never this. The message names the file, key, value or peer at fault.
class Exception : public std::runtime_error {
 public:
  // What kind of fault; main() maps it to an exit code (ExitCode below).
  // kInternal stays last.
  enum Code : uint8_t {
    kInvalidArgument,  // a flag, config value, prompt or request the caller can fix
    kNotFound,         // a file, profile, tensor or key that does not exist
    kCorrupt,          // a file or message whose contents are malformed
    kUnavailable,      // a peer or resource that cannot be had now (retrying may help)
    kInternal,         // a broken invariant: a bug in splitlm
  };
  static constexpr int kCodes = kInternal + 1;

  Exception(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}

  Code code() const noexcept { return code_; }

 private:
  Code code_;
};

// The code's name for messages ("invalid argument", ...); never null.
inline const char* CodeName(Exception::Code code) {
  static constexpr const char* kNames[] = {"invalid argument", "not found", "corrupt data",
                                           "unavailable", "internal error"};
  static_assert(std::size(kNames) == Exception::kCodes, "one name per Exception::Code");
  return code < Exception::kCodes ? kNames[code] : "unknown error";
}

// The process exit code a main() returns for an uncaught Exception of
// `code`, from BSD's sysexits.h: 64 usage, 66 no input, 65 data error,
// 69 unavailable, 70 internal software error. (0 is success; 1..63 stay free
// for a command's own outcomes, e.g. `splitlm plan` exits 3 when no cut is
// feasible.)
inline int ExitCode(Exception::Code code) {
  static constexpr int kExit[] = {64, 66, 65, 69, 70};
  static_assert(std::size(kExit) == Exception::kCodes, "one exit code per Exception::Code");
  return code < Exception::kCodes ? kExit[code] : 70;
}

// For main(), which catches std::exception: the exit code of `e` (an
// Exception's code, else 70 as kInternal: an exception splitlm did not
// expect, e.g. std::bad_alloc), and the line to log (what() for an Exception;
// anything else is marked as an internal error).
inline int ExitCodeOf(const std::exception& e) {
  const auto* x = dynamic_cast<const Exception*>(&e);
  return ExitCode(x ? x->code() : Exception::kInternal);
}
inline std::string MessageOf(const std::exception& e) {
  if (dynamic_cast<const Exception*>(&e)) return e.what();
  return std::string("internal error: ") + e.what();
}

// The last resort of a binary's main(): runs `body`, which reports its own
// errors; an exception from setting up (the logger, the flag table) is printed
// as "program: message" with its exit code rather than ending in
// std::terminate.
inline int RunMain(const char* program, int (*body)(int, char**), int argc, char** argv) {
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, MessageOf(e).c_str());
    return ExitCodeOf(e);
  } catch (...) {
    std::fprintf(stderr, "%s: internal error: unknown exception\n", program);
    return ExitCode(Exception::kInternal);
  }
}

}  // namespace splitlm
