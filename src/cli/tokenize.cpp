// `strata tokenize` / `strata detokenize`: text <-> ids with the model directory's tokenizer,
// one line in, one line out, so they compose in pipes.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace strata::cli {
namespace {

Tokenizer load_tokenizer(const cxxopts::ParseResult& flags) {
  STRATA_INPUT_CHECK(flags.count("model"), "--model is required");
  const std::string dir = flags["model"].as<std::string>();
  auto tokenizer = Tokenizer::load(dir);
  STRATA_INPUT_CHECK(tokenizer, dir, ": no tokenizer (tokenizer.json or vocab.json + merges.txt)");
  return std::move(*tokenizer);
}

nlohmann::json parse_line(const std::string& line, int64_t number) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {  // parse_error or out_of_range (1e999)
    throw_input("stdin:" + std::to_string(number) + ": not JSON (" + e.what() + ")");
  }
}

// Encodes a file as one text and reports the rate: the figure quoted for tokenizer speed.
int bench(const Tokenizer& tokenizer, const std::string& path, int repeat) {
  std::ifstream in(path, std::ios::binary);
  STRATA_INPUT_CHECK(in.good(), path, ": cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  size_t tokens = 0;
  for (int r = 0; r < repeat; ++r) {
    const auto begin = std::chrono::steady_clock::now();
    tokens = tokenizer.encode_plain(text).size();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    std::printf("pass %d: %zu bytes -> %zu tokens in %.3f s: %.2f MB/s, %.2f M tokens/s%s\n", r + 1,
                text.size(), tokens, s, text.size() / s / 1e6, tokens / s / 1e6,
                r == 0 ? " (cold piece cache)" : "");
  }
  return 0;
}

}  // namespace

int run_tokenize(int argc, char** argv) {
  cxxopts::Options options("strata tokenize",
                           "Print the token ids of each stdin line as a JSON array.");
  options.add_options()("model", "model directory with the tokenizer files",
                        cxxopts::value<std::string>())(
      "jsonl", "each input line is a JSON string (so a text may hold newlines)")(
      "plain", "do not add the tokens the files put around a text (OPT's leading </s>)")(
      "bench", "encode FILE as one text and print MB/s instead", cxxopts::value<std::string>())(
      "repeat", "passes over the --bench file", number_value("3"));
  const auto flags = parse_flags(options, argc, argv);
  const Tokenizer tokenizer = load_tokenizer(flags);
  if (flags.count("bench")) {
    const int repeat = static_cast<int>(int_flag(flags, "repeat", 1, 1 << 20));
    return bench(tokenizer, flags["bench"].as<std::string>(), repeat);
  }
  const bool jsonl = flags.count("jsonl") > 0;
  const bool plain = flags.count("plain") > 0;
  std::string line;
  for (int64_t number = 1; std::getline(std::cin, line); ++number) {
    std::string text = line;
    if (jsonl) {
      const auto j = parse_line(line, number);
      STRATA_INPUT_CHECK(j.is_string(), "stdin:", number, ": not a JSON string");
      text = j.get<std::string>();
    }
    const auto ids = plain ? tokenizer.encode_plain(text) : tokenizer.encode(text);
    std::cout << nlohmann::json(ids).dump() << "\n";
  }
  std::cout.flush();
  STRATA_INPUT_CHECK(std::cout.good(), "writing the output failed");
  return 0;
}

int run_detokenize(int argc, char** argv) {
  cxxopts::Options options("strata detokenize",
                           "Print the text of each stdin line, a JSON array of token ids.");
  options.add_options()("model", "model directory with the tokenizer files",
                        cxxopts::value<std::string>())(
      "jsonl", "print each text as a JSON string (invalid UTF-8 as U+FFFD)")(
      "keep-special", "print special tokens such as </s> (skipped by default)");
  const auto flags = parse_flags(options, argc, argv);
  const Tokenizer tokenizer = load_tokenizer(flags);
  const bool jsonl = flags.count("jsonl") > 0;
  const bool skip_special = flags.count("keep-special") == 0;
  std::string line;
  for (int64_t number = 1; std::getline(std::cin, line); ++number) {
    const auto j = parse_line(line, number);
    STRATA_INPUT_CHECK(j.is_array(), "stdin:", number, ": not a JSON array of token ids");
    std::vector<int32_t> ids;
    for (const auto& id : j) {
      const bool known = id.is_number_integer() && id.get<int64_t>() >= 0 &&
                         id.get<int64_t>() < tokenizer.size() &&
                         tokenizer.contains(id.get<int32_t>());
      STRATA_INPUT_CHECK(known, "stdin:", number, ": ", id.dump(),
                         " is not a token id of this tokenizer");
      ids.push_back(id.get<int32_t>());
    }
    const std::string bytes = tokenizer.decode(ids, skip_special);
    // Without --jsonl the bytes go out as they are, so a round trip is exact.
    if (jsonl) {
      std::cout << nlohmann::json(replace_invalid_utf8(bytes)).dump() << "\n";
    } else {
      std::cout << bytes << "\n";
    }
  }
  std::cout.flush();
  STRATA_INPUT_CHECK(std::cout.good(), "writing the output failed");
  return 0;
}

}  // namespace strata::cli
