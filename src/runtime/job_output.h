// A results file that survives kills: lines are appended whole, synced every few seconds and at
// the end, and a re-run of the same job reads what is there and adds only what is missing. The
// job (model, generation parameters, a hash of the input) is recorded beside the output in
// OUTPUT.job.json, so a different job on the same output is told apart and refused.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

// FNV-1a, 64 bits, as 16 hex digits: tells inputs apart (not a cryptographic hash).
std::string content_hash(std::string_view bytes);

std::string job_file_path(const std::string& output);

// What an output already holds for a job.
struct ExistingOutput {
  uint64_t complete_bytes = 0;      // its complete lines (a torn last line is dropped on open)
  std::vector<nlohmann::json> ids;  // the value of `id_key` of each complete line, in order
  bool torn = false;
};

// Reads `output` for a run of `job`: nothing when it is missing or empty (or `restart`); else its
// complete lines, whose job file must hold `job` (an input error saying which field differs and
// how to start over otherwise, or naming a complete line that is not a JSON object with
// `id_key`).
ExistingOutput read_existing_output(const std::string& output, const nlohmann::json& job,
                                    const std::string& id_key, bool restart);

class DurableOutput {
 public:
  // Records `job` in the job file and opens `path` for appending after its first `keep_bytes`
  // (dropping a torn line, or everything on --restart). fsync at most every `sync_interval_s`
  // (0: after every line).
  DurableOutput(const std::string& path, const nlohmann::json& job, uint64_t keep_bytes,
                double sync_interval_s);
  ~DurableOutput();
  DurableOutput(const DurableOutput&) = delete;
  DurableOutput& operator=(const DurableOutput&) = delete;

  // One whole line (a '\n' is added) in one write.
  void append(std::string line);
  // fsync when something is unsynced and the interval has passed (or `force`).
  void sync(bool force = false);
  int64_t lines_written() const { return lines_; }
  int fd() const { return fd_; }
  int64_t syncs() const { return syncs_; }
  double sync_seconds() const { return sync_s_; }

 private:
  std::string path_;
  int fd_ = -1;
  double interval_s_;
  bool dirty_ = false;
  int64_t lines_ = 0;
  int64_t syncs_ = 0;
  double sync_s_ = 0;
  std::chrono::steady_clock::time_point last_sync_;
};

// While alive, SIGINT / SIGTERM / SIGHUP end the process with one line on stderr saying how many
// results are safe in the output and how to resume, after syncing the output; then the signal
// goes on to the handler that was there before (by default: the process ends by it).
class InterruptNotice {
 public:
  // `resume_command`: the command line to run again.
  InterruptNotice(const std::string& output, const std::string& resume_command);
  ~InterruptNotice();
  InterruptNotice(const InterruptNotice&) = delete;
  InterruptNotice& operator=(const InterruptNotice&) = delete;

  // Results in the output now (kept from before plus appended); `fd` is synced on a signal.
  void set(int64_t results, int fd);
};

}  // namespace strata
