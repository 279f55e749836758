// inspect_pack: the report behind `sluice inspect` (see pack_inspect.hpp).
#include "model/pack_inspect.hpp"

#include <algorithm>
#include <exception>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "common/units.hpp"
#include "model/pack_reader.hpp"

namespace sluice::pack {
namespace {

// Enough tensors to recognise the model (embedding, first block) without flooding the terminal.
constexpr std::size_t kTensorsShown = 8;

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += fmt::format("{}{}", i ? ", " : "", shape[i]);
  return text + "]";
}

// The decision table `convert --compress auto` recorded; a field of the wrong kind prints as "?"
// (the record is informational and not checked when the pack opens).
void print_compression_policy(const nlohmann::json& policy, std::ostream& out) {
  if (!policy.is_object()) return;
  auto number = [](const nlohmann::json& o, const char* key, double scale) -> std::string {
    const auto it = o.find(key);
    return it != o.end() && it->is_number() ? fmt::format("{:.2f}", it->get<double>() * scale) : "?";
  };
  auto text = [](const nlohmann::json& o, const char* key) -> std::string {
    const auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : "?";
  };
  fmt::print(out, "compression policy (convert --compress auto): disk {} GB/s, {} decode cores\n",
             number(policy, "disk_bytes_per_s", 1e-9), number(policy, "decode_cores", 1));
  fmt::print(out, "  {:<6} {:>9} {:>6} {:>12} {:>9} {:>9}  {}\n", "type", "raw MiB", "ratio", "decode GB/s", "saved ms",
             "decode ms", "choice");
  const auto types = policy.find("types");
  if (types == policy.end() || !types->is_array()) return;
  for (const nlohmann::json& row : *types) {
    if (!row.is_object()) continue;
    fmt::print(out, "  {:<6} {:>9} {:>6} {:>12} {:>9} {:>9}  {}\n", text(row, "type"), number(row, "raw_bytes", 1.0 / double(MiB)),
               number(row, "zstd_ratio", 1), number(row, "decode_bytes_per_s_per_core", 1e-9), number(row, "saved_s", 1e3),
               number(row, "decode_s", 1e3), text(row, "choice"));
  }
}

void print_summary(const Pack& pack, std::ostream& out) {
  fmt::print(out, "pack {}\n", pack.path());
  fmt::print(out, "  version      {}\n", pack.version());
  fmt::print(out, "  file size    {} ({})\n", pack.file_size(), format_bytes(pack.file_size()));
  fmt::print(out, "  frame bytes  {}\n", pack.frame_bytes());
  fmt::print(out, "  manifest     offset {}, {} bytes\n", pack.manifest_offset(), pack.manifest_bytes());

  std::size_t name_width = std::string_view("name").size();
  for (const ExtentInfo& extent : pack.extents()) name_width = std::max(name_width, extent.name.size());
  fmt::print(out, "extents: {}\n", pack.extents().size());
  fmt::print(out, "  {:>5}  {:<{}}  {:>14}  {:>14}  {:>14}  {:>7}  {:>7}  {:>6}\n", "index", "name", name_width,
             "offset", "disk bytes", "raw bytes", "frames", "zstd", "ratio");
  for (std::size_t i = 0; i < pack.extents().size(); ++i) {
    const ExtentInfo& extent = pack.extents()[i];
    const auto zstd_frames = std::count_if(extent.frames.begin(), extent.frames.end(),
                                           [](const FrameInfo& frame) { return frame.codec == Codec::zstd; });
    const std::string ratio =
        extent.disk_bytes == 0 ? "-"
                               : fmt::format("{:.2f}", static_cast<double>(extent.raw_bytes) /
                                                           static_cast<double>(extent.disk_bytes));
    fmt::print(out, "  {:>5}  {:<{}}  {:>14}  {:>14}  {:>14}  {:>7}  {:>7}  {:>6}\n", i, extent.name, name_width,
               extent.offset, extent.disk_bytes, extent.raw_bytes, extent.frames.size(), zstd_frames, ratio);
    if (extent.expert_bytes != 0) {  // an expert extent (format v2): one aligned read per expert
      fmt::print(out, "  {:>5}  {} experts of {} bytes, each one read\n", "", extent.raw_bytes / extent.expert_bytes, extent.expert_bytes);
    }
  }

  fmt::print(out, "tensors: {}\n", pack.tensors().size());
  const std::size_t shown = std::min(kTensorsShown, pack.tensors().size());
  for (std::size_t i = 0; i < shown; ++i) {
    const TensorInfo& tensor = pack.tensors()[i];
    fmt::print(out, "  {}  type {}  shape {}  extent {}  offset {}  bytes {}{}\n", tensor.name, tensor.type,
               shape_text(tensor.shape), tensor.extent, tensor.offset, tensor.bytes,
               tensor.expert_stride ? fmt::format("  expert stride {}", tensor.expert_stride) : std::string());
  }
  if (pack.tensors().size() > shown) fmt::print(out, "  ... and {} more\n", pack.tensors().size() - shown);

  std::string keys;
  for (auto it = pack.metadata().begin(); it != pack.metadata().end(); ++it) {
    keys += fmt::format("{}{}", keys.empty() ? "" : ", ", it.key());
  }
  fmt::print(out, "metadata keys: {}\n", keys.empty() ? "(none)" : keys);
  print_compression_policy(pack.compression_policy(), out);
}

}  // namespace

int inspect_pack(const std::string& path, bool verify, std::ostream& out) {
  try {
    const Pack pack = Pack::open(path);
    print_summary(pack, out);
    if (!verify) return 0;
    std::size_t frames = 0;
    for (const ExtentInfo& extent : pack.extents()) frames += extent.frames.size();
    const std::vector<Error> errors = pack.verify_all();
    for (const Error& error : errors) fmt::print(out, "  bad frame: {}\n", error.message);
    if (errors.empty()) {
      fmt::print(out, "verified {} frames: OK\n", frames);
      return 0;
    }
    fmt::print(out, "verified {} frames: {} bad frames\n", frames, errors.size());
    return 1;
  } catch (const PackError& e) {
    fmt::print(out, "error: {}\n", e.what());
  } catch (const std::exception& e) {
    fmt::print(out, "error: pack {}: {}\n", path, e.what());
  }
  return 1;
}

}  // namespace sluice::pack
