// Removing the disk tier's files when the process ends by a signal or by exit() with stores
// still alive. See disk_store.h for the behaviour; this is its mechanism.
#pragma once

#include <string>

namespace strata {

// While alive, `path` is unlinked if the process gets SIGINT, SIGTERM or SIGHUP, or calls exit()
// without destroying its owner. The first registration installs the handlers; the last one to
// go puts back what was there before. Registering does not create or remove the file.
class CleanupRegistration {
 public:
  explicit CleanupRegistration(const std::string& path);
  ~CleanupRegistration();
  CleanupRegistration(const CleanupRegistration&) = delete;
  CleanupRegistration& operator=(const CleanupRegistration&) = delete;

 private:
  int slot_;
};

}  // namespace strata
