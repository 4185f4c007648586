// A cluster file (configs/clusters/*.json), as Cluster::load reads it; "hardware" paths resolve
// from the repository's configs/clusters/, so the seeds' configs/hardware/ names are found.
#include <nlohmann/json.hpp>

#include "core/json_file.h"
#include "planner/cluster.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::expect_input_errors_only([&] {
    const auto json = strata::parse_json_text(strata::fuzz::text(data, size), "cluster.json");
    const auto cluster =
        strata::Cluster::from_json(json, "cluster.json", STRATA_SOURCE_DIR "/configs/clusters");
    const auto more = cluster.replicated(cluster.n_ranks() + 1);
    strata::check_rank_count(more, cluster.n_ranks() + 1);
  });
  return 0;
}
