#include "tokenizer/normalize.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include "core/error.h"

namespace strata {
namespace {

using Kind = NormalizerStep::Kind;

const icu::Normalizer2& normal_form(Kind kind) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = kind == Kind::kNfc    ? icu::Normalizer2::getNFCInstance(status)
                              : kind == Kind::kNfkc ? icu::Normalizer2::getNFKCInstance(status)
                              : kind == Kind::kNfd  ? icu::Normalizer2::getNFDInstance(status)
                                                    : icu::Normalizer2::getNFKDInstance(status);
  STRATA_CHECK(U_SUCCESS(status) && n, "ICU has no normaliser data: ", u_errorName(status));
  return *n;
}

std::string to_normal_form(std::string_view text, Kind kind) {
  std::string out;
  icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(text.size()));
  UErrorCode status = U_ZERO_ERROR;
  normal_form(kind).normalizeUTF8(
      0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink, nullptr, status);
  STRATA_CHECK(U_SUCCESS(status), "ICU normalisation failed: ", u_errorName(status));
  return out;
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  size_t pos = 0;
  for (size_t at; (at = text.find(from, pos)) != std::string_view::npos; pos = at + from.size()) {
    out.append(text.substr(pos, at - pos));
    out.append(to);
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace

std::string normalize(std::string_view text, const std::vector<NormalizerStep>& steps) {
  std::string s(text);
  for (const NormalizerStep& step : steps) {
    if (step.kind == Kind::kPrepend) {
      if (!s.empty()) s.insert(0, step.to);
    } else if (step.kind == Kind::kReplace) {
      s = replace_all(s, step.from, step.to);
    } else {
      s = to_normal_form(s, step.kind);
    }
  }
  return s;
}

}  // namespace strata
