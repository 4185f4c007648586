#include "test_util.h"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

namespace strata::test {

nlohmann::json load_cases(const std::string& model) {
  std::ifstream in(model_dir(model) + "/cases.json");
  EXPECT_TRUE(in.good()) << "missing " << model << "/cases.json";
  return nlohmann::json::parse(in);
}

Workload workload(const std::string& model) {
  Workload w;
  const auto cases = load_cases(model);
  for (const auto& c : cases["cases"]) {
    for (size_t b = 0; b < c["input_ids"].size(); ++b) {
      w.prompts.push_back({c["input_ids"][b].get<std::vector<int32_t>>(), w.prompts.size()});
      w.golden_ids.push_back(c["output_ids"][b].get<std::vector<int32_t>>());
      w.golden_logprobs.push_back(c["token_logprobs"][b].get<std::vector<float>>());
    }
  }
  return w;
}

std::vector<std::vector<double>> forced_rows(const std::string& model,
                                             const std::vector<int32_t>& ids) {
  auto source = open_weight_source(model_dir(model));
  std::vector<Prompt> prompts;
  for (size_t t = 1; t < ids.size(); ++t) {
    prompts.push_back({std::vector<int32_t>(ids.begin(), ids.begin() + t), t});
  }
  EngineOptions options;
  options.policy.gpu_batch_size = static_cast<int64_t>(prompts.size());
  options.max_prompt_len = static_cast<int64_t>(ids.size());
  options.gen_len = 1;
  const auto engine = make_engine(*source, options);
  GenerateOptions gen;
  gen.gen_len = 1;
  gen.ignore_eos = true;
  std::vector<std::vector<float>> logits;
  engine->generate(prompts, gen, nullptr, &logits);
  std::vector<std::vector<double>> rows;
  for (const auto& row : logits) {
    const float mx = *std::max_element(row.begin(), row.end());
    double sum = 0;
    for (float v : row) sum += std::exp(static_cast<double>(v - mx));
    std::vector<double> out;
    for (float v : row) out.push_back(static_cast<double>(v - mx) - std::log(sum));
    rows.push_back(std::move(out));
  }
  return rows;
}

std::vector<double> forced_logprobs(const std::string& model, const std::vector<int32_t>& ids) {
  const auto rows = forced_rows(model, ids);
  std::vector<double> out;
  for (size_t t = 1; t < ids.size(); ++t) out.push_back(rows[t - 1][static_cast<size_t>(ids[t])]);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string batch_line(const std::string& id, const nlohmann::json& body) {
  return nlohmann::json{
             {"custom_id", id}, {"method", "POST"}, {"url", "/v1/completions"}, {"body", body}}
             .dump() +
         "\n";
}

std::vector<Generation> run_engine(const WeightSource& source, const Workload& w,
                                   const EngineOptions& options, EngineStats* stats) {
  const auto engine = make_engine(source, options);
  GenerateOptions gen;
  gen.gen_len = options.gen_len;
  gen.ignore_eos = true;
  std::vector<Generation> all;
  const size_t block = static_cast<size_t>(options.policy.effective_batch());
  for (size_t first = 0; first < w.prompts.size(); first += block) {
    const size_t n = std::min(block, w.prompts.size() - first);
    auto part = engine->generate(std::span(w.prompts).subspan(first, n), gen, nullptr);
    all.insert(all.end(), part.begin(), part.end());
  }
  if (stats) *stats = engine->stats();
  return all;
}

std::vector<Generation> run_engine(const WeightSource& source, const Workload& w,
                                   const Policy& policy, const std::string& offload_dir) {
  EngineOptions options;
  options.policy = policy;
  options.offload_dir = offload_dir;
  options.max_prompt_len = 100;
  options.gen_len = 20;
  return run_engine(source, w, options);
}

uint64_t seed() {
  static const uint64_t value = [] {
    const char* env = std::getenv("STRATA_TEST_SEED");
    const uint64_t s = env && *env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("test seed %llu (set STRATA_TEST_SEED to replay)\n",
                static_cast<unsigned long long>(s));
    return s;
  }();
  return value;
}

std::mt19937_64 rng() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "";
  if (info) ::testing::Test::RecordProperty("seed", std::to_string(seed()));
  return std::mt19937_64(seed() ^ std::hash<std::string>{}(name));
}

HardwareProfile gpu_profile() {
  HardwareProfile hw;
  hw.name = "test-gpu";
  hw.has_gpu = true;
  hw.h2d_gbps = 10;
  hw.d2h_gbps = 5;
  hw.disk_read_gbps = 1;
  hw.disk_write_gbps = 2;
  hw.gpu_gemm_gflops = 1000;
  hw.gpu_gemm_decode_gflops = 100;
  hw.gpu_attention_gflops = 500;
  hw.gpu_attention_decode_gflops = 50;
  hw.cpu_attention_gflops = 10;
  hw.gpu_mem_bytes = 1ull << 30;
  hw.cpu_mem_bytes = 8ull << 30;
  hw.disk_bytes = 100ull << 30;
  return hw;
}

TempDir::TempDir() {
  std::random_device rd;
  // STRATA_TEST_TMPDIR moves the tests' offload dirs off a tmpfs /tmp (O_DIRECT needs a real
  // file system before Linux 6.6).
  const char* env = std::getenv("STRATA_TEST_TMPDIR");
  const std::filesystem::path base =
      env && *env ? std::filesystem::path(env) : std::filesystem::temp_directory_path();
  path_ = base / ("strata-test-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

RunResult run_strata(const std::string& args, const std::string& shell_prefix) {
  TempDir dir;
  const std::string out = dir.file("out"), err = dir.file("err");
  const std::string command =
      shell_prefix + kBinary + " " + args + " >" + out + " 2>" + err + " </dev/null";
  const int status = std::system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(out), read_text(err)};
}

void expect_cli_error(const std::string& args, std::initializer_list<std::string> parts) {
  const auto r = run_strata(args);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  for (const auto& part : parts) EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
}

std::string generate_args(const std::string& input, const std::string& extra) {
  return "generate --model " + model_dir("opt-pub-tiny") + " --input " + input + " " + extra;
}

}  // namespace strata::test
