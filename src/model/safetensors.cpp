#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/buffer.h"
#include "core/error.h"

namespace strata {

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit

TensorInfo parse_entry(const std::string& path, const std::string& name,
                       const nlohmann::json& entry) {
  auto fail = [&](const std::string& why) {
    throw_input(path + ": tensor '" + name + "': " + why);
  };
  if (!entry.is_object()) fail("header entry is not an object");
  TensorInfo info;
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) fail("missing dtype");
  auto dtype = dtype_from_safetensors(dtype_it->get<std::string>());
  if (!dtype) fail("unsupported dtype " + dtype_it->get<std::string>() + " (F32, F16, BF16 are)");
  info.dtype = *dtype;
  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) fail("missing shape");
  // The byte count is checked as it grows, so a huge shape cannot wrap round to the offsets.
  uint64_t want = dtype_size(info.dtype);
  for (const auto& d : *shape_it) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) fail("shape has a non-integer dimension");
    info.shape.push_back(d.get<int64_t>());
    if (__builtin_mul_overflow(want, static_cast<uint64_t>(info.shape.back()), &want) ||
        want > (uint64_t{1} << 62)) {
      fail("shape is too large (over 2^62 bytes)");
    }
  }
  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned()) {
    fail("data_offsets is not a pair of byte offsets");
  }
  info.begin = (*off_it)[0].get<uint64_t>();
  info.end = (*off_it)[1].get<uint64_t>();
  if (info.end < info.begin) fail("data_offsets end before they begin");
  if (info.end - info.begin != want) {
    fail("holds " + std::to_string(info.end - info.begin) + " bytes but shape " +
         shape_string(info.shape) + " in " + std::string(dtype_name(info.dtype)) + " needs " +
         std::to_string(want));
  }
  return info;
}

}  // namespace

std::map<std::string, TensorInfo> parse_safetensors_header(const uint8_t* bytes, size_t size,
                                                           const std::string& path,
                                                           size_t* data_offset) {
  STRATA_INPUT_CHECK(size >= 8, path, ": truncated safetensors file (", size, " bytes, no header)");
  std::map<std::string, TensorInfo> tensors;
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);  // little endian, as is every host we run on
  STRATA_INPUT_CHECK(header_len <= kMaxHeaderBytes && header_len <= size - 8, path,
                     ": header length ", header_len, " is past the end of the file (", size,
                     " bytes)");
  *data_offset = 8 + header_len;
  const uint64_t data_size = size - *data_offset;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {  // parse_error or out_of_range (1e999)
    throw_input(path + ": header is not JSON (" + e.what() + ")");
  }
  STRATA_INPUT_CHECK(header.is_object(), path, ": header is not a JSON object");
  std::vector<std::pair<const std::string*, const TensorInfo*>> by_offset;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    tensors.emplace(name, parse_entry(path, name, entry));
  }
  for (const auto& [name, info] : tensors) {
    if (info.end > data_size) {
      throw_input(path + ": tensor '" + name + "': data_offsets [" + std::to_string(info.begin) +
                  ", " + std::to_string(info.end) + "] past the end of the data (" +
                  std::to_string(data_size) + " bytes; file truncated?)");
    }
    by_offset.emplace_back(&name, &info);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto& [prev_name, prev] = by_offset[i - 1];
    const auto& [name, info] = by_offset[i];
    if (info->begin < prev->end && info->end > info->begin) {
      throw_input(path + ": tensors '" + *prev_name + "' and '" + *name +
                  "' overlap in the data section");
    }
  }
  return tensors;
}

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  STRATA_INPUT_CHECK(fd >= 0, path_, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  const int stat_rc = ::fstat(fd, &st);
  file_size_ = stat_rc == 0 ? static_cast<size_t>(st.st_size) : 0;
  if (stat_rc != 0 || file_size_ < 8) {
    ::close(fd);
    throw_input(path_ + ": truncated safetensors file (" + std::to_string(file_size_) +
                " bytes, no header)");
  }
  void* map = ::mmap(nullptr, file_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  STRATA_INPUT_CHECK(map != MAP_FAILED, path_, ": cannot map: ", std::strerror(map_errno));
  base_ = static_cast<const uint8_t*>(map);

  try {
    tensors_ = parse_safetensors_header(base_, file_size_, path_, &data_offset_);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(base_), file_size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), file_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const uint64_t size = static_cast<uint64_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  STRATA_INPUT_CHECK(out.good(), path, ": cannot create: ", std::strerror(errno));
  const uint64_t header_len = text.size();
  out.write(reinterpret_cast<const char*>(&header_len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& t : tensors) {
    const uint64_t size = static_cast<uint64_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
    HostBuffer buffer(size);
    t.fill(buffer.data());
    out.write(buffer.as<char>(), static_cast<std::streamsize>(size));
  }
  out.flush();
  STRATA_INPUT_CHECK(out.good(), path, ": write failed (disk full?)");
}

}  // namespace strata
