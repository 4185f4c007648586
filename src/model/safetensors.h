// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}}, then the tensor bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace strata {

using Shape = std::vector<int64_t>;
std::string shape_string(const Shape& shape);
int64_t shape_numel(const Shape& shape);

struct TensorInfo {
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets within the data section
  uint64_t end = 0;
};

// The tensors of a safetensors file held in `bytes` (what SafetensorsFile maps), validated as it
// does; `data_offset` gets where the data section starts. `path` names the file in errors.
std::map<std::string, TensorInfo> parse_safetensors_header(const uint8_t* bytes, size_t size,
                                                           const std::string& path,
                                                           size_t* data_offset);

// A read-only mapping of one safetensors file, validated when opened: every bad header,
// offset or size is an input error naming the file and tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::string path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  const void* data(const TensorInfo& info) const { return base_ + data_offset_ + info.begin; }

 private:
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t file_size_ = 0;
  size_t data_offset_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

// One tensor to write; `fill` writes its bytes (in `dtype`) into a buffer of the right size,
// so a large checkpoint is written one tensor at a time.
struct TensorToWrite {
  std::string name;
  DType dtype;
  Shape shape;
  std::function<void(void* dst)> fill;
};

// Writes tensors to `path` in the given order.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

}  // namespace strata
