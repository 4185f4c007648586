// Every kind of bad input gets a one-line error naming what is wrong, and exit status 2.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/weight_source.h"
#include "runtime/engine.h"
#include "runtime/machine_fit.h"
#include "runtime/sampler.h"
#include "test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using test::expect_cli_error;
using test::generate_args;
using test::run_strata;
using test::TempDir;

// A model directory copied from a reference model whose safetensors bytes and config a test
// edits.
class BrokenModel {
 public:
  explicit BrokenModel(const std::string& model = "opt-pub-tiny") {
    const std::string src = test::model_dir(model);
    config_ = nlohmann::json::parse(test::read_text(src + "/config.json"));
    bytes_ = test::read_text(src + "/model.safetensors");
    uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), 8);
    header_ = nlohmann::json::parse(bytes_.substr(8, n));
    data_ = bytes_.substr(8 + n);
  }
  nlohmann::json& config() { return config_; }
  nlohmann::json& header() { return header_; }
  std::string& data() { return data_; }
  // Writes config.json and model.safetensors (header re-encoded) and returns the directory.
  std::string write() {
    test::write_text(dir_.file("config.json"), config_.dump());
    const std::string h = header_.dump();
    const uint64_t n = h.size();
    test::write_text(dir_.file("model.safetensors"),
                     std::string(reinterpret_cast<const char*>(&n), 8) + h + data_);
    return dir_.path().string();
  }
  std::string dir() const { return dir_.path().string(); }

 private:
  TempDir dir_;
  nlohmann::json config_, header_;
  std::string bytes_, data_;
};

// Opening the model fails with an input error whose message holds every `parts`.
void expect_input_error(const std::string& dir, std::initializer_list<std::string> parts) {
  try {
    open_weight_source(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_status(), kExitBadInput);
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const auto& part : parts) EXPECT_NE(message.find(part), std::string::npos) << message;
  }
}

const char* kQ = "model.decoder.layers.0.self_attn.q_proj.weight";

TEST(BadModel, Unmodified) {
  BrokenModel m;
  EXPECT_NO_THROW(open_weight_source(m.write()));
}

TEST(BadModel, TruncatedFile) {
  BrokenModel m;
  const std::string dir = m.write();
  fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 100);
  expect_input_error(dir, {"model.safetensors", "past the end", "truncated"});
  fs::resize_file(dir + "/model.safetensors", 5);
  expect_input_error(dir, {"model.safetensors", "truncated"});
}

TEST(BadModel, HeaderLengthPastEnd) {
  BrokenModel m;
  const std::string dir = m.write();
  std::string bytes = test::read_text(dir + "/model.safetensors");
  const uint64_t huge = bytes.size() + 1;
  std::memcpy(bytes.data(), &huge, 8);
  test::write_text(dir + "/model.safetensors", bytes);
  expect_input_error(dir, {"model.safetensors", "header length", "past the end"});
}

TEST(BadModel, HeaderNotJson) {
  BrokenModel m;
  const std::string dir = m.write();
  std::string bytes = test::read_text(dir + "/model.safetensors");
  bytes[8] = '[';
  bytes[9] = '{';
  test::write_text(dir + "/model.safetensors", bytes);
  expect_input_error(dir, {"model.safetensors", "not JSON"});
}

TEST(BadModel, OffsetsOutOfRange) {
  BrokenModel m;
  m.header()[kQ]["data_offsets"] = {m.data().size() - 10, m.data().size() - 10 + 4608};
  expect_input_error(m.write(), {kQ, "data_offsets"});
}

TEST(BadModel, OverlappingTensors) {
  BrokenModel m;
  auto k_offsets = m.header()["model.decoder.layers.0.self_attn.k_proj.weight"]["data_offsets"];
  m.header()[kQ]["data_offsets"] = k_offsets;
  expect_input_error(m.write(), {"overlap"});
}

TEST(BadModel, SizeDisagreesWithShape) {
  BrokenModel m;
  m.header()[kQ]["shape"] = {48, 47};
  expect_input_error(m.write(), {kQ, "[48, 47]"});
}

TEST(BadModel, ShapeDisagreesWithConfig) {
  BrokenModel m;
  m.header()[kQ]["shape"] = {24, 96};
  expect_input_error(m.write(), {"layers.0.self_attn.q_proj.weight", "[24, 96]", "config.json"});
}

// Tensors load in the dtype their header gives, as Hugging Face loads them, whatever
// torch_dtype says (or when it is missing).
TEST(Checkpoint, TensorDtypeComesFromTheHeader) {
  BrokenModel m;
  const auto want = open_weight_source(test::model_dir("opt-pub-tiny"));
  std::vector<float> a(48 * 48), b(a.size());
  want->read("layers.0.self_attn.q_proj.weight", DType::kF32, a.data());
  for (const char* dtype : {"bfloat16", "float32", ""}) {
    if (*dtype) {
      m.config()["torch_dtype"] = dtype;
    } else {
      m.config().erase("torch_dtype");
    }
    const auto got = open_weight_source(m.write());
    got->read("layers.0.self_attn.q_proj.weight", DType::kF32, b.data());
    EXPECT_EQ(a, b) << dtype;
  }
}

// A NaN in a layer norm (fp16 0x7e00) or an Inf in a projection is found as the weights load,
// naming the file and tensor, rather than coming out as null logprobs.
TEST(BadModel, NonFiniteWeightsAreFoundAtLoad) {
  const char* norm = "model.decoder.layers.1.self_attn_layer_norm.weight";
  for (const uint16_t bits : {uint16_t{0x7e00}, uint16_t{0xfc00}}) {
    BrokenModel m;
    const uint64_t at = m.header()[norm]["data_offsets"][0].get<uint64_t>() + 2 * 5;
    std::memcpy(m.data().data() + at, &bits, 2);
    const std::string dir = m.write();
    const auto source = open_weight_source(dir);
    std::vector<float> buffer(48);
    try {
      source->read("layers.1.self_attn_layer_norm.weight", DType::kF32, buffer.data());
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_status(), kExitBadInput);
      const std::string message = e.what();
      for (const char* part :
           {"model.safetensors", "self_attn_layer_norm.weight", "non-finite", "element 5 of 48"}) {
        EXPECT_NE(message.find(part), std::string::npos) << message;
      }
    }
    // The other tensors still read (the negative control), and a run fails in one line.
    EXPECT_NO_THROW(
        source->read("layers.0.self_attn_layer_norm.weight", DType::kF32, buffer.data()));
    TempDir in;
    test::write_text(in.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n");
    const auto r = run_strata("generate --model " + dir + " --input " + in.file("in.jsonl"));
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_NE(r.err.find("non-finite"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(BadModel, NonFiniteLogitsAreAnErrorNotAToken) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 0.0f}, scratch(4);
  RandomStream stream(1, 0);
  const SamplingParams greedy;
  EXPECT_EQ(sample_token(logits, greedy, stream, scratch).token, 1);
  for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    logits[2] = bad;
    try {
      sample_token(logits, greedy, stream, scratch);
      ADD_FAILURE() << "no error for " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("token id 2"), std::string::npos) << e.what();
    }
  }
}

TEST(BadModel, UnsupportedDtype) {
  BrokenModel m;
  m.header()[kQ]["dtype"] = "I8";
  m.header()[kQ]["shape"] = {48, 96};
  expect_input_error(m.write(), {kQ, "unsupported dtype I8"});
}

TEST(BadModel, MissingTensor) {
  BrokenModel m;
  m.header().erase("model.decoder.layers.1.fc2.bias");
  expect_input_error(m.write(), {"missing tensor", "layers.1.fc2.bias"});
}

TEST(BadModel, ConfigNotJson) {
  BrokenModel m;
  const std::string dir = m.write();
  test::write_text(dir + "/config.json", "{\"hidden_size\": 48,");
  expect_input_error(dir, {"config.json", "not JSON"});
}

TEST(BadModel, ConfigLacksField) {
  BrokenModel m;
  m.config().erase("num_attention_heads");
  expect_input_error(m.write(), {"config.json", "num_attention_heads"});
}

TEST(BadModel, UnsupportedActivation) {
  BrokenModel m;
  m.config()["activation_function"] = "swish";
  expect_input_error(m.write(), {"config.json", "activation_function", "swish"});
}

// The Llama family's fields, from a copy of qwen2-tiny (GQA 4:2, biases on q / k / v).
TEST(BadFamilyModel, UnknownModelType) {
  BrokenModel m("families/qwen2-tiny");
  m.config()["model_type"] = "gpt_neox";
  expect_input_error(m.write(), {"config.json", "model_type 'gpt_neox'", "llama, mistral, qwen2"});
}

TEST(BadFamilyModel, UnsupportedRopeScaling) {
  BrokenModel m("families/qwen2-tiny");
  m.config()["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_input_error(m.write(), {"config.json", "rope_scaling", "'yarn'", "linear, llama3"});
  m.config()["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_input_error(m.write(), {"config.json", "original_max_position_embeddings"});
}

TEST(BadFamilyModel, KeyValueHeadsMustDivideHeads) {
  BrokenModel m("families/qwen2-tiny");
  m.config()["num_key_value_heads"] = 3;
  expect_input_error(m.write(), {"config.json", "num_key_value_heads 3", "does not divide"});
}

TEST(BadFamilyModel, MissingTensorOfTheFamily) {
  BrokenModel m("families/qwen2-tiny");
  m.header().erase("model.layers.1.mlp.gate_proj.weight");
  expect_input_error(m.write(), {"missing tensor 'model.layers.1.mlp.gate_proj.weight'", "qwen2"});
  BrokenModel bias("families/qwen2-tiny");
  bias.header().erase("model.layers.0.self_attn.k_proj.bias");
  expect_input_error(bias.write(), {"missing tensor 'model.layers.0.self_attn.k_proj.bias'"});
}

TEST(BadFamilyModel, UnsupportedActivationAndHugeSizes) {
  BrokenModel m("families/qwen2-tiny");
  m.config()["hidden_act"] = "gelu";
  expect_input_error(m.write(), {"config.json", "hidden_act 'gelu'"});
  BrokenModel huge("families/qwen2-tiny");
  huge.config()["num_hidden_layers"] = int64_t{1} << 40;
  expect_input_error(huge.write(), {"config.json", "num_hidden_layers", "largest supported"});
}

// Token ids are range-checked, not narrowed to int32 (2^32 would read as 0) or truncated (2.5).
TEST(BadFamilyModel, TokenIdsOutsideTheirRange) {
  const std::pair<const char*, nlohmann::json> cases[] = {
      {"bos_token_id", int64_t{1} << 32}, {"bos_token_id", 2.5},
      {"bos_token_id", 1 << 20},          {"bos_token_id", -1},
      {"pad_token_id", int64_t{1} << 40}, {"pad_token_id", UINT64_MAX},
      {"sliding_window", int64_t{-3}},    {"sliding_window", 16.5}};
  for (const auto& [field, value] : cases) {
    BrokenModel m("families/qwen2-tiny");
    m.config()[field] = value;
    m.config()["use_sliding_window"] = true;
    expect_input_error(m.write(), {"config.json", std::string("'") + field + "'", "integer"});
  }
  BrokenModel fine("families/qwen2-tiny");
  fine.config()["pad_token_id"] = -1;
  EXPECT_NO_THROW(open_weight_source(fine.write()));
}

TEST(BadRequestLines, NotJson) {
  TempDir dir;
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n{\"id\": 2, \n");
  expect_cli_error(generate_args(dir.file("in.jsonl")), {"in.jsonl:2", "not JSON"});
}

TEST(BadRequestLines, MissingId) {
  TempDir dir;
  test::write_text(dir.file("in.jsonl"), "\n{\"input_ids\": [2, 5]}\n");
  expect_cli_error(generate_args(dir.file("in.jsonl")), {"in.jsonl:2", "'id'"});
}

TEST(BadRequestLines, TokenOutsideVocabulary) {
  TempDir dir;
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 400]}\n");
  expect_cli_error(generate_args(dir.file("in.jsonl")), {"in.jsonl:1", "400", "vocabulary"});
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [-1]}\n");
  expect_cli_error(generate_args(dir.file("in.jsonl")), {"in.jsonl:1", "-1", "vocabulary"});
}

TEST(BadRequestLines, TooLongForPositions) {
  TempDir dir;
  std::string ids = "2";
  for (int i = 0; i < 119; ++i) ids += ", 5";
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [" + ids + "]}\n");
  expect_cli_error(generate_args(dir.file("in.jsonl"), "--gen-len 9"),
                   {"in.jsonl:1", "max_position_embeddings 128"});
  EXPECT_EQ(run_strata(generate_args(dir.file("in.jsonl"), "--gen-len 8")).exit_status, 0);
}

// Sliding-window attention is not implemented: a window below the run's longest sequence is
// refused, one at or above it runs (the window never comes into play).
TEST(BadFamilyModel, SlidingWindowBelowTheRun) {
  BrokenModel m("families/mistral-tiny");
  m.config()["sliding_window"] = 16;
  const std::string dir = m.write();
  TempDir in;
  test::write_text(in.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [1, 5, 9, 4]}\n");
  const std::string args = "generate --model " + dir + " --input " + in.file("in.jsonl");
  expect_cli_error(args + " --gen-len 13", {"sliding_window 16", "17 tokens", "not implemented"});
  EXPECT_EQ(run_strata(args + " --gen-len 12").exit_status, 0);
}

TEST(BadFlags, UnknownAndMissing) {
  expect_cli_error("generate --model x --input y --no-such-flag", {"no-such-flag"});
  expect_cli_error("generate --input y", {"--model"});
  expect_cli_error(
      "generate --model " + test::model_dir("opt-pub-tiny") + " --input /nonexistent.jsonl",
      {"/nonexistent.jsonl"});
  expect_cli_error("generate --model /nonexistent --input /dev/null", {"/nonexistent"});
  expect_cli_error("generate --model synthetic:opt-7b --input /dev/null", {"opt-7b", "opt-6.7b"});
  expect_cli_error("synth --arch opt-125m", {"--out"});
  expect_cli_error("nonsense", {"nonsense"});
}

// Numbers that do not parse, or fall outside their flag's range, are named with their value,
// whatever the command.
TEST(BadFlags, NumbersThatDoNotParseNameTheFlagAndValue) {
  const std::string gen = "generate --model " + test::model_dir("opt-pub-tiny") + " --prompt hi ";
  expect_cli_error(gen + "--gen-len abc", {"--gen-len 'abc'", "not a whole number"});
  expect_cli_error(gen + "--gen-len 2.5", {"--gen-len '2.5'", "not a whole number"});
  expect_cli_error(gen + "--gen-len 0", {"--gen-len '0'", ">= 1"});
  expect_cli_error(gen + "--seed -1", {"--seed '-1'", "not a whole number"});
  expect_cli_error(gen + "--seed 1e20", {"--seed '1e20'", "not a whole number"});
  expect_cli_error(gen + "--seed 18446744073709551616", {"--seed '18446744073709551616'"});
  expect_cli_error(gen + "--temperature nan", {"--temperature 'nan'", "not a finite number"});
  expect_cli_error(gen + "--top-p 1.5", {"--top-p '1.5'", "(0, 1]"});
  expect_cli_error(gen + "--threads 2x", {"--threads '2x'"});
  expect_cli_error(gen + "--percent nan", {"--percent 'nan'", "not a finite number"});
  expect_cli_error(gen + "--percent -10 110 100 0 100 0", {"--percent '-10'", "[0, 100]"});
  expect_cli_error(gen + "--percent 10 110 100 0 100 0", {"--percent '110'", "[0, 100]"});
  expect_cli_error(gen + "--gpu-batch-size 1.5", {"--gpu-batch-size '1.5'"});
  expect_cli_error(gen + "--num-gpu-batches -3", {"--num-gpu-batches '-3'", ">= 1"});
  expect_cli_error(gen + "--alpha inf", {"--alpha 'inf'", "not a finite number"});
  expect_cli_error(gen + "--compress-weight --compress-bits four", {"--compress-bits 'four'"});
  expect_cli_error("bench --model synthetic:opt-125m --no-bounds --prompt-len 1e3",
                   {"--prompt-len '1e3'"});
  expect_cli_error("bench --model synthetic:opt-125m --no-bounds --num-prompts x",
                   {"--num-prompts 'x'"});
  const std::string hw = test::kDataDir + "/../../configs/hardware/dev-2core.json";
  expect_cli_error("plan --model opt-125m --hardware " + hw + " --prompt-len 8 --gen-len 0x10",
                   {"--gen-len '0x10'"});
  TempDir dir;
  expect_cli_error("synth --arch opt-125m --layers 1.5 --out " + dir.file("m"), {"--layers '1.5'"});
  // Negative control: the same flags with good values run.
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n");
  const auto r = run_strata(generate_args(dir.file("in.jsonl"),
                                          "--gen-len 2 --seed 18446744073709551615 --top-p 0.9 "
                                          "--percent 0 100 100 0 100 0"));
  EXPECT_EQ(r.exit_status, 0) << r.err;
}

// A cap of zero would read as "no cap": it is refused, naming the flag.
TEST(BadFlags, ZeroCapsAreRefused) {
  const std::string gen = "generate --model " + test::model_dir("opt-pub-tiny") + " --prompt hi ";
  expect_cli_error(gen + "--gpu-mem 0", {"--gpu-mem '0'", "above 0"});
  expect_cli_error(gen + "--cpu-mem 0GiB", {"--cpu-mem '0GiB'", "above 0"});
  expect_cli_error(gen + "--disk-mem 0", {"--disk-mem '0'", "above 0"});
  expect_cli_error(gen + "--gpu-mem 1e30TB", {"--gpu-mem", "too large"});
  const std::string hw = test::kDataDir + "/../../configs/hardware/dev-2core.json";
  expect_cli_error("plan --model opt-125m --hardware " + hw +
                       " --prompt-len 8 --gen-len 8 "
                       "--gpu-mem 0",
                   {"--gpu-mem '0'"});
  TempDir dir;
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n");
  const auto r = run_strata(generate_args(dir.file("in.jsonl"), "--gen-len 2 --gpu-mem 1GiB"));
  EXPECT_EQ(r.exit_status, 0) << r.err;
}

// --no-bounds measures no bound, so no ratio to one is printed or written (no inf, no null).
TEST(Cli, BenchWithoutBoundsPrintsNoInfOrNull) {
  TempDir dir;
  const auto r = run_strata("bench --model " + test::model_dir("opt-pub-tiny") +
                            " --prompt-len 8 --gen-len 2 --gpu-batch-size 2 --no-bounds --json " +
                            dir.file("b.json"));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const std::string json = test::read_text(dir.file("b.json"));
  for (const std::string& text : {r.out, json}) {
    EXPECT_EQ(text.find("inf"), std::string::npos) << text;
    EXPECT_EQ(text.find("nan"), std::string::npos) << text;
    EXPECT_EQ(text.find("null"), std::string::npos) << text;
  }
  const auto j = nlohmann::json::parse(json);
  EXPECT_FALSE(j.contains("compute_bound_fraction"));
  EXPECT_FALSE(j.contains("sgemm_peak_gflops"));
  EXPECT_GT(j["generation_tokens_per_s"].get<double>(), 0);
}

// Outputs that cannot be written fail before the run, not after it.
TEST(BadFlags, UnwritableOutputsFailBeforeTheWork) {
  TempDir dir;
  const std::string missing = dir.file("no-such-dir") + "/out.json";
  const std::string bench = "bench --model " + test::model_dir("opt-pub-tiny") + " --no-bounds ";
  expect_cli_error(bench + "--json " + missing, {"--json", missing, "cannot write"});
  expect_cli_error(bench + "--trace " + dir.path().string(), {"--trace", "is a directory"});
  expect_cli_error("profile --quick --out " + missing, {"--out", missing, "cannot write"});
  EXPECT_TRUE(fs::is_empty(dir.path())) << "a probe left a file behind";
}

// A path the file system refuses (a name past NAME_MAX) is the user's error, said in one short
// line, whichever flag it came through.
TEST(BadFlags, PathsTheFileSystemRefusesAreInputErrors) {
  const std::string tiny = test::model_dir("opt-pub-tiny");
  const std::string long_path = "/tmp/" + std::string(5000, 'a');
  for (const std::string& args :
       {"generate --model " + long_path + " --input /dev/null",
        "generate --model " + tiny + " --tokenizer " + long_path + " --input /dev/null",
        "plan --model " + long_path + " --prompt-len 8 --gen-len 8",
        "bench --model " + tiny + " --no-bounds --offload-dir " + long_path}) {
    const auto r = run_strata(args);
    EXPECT_EQ(r.exit_status, 2) << args << "\n" << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    EXPECT_LT(r.err.size(), 400u) << r.err;
  }
}

// An internal error names no source file unless --verbose; every error line is valid UTF-8.
TEST(BadFlags, ErrorLinesAreCleanUtf8) {
  // The shell's printf writes the bytes 0xff 0xfe into the path.
  const auto r = run_strata("generate --model \"$(printf '/tmp/no\\377\\376-model')\" --prompt hi");
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_NE(r.err.find("no\\xff\\xfe-model"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\xff'), std::string::npos) << r.err;
  EXPECT_EQ(printable_line("caf\xc3\xa9 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf a\nb"),
            "caf\xc3\xa9 \\xe2\\x82 \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80 \\xc0\\xaf a\\x0ab");
  EXPECT_EQ(printable_line("\xf0\x9f\x98\x80 ok"), "\xf0\x9f\x98\x80 ok");
}

TEST(Errors, InternalErrorsSayWhereOnlyWhenAsked) {
  try {
    STRATA_CHECK(1 + 1 == 3, "arithmetic failed");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "arithmetic failed");
    EXPECT_EQ(e.exit_status(), kExitInternal);
    EXPECT_NE(e.where().find("bad_input_test.cpp:"), std::string::npos) << e.where();
  }
}

// synth writes next to the target and renames into place: an existing model dir is refused, or
// replaced whole with --replace, never mixed; nothing is left behind on failure.
TEST(Synth, ExistingDirIsRefusedOrReplacedNeverMixed) {
  TempDir dir;
  const std::string out = dir.file("m");
  fs::create_directory(out);
  test::write_text(out + "/stale.safetensors", "old");
  const std::string synth = "synth --arch opt-125m --layers 1 --out " + out;
  expect_cli_error(synth, {"--out", out, "not empty", "--replace"});
  EXPECT_EQ(test::read_text(out + "/stale.safetensors"), "old");
  const auto r = run_strata(synth + " --replace");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(out)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "generation_config.json",
                                             "model.safetensors"}));
  std::vector<std::string> siblings;
  for (const auto& e : fs::directory_iterator(dir.path())) siblings.push_back(e.path().string());
  EXPECT_EQ(siblings, std::vector<std::string>{out}) << "a staging dir was left behind";
  EXPECT_NO_THROW(open_weight_source(out));
  // A file in the way is refused too.
  test::write_text(dir.file("f"), "x");
  expect_cli_error("synth --arch opt-125m --layers 1 --out " + dir.file("f"), {"not a directory"});
}

TEST(Synth, CheckpointPastFreeSpaceIsRefusedUpFront) {
  TempDir dir;
  // 4096 layers of OPT-175B: about 14 TiB.
  expect_cli_error("synth --arch opt-175b --layers 4096 --out " + dir.file("big"),
                   {"--out", "needs about", "free"});
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Cli, GenerateWritesResultsInInputOrder) {
  TempDir dir;
  const auto cases = test::load_cases("opt-pub-tiny");
  std::string lines;
  for (int i = 0; i < 5; ++i) {
    lines += nlohmann::json{{"id", "case" + std::to_string(i)},
                            {"input_ids", cases["cases"][i]["input_ids"][0]}}
                 .dump() +
             "\n";
  }
  test::write_text(dir.file("in.jsonl"), lines);
  const auto r = run_strata(generate_args(
      dir.file("in.jsonl"),
      "--gen-len 20 --ignore-eos --gpu-batch-size 2 --output " + dir.file("out.jsonl")));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  std::istringstream out(test::read_text(dir.file("out.jsonl")));
  std::string line;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(std::getline(out, line));
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["id"], "case" + std::to_string(i));
    EXPECT_EQ(j["output_ids"], cases["cases"][i]["output_ids"][0]);
    EXPECT_EQ(j["input_ids"], cases["cases"][i]["input_ids"][0]);
    EXPECT_EQ(j["token_logprobs"].size(), 20u);
    EXPECT_EQ(j["finish_reason"], "length");
  }
  EXPECT_FALSE(std::getline(out, line));
}

}  // namespace
}  // namespace strata

namespace strata {
namespace {

TEST(DeviceFlag, BadValuesAreInputErrors) {
  const std::string model = test::model_dir("opt-pub-tiny");
  auto r = test::run_strata("generate --model " + model + " --prompt hello --device tpu");
  EXPECT_EQ(r.exit_status, kExitBadInput);
  EXPECT_NE(r.err.find("--device tpu: expected cpu, cuda or auto"), std::string::npos) << r.err;
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present: --device cuda is valid here";
  r = test::run_strata("bench --model synthetic:opt-125m --device cuda --no-bounds");
  EXPECT_EQ(r.exit_status, kExitBadInput);
  EXPECT_NE(r.err.find("--device cuda: "), std::string::npos) << r.err;
  // auto runs on the CPU where there is no GPU.
  EngineOptions automatic;
  automatic.device = Device::kAuto;
  EXPECT_EQ(resolved_device(automatic), Device::kCpu);
}

}  // namespace
}  // namespace strata
