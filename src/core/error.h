// One error path: STRATA_CHECK throws, only main catches.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace strata {

// Exit status for input the user can fix (bad file, flag or field).
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitInternal = 1;

// An error carrying its exit status; the message is already one line for the user. An internal
// error also says where it was raised ("src/x.cpp:12 on host (rank 1)"), which the CLI prints
// only under --verbose.
class Error : public std::runtime_error {
 public:
  Error(const std::string& message, int exit_status, std::string where = {})
      : std::runtime_error(message), exit_status_(exit_status), where_(std::move(where)) {}
  int exit_status() const { return exit_status_; }
  const std::string& where() const { return where_; }

 private:
  int exit_status_;
  std::string where_;
};

// `text` as one line of valid UTF-8 for a terminal: bytes that are not part of a valid UTF-8
// sequence, and control characters (newlines too), become \xHH.
std::string printable_line(const std::string& text);

// Where this process runs, for error messages: "host (rank N)".
std::string process_location();

[[noreturn]] void throw_internal(const char* file, int line, const std::string& message);
[[noreturn]] void throw_input(const std::string& message);

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace strata

// An invariant of the program; failure is a bug or a failed system call.
#define STRATA_CHECK(cond, ...)                                                            \
  do {                                                                                     \
    if (!(cond))                                                                           \
      ::strata::throw_internal(__FILE__, __LINE__, ::strata::detail::concat(__VA_ARGS__)); \
  } while (0)

// A property of what the user gave us; the message names the file, field or flag.
#define STRATA_INPUT_CHECK(cond, ...)                                          \
  do {                                                                         \
    if (!(cond)) ::strata::throw_input(::strata::detail::concat(__VA_ARGS__)); \
  } while (0)
