#include "engine/model.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>
#include <stdexcept>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/model_format.hpp"
#include "model/pack_reader.hpp"
#include "model/tensor_check.hpp"

namespace sluice {
namespace {
TensorView make_view(std::uint32_t type, const std::vector<std::uint64_t>& dims, const std::byte* data, std::uint64_t bytes,
                     const std::string& source, const std::string& name) {
  if (!ggml_type_traits(type)) {
    throw Exception(ErrorContext{ErrorKind::corrupt, source, name},
                    fmt::format("{}: tensor '{}' has unsupported type {}", source, name, type));
  }
  TensorView v;
  v.type = static_cast<GgmlType>(type);
  for (auto d : dims) v.dims.push_back(static_cast<std::int64_t>(d));
  v.data = data;
  v.bytes = bytes;
  return v;
}
}  // namespace

Model::~Model() = default;

std::unique_ptr<Model> Model::open(const std::string& path) {
  std::unique_ptr<Model> m(new Model());
  m->path_ = path;
  const ModelFormat format = detect_model_format(path);
  // The config and the tensor table are checked against each other before any extent is read
  // or any view made: every view bound below then has the shape its buffers are sized for.
  if (format == ModelFormat::gguf) {
    m->gguf_ = std::make_unique<gguf::File>(gguf::File::open(path));
    m->metadata_ = metadata_of(*m->gguf_);
    m->config_ = checked_config(*m->gguf_);
  } else {
    m->pack_ = std::make_unique<pack::Pack>(pack::Pack::open(path));
    m->config_ = checked_config(*m->pack_);
    for (std::size_t i = 0; i < m->pack_->extents().size(); ++i) {
      auto bytes = m->pack_->read_extent(i);
      if (!bytes) throw Exception(bytes.error(), path);
      m->extents_.push_back(std::move(bytes).value());
    }
    // Expert tensors laid expert-major (pack_format.hpp item 5) are strided in their extent: in
    // RAM the kernels want them stacked, as in the GGUF.
    for (const pack::TensorInfo& t : m->pack_->tensors()) {
      if (t.expert_stride == 0) continue;
      const std::uint64_t n_expert = t.shape.back(), slice = t.bytes / n_expert;
      std::vector<std::byte>& out = m->gathered_[t.name];
      out.resize(t.bytes);
      for (std::uint64_t e = 0; e < n_expert; ++e) {
        std::memcpy(out.data() + e * slice, m->extents_[t.extent].data() + t.offset + e * t.expert_stride, slice);
      }
    }
    for (std::size_t i = 0; i < m->pack_->extents().size(); ++i) {
      if (m->pack_->extents()[i].expert_bytes != 0) std::vector<std::byte>().swap(m->extents_[i]);  // gathered above
    }
    m->metadata_ = metadata_of(m->pack_->metadata(), path);
  }
  m->bind();
  return m;
}

TensorView Model::tensor(std::string_view name) const {
  if (gguf_) {
    const gguf::TensorInfo* t = gguf_->find_tensor(name);
    if (!t) return {};
    auto data = gguf_->tensor_data(*t);
    return make_view(t->type, t->dims, data.data(), data.size(), path_, t->name);
  }
  const pack::TensorInfo* t = pack_->find_tensor(name);
  if (!t) return {};
  if (t->expert_stride != 0) return make_view(t->type, t->shape, gathered_.find(t->name)->second.data(), t->bytes, path_, t->name);
  return make_view(t->type, t->shape, extents_[t->extent].data() + t->offset, t->bytes, path_, t->name);
}

void Model::bind() {
  globals_ = bind_globals(lookup(), config_, path_);
  for (std::int64_t il = 0; il < config_.n_layer; ++il) blocks_.push_back(bind_block(lookup(), config_, il, path_));
  if (gguf_) {
    for (const auto& t : gguf_->tensors()) weight_bytes_ += t.bytes;
  } else {
    for (const auto& t : pack_->tensors()) weight_bytes_ += t.bytes;
  }
}

}  // namespace sluice
