#include "core/error.h"

#include <unistd.h>

#include <cstdlib>

namespace strata {

std::string process_location() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '?';
  std::string location = host;
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* rank = std::getenv(var)) return location + " (rank " + rank + ")";
  }
  return location;
}

void throw_internal(const char* file, int line, const std::string& message) {
  throw Error(detail::concat(message, " [", file, ":", line, " on ", process_location(), "]"),
              kExitInternal);
}

void throw_input(const std::string& message) {
  throw Error(message, kExitBadInput);
}

}  // namespace strata
